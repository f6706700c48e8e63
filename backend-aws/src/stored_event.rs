//! How an event is kept in its item of the sessions table (and so in the stream's `NEW_IMAGE`):
//! the envelope's JSON compressed by [`checkout::event_codec`], in the binary attribute `event`.
//! With its preset dictionary a 2.6 KB session takes 80–220 bytes, so the item fits one write
//! unit (DEFLATE alone leaves about 1 KB: two). Items written before the codec hold the JSON as
//! a string attribute and are still read.

pub use checkout::event_codec::{CodecError, decode, decode_json, encode};

/// The attribute holding the event.
pub const ATTRIBUTE: &str = "event";
