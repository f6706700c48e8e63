//! Raw DEFLATE (RFC 1951), optionally primed with a preset dictionary, for the items that keep
//! JSON compressed (events, groups of attempt records). Bounded on the way back: a damaged or
//! hostile item cannot make a reader allocate without limit.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::cell::RefCell;

thread_local! {
    /// One compressor per thread and effort, reset for each use: a new one allocates a few
    /// hundred KB of tables, which the allocator may map and unmap around every call (measured
    /// with such allocations mapped: 185 µs per 2.6 KB event instead of 7 µs reused).
    static DEFLATERS: RefCell<[Option<Compress>; 2]> = const { RefCell::new([None, None]) };
    /// The same for the way back (its window and state, 40-odd KB).
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

#[derive(Debug, thiserror::Error)]
pub enum DeflateError {
    #[error("{0}")]
    Codec(#[from] flate2::CompressError),
    #[error("{0}")]
    Corrupt(#[from] flate2::DecompressError),
    #[error("truncated")]
    Truncated,
    #[error("larger than {0} bytes")]
    TooLarge(usize),
}

/// What a compression spends its effort on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effort {
    /// The fewest bytes, where they are paid for (DynamoDB write units): a 2.6 KB event in
    /// about 26 µs.
    Smallest,
    /// The least CPU, where the bytes only fill pages on a local disk: the same event in about
    /// 8 µs, a third larger (DEFLATE's fastest level).
    Fastest,
}

/// `bytes` compressed, after the `prefix` bytes.
pub fn compress(
    bytes: &[u8],
    dictionary: Option<&[u8]>,
    prefix: &[u8],
    effort: Effort,
) -> Result<Vec<u8>, DeflateError> {
    DEFLATERS.with_borrow_mut(|deflaters| {
        let (slot, level) = match effort {
            Effort::Smallest => (0, Compression::best()),
            Effort::Fastest => (1, Compression::fast()),
        };
        // Taken out for the call and put back only after a whole stream: one abandoned midway
        // (an error) may keep state a reset does not clear, so it is dropped instead.
        let mut deflate = deflaters[slot].take().unwrap_or_else(|| Compress::new(level, false));
        deflate.reset();
        let compressed = compress_with(&mut deflate, bytes, dictionary, prefix)?;
        deflaters[slot] = Some(deflate);
        Ok(compressed)
    })
}

fn compress_with(
    deflate: &mut Compress,
    bytes: &[u8],
    dictionary: Option<&[u8]>,
    prefix: &[u8],
) -> Result<Vec<u8>, DeflateError> {
    if let Some(dictionary) = dictionary {
        deflate.set_dictionary(dictionary)?;
    }
    let mut out = Vec::with_capacity(prefix.len() + bytes.len() / 4 + 64);
    out.extend_from_slice(prefix);
    loop {
        let consumed = deflate.total_in() as usize;
        if deflate.compress_vec(&bytes[consumed..], &mut out, FlushCompress::Finish)? == Status::StreamEnd {
            return Ok(out);
        }
        out.reserve(out.capacity().max(256));
    }
}

/// The bytes `compressed` holds, refused if they are more than `max`.
pub fn decompress(compressed: &[u8], dictionary: Option<&[u8]>, max: usize) -> Result<Vec<u8>, DeflateError> {
    INFLATER.with_borrow_mut(|inflater| {
        let mut inflate = inflater.take().unwrap_or_else(|| Decompress::new(false));
        inflate.reset(false);
        let decompressed = decompress_with(&mut inflate, compressed, dictionary, max)?;
        *inflater = Some(inflate);
        Ok(decompressed)
    })
}

fn decompress_with(
    inflate: &mut Decompress,
    compressed: &[u8],
    dictionary: Option<&[u8]>,
    max: usize,
) -> Result<Vec<u8>, DeflateError> {
    if let Some(dictionary) = dictionary {
        inflate.set_dictionary(dictionary)?;
    }
    let mut out = Vec::with_capacity((compressed.len() * 8 + 1024).min(max));
    loop {
        let consumed = inflate.total_in() as usize;
        match inflate.decompress_vec(&compressed[consumed..], &mut out, FlushDecompress::Finish)? {
            _ if out.len() > max => return Err(DeflateError::TooLarge(max)),
            Status::StreamEnd => return Ok(out),
            _ if inflate.total_in() as usize == compressed.len() && out.len() < out.capacity() => {
                return Err(DeflateError::Truncated);
            }
            // Room for at most one byte past `max`: enough to tell it was passed.
            _ => out.reserve(out.capacity().min(max + 1 - out.len()).max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reused state carries nothing from one call to the next: not a dictionary, not a
    /// failed stream's leftovers.
    #[test]
    fn each_call_starts_afresh() {
        let dictionary = b"the quick brown fox jumps over the lazy dog";
        let text = b"the lazy dog and the quick brown fox, again and again and again";
        for effort in [Effort::Smallest, Effort::Fastest] {
            let primed = compress(text, Some(dictionary), &[], effort).unwrap();
            let plain = compress(text, None, &[], effort).unwrap();
            assert_ne!(primed, plain);
            assert_eq!(compress(text, Some(dictionary), &[], effort).unwrap(), primed);
            assert!(decompress(&primed[..primed.len() / 2], Some(dictionary), 1024).is_err());
            assert_eq!(decompress(&plain, None, 1024).unwrap(), text);
            assert_eq!(decompress(&primed, Some(dictionary), 1024).unwrap(), text);
            assert!(decompress(&primed, None, 1024).is_err(), "needs its dictionary");
            assert!(
                matches!(decompress(&plain, None, text.len() - 1), Err(DeflateError::TooLarge(_))),
                "a byte over the limit is refused"
            );
            assert_eq!(
                decompress(&plain, None, text.len()).unwrap(),
                text,
                "exactly the limit is not"
            );
        }
    }
}
