//! Puts the replies of a command split across shards back together.
//!
//! When a part fails, the whole command fails, and the answer says so in
//! full: the first failure as the shard gave it (its error code first, so
//! `-READONLY` stays `-READONLY` for a client that classifies errors), then
//! how the split went. twemproxy answers `-ERR Invalid argument` here, and
//! Redis itself never half-applies a `DEL`; a client that sees only one
//! shard's error cannot tell that the other shards' parts did run.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tessera_clients::memcached::codec as mc;
use tessera_clients::resp::{self, Value};

use crate::client::{GatherOp, Proto, error_line, error_reply};
use crate::error::UpstreamError;
use crate::upstream::Reply;

/// One shard's reply to its part of a split command.
pub struct PartReply {
    pub reply: Reply,
    /// Where this part's keys sit in the original command (MGET only).
    pub positions: Vec<u32>,
    /// The shard's label, for the error text.
    pub shard: Arc<str>,
}

/// Writes the merged answer of `parts` for a command of `keys` keys.
pub fn merge(op: GatherOp, proto: Proto, parts: Vec<PartReply>, keys: usize, out: &mut BytesMut) {
    if write_failure(proto, &parts, out) {
        return;
    }
    let frames = parts.into_iter().filter_map(|p| match p.reply {
        Ok(frame) => Some((frame, p.positions)),
        Err(_) => None,
    });
    let limits = resp::Limits::default();
    let decode = |b: &Bytes| {
        resp::decode(&mut BytesMut::from(&b[..]), &limits)
            .ok()
            .flatten()
    };
    match op {
        GatherOp::McGet => {
            for (b, _) in frames {
                out.put_slice(mc::retrieval_values(&b));
            }
            out.put_slice(b"END\r\n");
        }
        GatherOp::Mget => {
            let mut values = vec![Value::Null; keys];
            for (b, positions) in frames {
                match decode(&b) {
                    Some(Value::Array(items)) if items.len() == positions.len() => {
                        for (item, &pos) in items.into_iter().zip(&positions) {
                            values[pos as usize] = item;
                        }
                    }
                    _ => return error_reply(proto, "unexpected reply to a split MGET", out),
                }
            }
            resp::encode(&Value::Array(values), out);
        }
        GatherOp::Mset => {
            for (b, _) in frames {
                if &b[..] != b"+OK\r\n" {
                    return error_reply(proto, "unexpected reply to a split MSET", out);
                }
            }
            out.put_slice(b"+OK\r\n");
        }
        GatherOp::Sum => {
            let mut sum: i64 = 0;
            for (b, _) in frames {
                match decode(&b) {
                    Some(Value::Integer(n)) => sum = sum.saturating_add(n),
                    _ => return error_reply(proto, "unexpected reply to a split command", out),
                }
            }
            resp::encode(&Value::Integer(sum), out);
        }
    }
}

/// The text of a failed part, without its protocol framing: `READONLY ...`
/// for a Redis error reply, the message of a memcached error line, or the
/// proxy's own error. `None` when the part succeeded.
fn failure_text(proto: Proto, reply: &Reply) -> Option<String> {
    let frame = match reply {
        Err(e) => {
            return Some(match proto {
                Proto::Redis => format!("{} {e}", e.redis_code()),
                Proto::Memcached => e.to_string(),
            });
        }
        Ok(frame) => frame,
    };
    let line = |b: &[u8]| {
        let end = b.iter().position(|&c| c == b'\r').unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    match proto {
        Proto::Redis => frame.strip_prefix(b"-").map(line),
        Proto::Memcached if frame.starts_with(b"VALUE ") || frame.starts_with(b"END") => None,
        Proto::Memcached => {
            let text = line(frame);
            let text = ["SERVER_ERROR ", "CLIENT_ERROR "]
                .iter()
                .find_map(|p| text.strip_prefix(p))
                .map_or_else(|| text.clone(), str::to_owned);
            Some(text)
        }
    }
}

/// Writes the answer for a split whose parts did not all succeed; false
/// when every part succeeded.
fn write_failure(proto: Proto, parts: &[PartReply], out: &mut BytesMut) -> bool {
    let failures: Vec<(&PartReply, String)> = parts
        .iter()
        .filter_map(|p| Some((p, failure_text(proto, &p.reply)?)))
        .collect();
    let Some((_, first)) = failures.first() else {
        return false;
    };
    let failed: Vec<&str> = failures.iter().map(|(p, _)| &*p.shard).collect();
    let context = format!(
        "(split across {} shards: {} failed, {} succeeded)",
        parts.len(),
        failed.join(", "),
        parts.len() - failed.len()
    );
    error_line(proto, &format!("{first} {context}"), out);
    true
}

/// The error answer to a request whose shard call failed.
pub fn upstream_error(proto: Proto, e: &UpstreamError, out: &mut BytesMut) {
    let text = failure_text(proto, &Err(e.clone())).unwrap_or_default();
    error_line(proto, &text, out);
}
