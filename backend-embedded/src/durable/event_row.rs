//! How an event is kept in its row of the `events` table: its JSON compressed by
//! [`checkout::event_codec`] at DEFLATE's fastest level (about 370 bytes for a 2.6 KB session,
//! in about 8 µs, instead of the JSON itself: a commit writes a fraction of the pages, and the
//! file grows by a fraction). Rows written before hold the JSON as text and are still read.

use super::database::corrupt;
use checkout::deflate::Effort;
use checkout::event::Event;
use checkout::event_codec;
use checkout::ports::StoreError;
use rusqlite::types::Value;

/// The `body` column of an event whose JSON is `json`.
pub(crate) fn encode(json: &str) -> Result<Vec<u8>, StoreError> {
    event_codec::compress(json.as_bytes(), Effort::Fastest).map_err(corrupt)
}

/// The event of a stored `body`.
pub(crate) fn decode(body: Value) -> Result<Event, StoreError> {
    event_codec::decode_json(&json(body)?).map_err(corrupt)
}

/// The event's JSON of a stored `body`, byte for byte as it was appended, unparsed: what its
/// queue entry carries.
pub(crate) fn json(body: Value) -> Result<String, StoreError> {
    match body {
        Value::Blob(bytes) => {
            let json = event_codec::decompress(&bytes).map_err(corrupt)?;
            String::from_utf8(json).map_err(corrupt)
        }
        Value::Text(json) => Ok(json),
        _ => Err(corrupt("an event row without a body")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkout::testkit::{event, merchant};

    #[test]
    fn a_row_gives_back_the_event_and_its_exact_json() {
        let e = event(&merchant(), None, 1);
        let text = serde_json::to_string(&e).unwrap();
        let stored = encode(&text).unwrap();
        assert!(
            stored.len() * 4 < text.len(),
            "{} bytes stored for {}",
            stored.len(),
            text.len()
        );
        assert_eq!(decode(Value::Blob(stored.clone())).unwrap(), e);
        assert_eq!(json(Value::Blob(stored)).unwrap(), text);
        assert_eq!(
            decode(Value::Text(text.clone())).unwrap(),
            e,
            "rows of earlier versions"
        );
        assert_eq!(json(Value::Text(text.clone())).unwrap(), text);
        assert!(matches!(
            decode(Value::Blob(vec![1, 2, 3])),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(json(Value::Null), Err(StoreError::Corrupt(_))));
    }
}
