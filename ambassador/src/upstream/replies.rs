//! Splits what a shard sends into replies, without I/O.
//!
//! Shard replies are trusted: a Redis reply of any depth and element count
//! is relayed (a Lua script's nested tables, an `LRANGE` over a million
//! elements). The one bound is the size of a single reply,
//! `tessera.max_reply_bytes`, and a reply over it is skipped as it streams
//! in and answered with an error to the one request that asked for it: the
//! connection stays in step with the shard, so the requests pipelined
//! behind it on the same connection are unaffected.

use bytes::{Bytes, BytesMut};
use tessera_clients::memcached::codec as mc;
use tessera_clients::resp::ReplyFramer;

use super::ReplyKind;

#[cfg(test)]
mod tests;

/// One reply taken from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The reply's bytes, as the shard sent them.
    Frame(Bytes),
    /// The reply was larger than the limit; its bytes were skipped.
    TooLarge,
}

/// The reply splitter of one shard connection.
pub struct Replies {
    framer: ReplyFramer,
    max: usize,
    /// The current reply is over the limit and being skipped.
    skipping: bool,
}

/// Never shrink the read buffer below this.
const KEEP_CAPACITY: usize = 1024 * 1024;

impl Replies {
    /// A splitter refusing replies larger than `max` bytes.
    pub fn new(max: usize) -> Self {
        Replies {
            framer: ReplyFramer::new(),
            max,
            skipping: false,
        }
    }

    /// Takes the next complete reply of `kind` from the front of `buf`.
    /// `Ok(None)` when more bytes are needed; `Err` when the shard's bytes
    /// are not a reply at all, and the connection cannot continue.
    pub fn next(&mut self, buf: &mut BytesMut, kind: ReplyKind) -> Result<Option<Outcome>, String> {
        match kind {
            ReplyKind::Resp => self.next_resp(buf),
            ReplyKind::McLine | ReplyKind::McRetrieval => {
                let kind = if kind == ReplyKind::McLine {
                    mc::ResponseKind::Line
                } else {
                    mc::ResponseKind::Retrieval
                };
                // memcached values are at most 1 GiB (`-I 1024m`); lines
                // are short. The value bound follows the reply limit.
                let limits = mc::Limits {
                    max_value_len: self.max,
                    ..mc::Limits::default()
                };
                match mc::response_len(buf, kind, &limits).map_err(|e| e.to_string())? {
                    Some(len) => Ok(Some(Outcome::Frame(buf.split_to(len).freeze()))),
                    None => Ok(None),
                }
            }
        }
    }

    fn next_resp(&mut self, buf: &mut BytesMut) -> Result<Option<Outcome>, String> {
        match self.framer.next_frame(buf).map_err(|e| e.to_string())? {
            Some(len) => {
                let skipped = std::mem::take(&mut self.skipping);
                let frame = buf.split_to(len);
                // Decided by the total size alone, however the bytes came.
                if skipped || len > self.max {
                    return Ok(Some(Outcome::TooLarge));
                }
                Ok(Some(Outcome::Frame(frame.freeze())))
            }
            None => {
                if self.skipping || self.framer.frame_bytes(buf.len()) > self.max as u64 {
                    self.skipping = true;
                    self.framer.discard(buf);
                }
                Ok(None)
            }
        }
    }

    /// Gives back the memory of a large reply once the buffer is empty.
    pub fn shrink(buf: &mut BytesMut) {
        if buf.is_empty() && buf.capacity() > KEEP_CAPACITY {
            *buf = BytesMut::with_capacity(16 * 1024);
        }
    }
}
