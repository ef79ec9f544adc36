//! Framing of a *trusted* RESP2 stream: the replies of a Redis-compatible
//! server to a proxy.
//!
//! [`frame_len`](super::frame_len) guards against hostile clients: it bounds
//! depth, element counts and line lengths, and rescans a frame from its
//! start on every call. Neither fits shard replies. A Lua script may return
//! arrays nested as deep as it likes and `LRANGE` may return millions of
//! elements, and a proxy that refuses such a reply has to drop the shard
//! connection, failing every other request pipelined on it. Rescanning a
//! multi-megabyte reply on every socket read is quadratic.
//!
//! [`ReplyFramer`] therefore keeps its place between calls and needs no
//! stack: a frame is complete when the number of values still missing drops
//! to zero (a value is one, an array of `n` replaces its own one with `n`),
//! so depth costs nothing. What remains bounded is the caller's business:
//! the total size of a frame, which the caller checks against its own
//! limit, and may discard as it streams in ([`ReplyFramer::discard`]) to
//! stay in step with the server without holding the frame in memory.

use bytes::{Buf, BytesMut};

use super::{DecodeError, parse_i64, parse_len};

/// The longest integer or length line a server sends (`:-9223372036854775808`
/// is 20 bytes of digits): anything longer is not a number.
const MAX_NUMBER_LINE: usize = 32;

/// Where the framer stands inside the current frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the type byte of the next value, at `pos`.
    Value,
    /// In the line of a value of type `kind` whose text starts at `start`;
    /// the CR has been looked for up to `pos`.
    Line { kind: u8, start: usize },
    /// In a bulk string whose data ends at `end`, where its CRLF follows.
    Bulk { end: usize },
}

/// Finds where each reply ends in a stream of RESP2 replies, of any depth
/// and size, resuming where the previous call stopped.
///
/// Positions are offsets into the caller's buffer, whose front is the start
/// of the current frame (less what [`discard`](Self::discard) removed).
#[derive(Debug, Clone)]
pub struct ReplyFramer {
    /// Values still missing from the current frame.
    missing: u64,
    pos: usize,
    state: State,
    /// Bytes of the current frame already removed by `discard`.
    dropped: u64,
}

impl Default for ReplyFramer {
    fn default() -> Self {
        ReplyFramer {
            missing: 1,
            pos: 0,
            state: State::Value,
            dropped: 0,
        }
    }
}

impl ReplyFramer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scans on from where the last call stopped. `Ok(Some(len))`: the frame
    /// at the front of `buf` is complete and `len` bytes long; the caller
    /// removes exactly those bytes before the next call, and the framer
    /// starts on the next frame. `Ok(None)`: more bytes are needed (`buf`
    /// must keep every byte it had, plus the new ones). `Err`: the stream
    /// is not RESP2 and cannot be followed any further.
    pub fn next_frame(&mut self, buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        loop {
            match self.state {
                State::Value => {
                    let Some(&kind) = buf.get(self.pos) else {
                        return Ok(None);
                    };
                    if !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*') {
                        return Err(DecodeError::InvalidType(kind));
                    }
                    self.pos += 1;
                    self.state = State::Line {
                        kind,
                        start: self.pos,
                    };
                }
                State::Line { kind, start } => {
                    let numeric = kind != b'+' && kind != b'-';
                    let found = buf[self.pos..].iter().position(|&b| b == b'\r');
                    // Checked on what has arrived, CR or not, so that the
                    // verdict does not depend on how the bytes were split.
                    let line_end = found.map_or(buf.len(), |i| self.pos + i);
                    if numeric && line_end - start > MAX_NUMBER_LINE {
                        return Err(DecodeError::LineTooLong(MAX_NUMBER_LINE));
                    }
                    let Some(_) = found else {
                        self.pos = buf.len();
                        return Ok(None);
                    };
                    let cr = line_end;
                    self.pos = cr;
                    match buf.get(cr + 1) {
                        None => return Ok(None),
                        Some(b'\n') => {}
                        Some(_) => return Err(DecodeError::InvalidLength("CR without LF".into())),
                    }
                    let line = &buf[start..cr];
                    let after = cr + 2;
                    // Where the value ends, unless it continues past its line.
                    let ended = match kind {
                        b'$' => match parse_len(line)? {
                            None => Some(after),
                            Some(len) => {
                                let end = after
                                    .checked_add(len)
                                    .ok_or_else(|| DecodeError::InvalidLength(format!("{len}")))?;
                                self.pos = after;
                                self.state = State::Bulk { end };
                                None
                            }
                        },
                        b'*' => match parse_len(line)? {
                            None | Some(0) => Some(after),
                            Some(n) => {
                                // The array stands for its `n` elements.
                                self.missing = (self.missing - 1)
                                    .checked_add(n as u64)
                                    .ok_or_else(|| DecodeError::InvalidLength(format!("{n}")))?;
                                self.pos = after;
                                self.state = State::Value;
                                None
                            }
                        },
                        b':' => parse_i64(line).map(|_| Some(after))?,
                        _ => Some(after),
                    };
                    if let Some(after) = ended
                        && let Some(len) = self.value_done(after)
                    {
                        return Ok(Some(len));
                    }
                }
                State::Bulk { end } => {
                    if buf.len() < end.saturating_add(2) {
                        return Ok(None);
                    }
                    if &buf[end..end + 2] != b"\r\n" {
                        return Err(DecodeError::MissingCrlf);
                    }
                    if let Some(len) = self.value_done(end + 2) {
                        return Ok(Some(len));
                    }
                }
            }
        }
    }

    /// One value ends at `after`; `Some` when that completes the frame.
    fn value_done(&mut self, after: usize) -> Option<usize> {
        self.missing -= 1;
        self.pos = after;
        self.state = State::Value;
        if self.missing == 0 {
            *self = ReplyFramer::default();
            return Some(after);
        }
        None
    }

    /// Bytes of the current frame seen so far, given the buffer length.
    pub fn frame_bytes(&self, buf_len: usize) -> u64 {
        self.dropped + buf_len as u64
    }

    /// Removes from the front of `buf` every byte of the current frame that
    /// the framer no longer needs, so that an oversized reply can be skipped
    /// while it streams in, without holding it. Call only between calls to
    /// [`next_frame`](Self::next_frame) that returned `Ok(None)`.
    pub fn discard(&mut self, buf: &mut BytesMut) {
        let keep_from = match self.state {
            State::Value => self.pos,
            // A length or integer is needed once its line ends; a status or
            // error line is not.
            State::Line {
                kind: b'+' | b'-', ..
            } => self.pos,
            State::Line { start, .. } => start,
            State::Bulk { end } => end,
        }
        .min(buf.len());
        buf.advance(keep_from);
        self.dropped += keep_from as u64;
        self.pos -= keep_from.min(self.pos);
        self.state = match self.state {
            State::Value => State::Value,
            State::Line { kind, start } => State::Line {
                kind,
                start: start.saturating_sub(keep_from),
            },
            State::Bulk { end } => State::Bulk {
                end: end - keep_from,
            },
        };
    }
}
