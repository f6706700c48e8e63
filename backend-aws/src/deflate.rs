//! Raw DEFLATE (RFC 1951), optionally primed with a preset dictionary, for the items that keep
//! JSON compressed (events, groups of attempt records). Bounded on the way back: a damaged or
//! hostile item cannot make a reader allocate without limit.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

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

/// `bytes` compressed (best compression), after the `prefix` bytes.
pub fn compress(bytes: &[u8], dictionary: Option<&[u8]>, prefix: &[u8]) -> Result<Vec<u8>, DeflateError> {
    let mut deflate = Compress::new(Compression::best(), false);
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

/// The bytes `compressed` holds, refused once they pass `max`.
pub fn decompress(compressed: &[u8], dictionary: Option<&[u8]>, max: usize) -> Result<Vec<u8>, DeflateError> {
    let mut inflate = Decompress::new(false);
    if let Some(dictionary) = dictionary {
        inflate.set_dictionary(dictionary)?;
    }
    let mut out = Vec::with_capacity((compressed.len() * 8 + 1024).min(max));
    loop {
        let consumed = inflate.total_in() as usize;
        match inflate.decompress_vec(&compressed[consumed..], &mut out, FlushDecompress::Finish)? {
            Status::StreamEnd => return Ok(out),
            _ if out.len() >= max => return Err(DeflateError::TooLarge(max)),
            _ if inflate.total_in() as usize == compressed.len() && out.len() < out.capacity() => {
                return Err(DeflateError::Truncated);
            }
            _ => out.reserve(out.capacity()),
        }
    }
}
