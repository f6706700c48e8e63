//! How an event is kept compressed wherever it is stored (the DynamoDB sessions table's binary
//! `event` attribute, the durable local store's events table): the envelope's JSON, compressed.
//!
//! The codec is DEFLATE (RFC 1951) primed with a preset dictionary — a typical event's JSON,
//! `event-dictionary-v1.json` — as zlib's `deflateSetDictionary` allows. A 2.6 KB session
//! compresses to about 1 KB with DEFLATE alone, and to 80–220 bytes with the dictionary, since
//! most of a session is the same keys, capabilities and totals every time. DEFLATE because it is
//! small, pure Rust here (zlib-rs through flate2), and decades stable; zstd's dictionaries
//! compress a little better but bring a C library into every Lambda bootstrap.
//!
//! The first byte names the codec, so a later one can sit beside it. Events stored before the
//! codec hold the JSON as text and are still read ([`decode_json`]).

use crate::deflate::{self, Effort};
use crate::event::Event;

/// DEFLATE primed with [`DICTIONARY_V1`].
const DEFLATE_DICTIONARY_V1: u8 = 1;

/// Never edit: every item written with codec 1 needs these exact bytes to be read.
const DICTIONARY_V1: &[u8] = include_bytes!("event-dictionary-v1.json");

/// More than any event may decompress to (events are at most 200 KiB): a damaged or hostile
/// item cannot make a reader allocate without bound.
const MAX_DECODED: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("the event could not be encoded: {0}")]
    Encode(String),
    #[error("unreadable event: {0}")]
    Decode(String),
}

/// `event` as stored: its JSON, compressed to the fewest bytes.
pub fn encode(event: &Event) -> Result<Vec<u8>, CodecError> {
    let json = serde_json::to_vec(event).map_err(|e| CodecError::Encode(e.to_string()))?;
    compress(&json, Effort::Smallest)
}

/// An event's JSON (as `serde_json` writes the event) as stored: for a writer that has the JSON
/// already. Every effort is read back by [`decode`].
pub fn compress(json: &[u8], effort: Effort) -> Result<Vec<u8>, CodecError> {
    deflate::compress(json, Some(DICTIONARY_V1), &[DEFLATE_DICTIONARY_V1], effort)
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// The event of bytes written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Event, CodecError> {
    decode_json_bytes(&decompress(bytes)?)
}

/// The JSON of the event in bytes written by [`encode`], as it was before compression (what
/// `serde_json` writes for the event): for a reader that passes the event on unparsed.
pub fn decompress(bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
    let decode_error = |what: &str| CodecError::Decode(what.to_owned());
    let (&codec, compressed) = bytes.split_first().ok_or_else(|| decode_error("empty"))?;
    if codec != DEFLATE_DICTIONARY_V1 {
        return Err(decode_error(&format!("unknown codec {codec}")));
    }
    deflate::decompress(compressed, Some(DICTIONARY_V1), MAX_DECODED).map_err(|e| CodecError::Decode(e.to_string()))
}

/// The event of its JSON text (stored before the codec).
pub fn decode_json(json: &str) -> Result<Event, CodecError> {
    decode_json_bytes(json.as_bytes())
}

fn decode_json_bytes(json: &[u8]) -> Result<Event, CodecError> {
    serde_json::from_slice(json).map_err(|e| CodecError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{event, merchant};
    use base64::Engine;
    use sha2::Digest;

    #[test]
    fn events_come_back_as_they_went_in() {
        let m = merchant();
        for version in 1..=3 {
            let e = event(&m, None, version);
            let bytes = encode(&e).unwrap();
            assert_eq!(bytes[0], DEFLATE_DICTIONARY_V1);
            assert_eq!(decode(&bytes).unwrap(), e);
            assert_eq!(
                decompress(&bytes).unwrap(),
                serde_json::to_vec(&e).unwrap(),
                "the same bytes"
            );
            let fast = compress(&serde_json::to_vec(&e).unwrap(), Effort::Fastest).unwrap();
            assert_eq!(decode(&fast).unwrap(), e, "the fastest level reads back the same");
        }
    }

    #[test]
    fn a_typical_event_fits_one_write_unit_with_room_to_spare() {
        let e = event(&merchant(), None, 1);
        let json = serde_json::to_vec(&e).unwrap();
        let bytes = encode(&e).unwrap();
        assert!(
            bytes.len() < 512,
            "{} bytes of JSON compressed to {}",
            json.len(),
            bytes.len()
        );
    }

    #[test]
    fn old_items_and_damaged_ones() {
        let e = event(&merchant(), None, 2);
        assert_eq!(decode_json(&serde_json::to_string(&e).unwrap()).unwrap(), e);
        let bytes = encode(&e).unwrap();
        assert!(decode(&bytes[..bytes.len() / 2]).is_err(), "truncated");
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 1, 2, 3]).is_err(), "unknown codec");
        let mut flipped = bytes.clone();
        flipped[3] ^= 0xff;
        assert!(decode(&flipped).is_err() || decode(&flipped).unwrap() != e);
    }

    /// A decompression bomb (1 byte repeated) is refused, not allocated.
    #[test]
    fn a_bomb_is_refused() {
        let zeros = vec![b' '; 8 * 1024 * 1024];
        let out = compress(&zeros, Effort::Smallest).unwrap();
        assert!(matches!(decode(&out), Err(CodecError::Decode(_))));
    }

    /// Items written with codec 1 must stay readable: the dictionary may never change.
    #[test]
    fn the_v1_dictionary_never_changes() {
        let digest = hex::encode(sha2::Sha256::digest(DICTIONARY_V1));
        assert_eq!(digest, V1_DICTIONARY_SHA256, "event-dictionary-v1.json was edited");
        let stored = base64::engine::general_purpose::STANDARD.decode(V1_SAMPLE).unwrap();
        let e = decode(&stored).unwrap();
        assert_eq!(e.version, 1);
    }

    const V1_DICTIONARY_SHA256: &str = "eb571f5171ddca42ea04903f558a05174af15cb335f63372219041d5b8a938da";
    /// A created event, compressed by zlib (Python's) with the v1 dictionary: also proves the
    /// format is plain DEFLATE any zlib reads.
    const V1_SAMPLE: &str = "AatGNNENDL2d3KIsIg0j3M0jAw38jL3Mwi2jnE2DQvA03pFiCyP9GRrpGhiFGFhamYAb78DCCVvjHdTiwNKANzD0tQgzDHc0NDAJDA4xcY1yNzLy9rVwcQwkv2mP18zRRv9oo59Ojf68/JJ4YG5JqYwHKodHw2gHYOh0AEYb1EOwQT2Im8C0Tb0oLVi4EalFRdDCG9xzzM0EVsDgiC9ILEoEFitKKnpY+rx6sN4sqOwrzs8phcY3vPZIKq1MLYrPzCsoLYHUDCUg3VA7gW7NzEMIg4seWJJTgJqskFmsACtW9ZCbyEQ4GG8KoJKLnTPy84GFGbDrrpCfplCSkaqAZJkC1DI9cJt8yHQV4E01Y3MrU1PsXQV0NbW1AA==";
}
