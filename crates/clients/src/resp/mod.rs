//! RESP2, the Redis serialization protocol, as a bounded sans-IO codec.
//!
//! [`frame_len`] finds where the next complete frame ends without allocating,
//! so a proxy can forward replies as raw bytes. [`decode`] turns a complete
//! frame into a [`Value`] whose strings borrow from the input buffer.
//!
//! Every length read from the wire is checked against [`Limits`] before any
//! memory is reserved: a peer announcing a 2 GB bulk string gets an error, not
//! an allocation. Those limits are for untrusted input (a proxy's clients,
//! an engine a probe does not trust); a proxy frames the replies of its
//! servers with [`ReplyFramer`], which follows any depth and size.

use bytes::{Buf, Bytes, BytesMut};

mod encode;
mod framer;
pub use encode::{encode, encode_command};
pub use framer::ReplyFramer;

#[cfg(test)]
mod tests;

/// A decoded RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK\r\n`
    Simple(Bytes),
    /// `-ERR message\r\n`
    Error(Bytes),
    /// `:42\r\n`
    Integer(i64),
    /// `$3\r\nfoo\r\n`
    Bulk(Bytes),
    /// `$-1\r\n`, the null bulk string.
    Null,
    /// `*2\r\n...`
    Array(Vec<Value>),
    /// `*-1\r\n`, the null array.
    NullArray,
}

impl Value {
    /// The bytes of a simple or bulk string.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Simple(b) | Value::Bulk(b) => Some(b),
            _ => None,
        }
    }

    /// True for an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }
}

/// Bounds applied while parsing untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string accepted, in bytes.
    pub max_bulk_len: usize,
    /// Largest number of elements in one array.
    pub max_array_len: usize,
    /// Deepest nesting of arrays.
    pub max_depth: usize,
    /// Longest line (simple string, error, integer or length header).
    pub max_line_len: usize,
}

impl Default for Limits {
    /// Redis's own defaults: 512 MiB bulk strings (`proto-max-bulk-len`) and
    /// 64 KiB inline lines. Arrays are capped at 1M elements.
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_array_len: 1024 * 1024,
            max_depth: 16,
            max_line_len: 64 * 1024,
        }
    }
}

/// Why a buffer is not valid RESP2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid RESP type byte {0:#04x}")]
    InvalidType(u8),
    #[error("invalid length {0:?}")]
    InvalidLength(String),
    #[error("invalid integer {0:?}")]
    InvalidInteger(String),
    #[error("bulk string of {len} bytes exceeds the limit of {max}")]
    BulkTooLarge { len: usize, max: usize },
    #[error("array of {len} elements exceeds the limit of {max}")]
    ArrayTooLarge { len: usize, max: usize },
    #[error("arrays nested deeper than {0}")]
    TooDeep(usize),
    #[error("line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("bulk string not terminated by CRLF")]
    MissingCrlf,
}

/// Returns the length of the complete frame at the start of `buf`,
/// `Ok(None)` when more bytes are needed, or an error when the bytes can
/// never become valid RESP2.
pub fn frame_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, DecodeError> {
    scan(buf, 0, 0, limits)
}

/// Removes and decodes one complete frame from the front of `buf`.
///
/// Returns `Ok(None)` and leaves `buf` untouched when the frame is incomplete.
pub fn decode(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Value>, DecodeError> {
    let Some(len) = frame_len(buf, limits)? else {
        return Ok(None);
    };
    let mut frame = buf.split_to(len).freeze();
    // `frame_len` validated the whole frame, so parsing cannot fail.
    Ok(Some(parse(&mut frame)))
}

/// Removes one complete frame from the front of `buf` and returns both its
/// raw bytes and its decoded value; the value's strings share the raw bytes,
/// so a proxy can inspect a command and still forward it without re-encoding.
pub fn decode_frame(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<(Bytes, Value)>, DecodeError> {
    let Some(len) = frame_len(buf, limits)? else {
        return Ok(None);
    };
    let raw = buf.split_to(len).freeze();
    let value = parse(&mut raw.clone());
    Ok(Some((raw, value)))
}

/// Scans one frame starting at `pos`, returning the position just past it.
fn scan(
    buf: &[u8],
    pos: usize,
    depth: usize,
    limits: &Limits,
) -> Result<Option<usize>, DecodeError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    // Refuse a wrong type byte at once, not after waiting for its line: a
    // client typing an inline command gets its answer without pressing on.
    if !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*') {
        return Err(DecodeError::InvalidType(kind));
    }
    let Some(line_end) = find_crlf(buf, pos + 1, limits.max_line_len)? else {
        return Ok(None);
    };
    let line = &buf[pos + 1..line_end];
    let after_line = line_end + 2;
    match kind {
        b'+' | b'-' => Ok(Some(after_line)),
        b':' => {
            parse_i64(line)?;
            Ok(Some(after_line))
        }
        b'$' => {
            let Some(len) = parse_len(line)? else {
                return Ok(Some(after_line));
            };
            if len > limits.max_bulk_len {
                return Err(DecodeError::BulkTooLarge {
                    len,
                    max: limits.max_bulk_len,
                });
            }
            let end = after_line + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(DecodeError::MissingCrlf);
            }
            Ok(Some(end + 2))
        }
        b'*' => {
            let Some(len) = parse_len(line)? else {
                return Ok(Some(after_line));
            };
            if len > limits.max_array_len {
                return Err(DecodeError::ArrayTooLarge {
                    len,
                    max: limits.max_array_len,
                });
            }
            if depth >= limits.max_depth {
                return Err(DecodeError::TooDeep(limits.max_depth));
            }
            let mut at = after_line;
            for _ in 0..len {
                match scan(buf, at, depth + 1, limits)? {
                    Some(next) => at = next,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(DecodeError::InvalidType(other)),
    }
}

/// Finds the CRLF that ends the line starting at `from`.
fn find_crlf(buf: &[u8], from: usize, max_line_len: usize) -> Result<Option<usize>, DecodeError> {
    let window = &buf[from.min(buf.len())..];
    let limit = window.len().min(max_line_len + 1);
    match window[..limit].iter().position(|&b| b == b'\r') {
        Some(i) if i > max_line_len => Err(DecodeError::LineTooLong(max_line_len)),
        Some(i) => match window.get(i + 1) {
            Some(b'\n') => Ok(Some(from + i)),
            Some(_) => Err(DecodeError::InvalidLength("CR without LF".into())),
            None => Ok(None),
        },
        None if window.len() > max_line_len => Err(DecodeError::LineTooLong(max_line_len)),
        None => Ok(None),
    }
}

fn parse_i64(line: &[u8]) -> Result<i64, DecodeError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| DecodeError::InvalidInteger(String::from_utf8_lossy(line).into_owned()))
}

/// A length header: `-1` means null, anything else negative is an error.
fn parse_len(line: &[u8]) -> Result<Option<usize>, DecodeError> {
    let invalid = || DecodeError::InvalidLength(String::from_utf8_lossy(line).into_owned());
    if line == b"-1" {
        return Ok(None);
    }
    if line.is_empty() || !line.iter().all(u8::is_ascii_digit) || line.len() > 19 {
        return Err(invalid());
    }
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or_else(invalid)
}

/// Parses a frame already validated by [`scan`].
fn parse(buf: &mut Bytes) -> Value {
    let kind = buf.get_u8();
    let line_end = buf.iter().position(|&b| b == b'\r').unwrap_or(buf.len());
    let line = buf.split_to(line_end);
    buf.advance(2.min(buf.len()));
    match kind {
        b'+' => Value::Simple(line),
        b'-' => Value::Error(line),
        b':' => Value::Integer(parse_i64(&line).unwrap_or_default()),
        b'$' => match parse_len(&line).ok().flatten() {
            None => Value::Null,
            Some(len) => {
                let data = buf.split_to(len);
                buf.advance(2);
                Value::Bulk(data)
            }
        },
        _ => match parse_len(&line).ok().flatten() {
            None => Value::NullArray,
            Some(len) => Value::Array((0..len).map(|_| parse(buf)).collect()),
        },
    }
}
