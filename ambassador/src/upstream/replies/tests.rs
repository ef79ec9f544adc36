use bytes::{Bytes, BytesMut};
use tessera_clients::resp::{self, Value};

use super::*;

/// A random reply: nested up to `depth`, with the odd large bulk string.
fn value(rng: &mut fastrand::Rng, depth: usize) -> Value {
    match rng.u8(0..10) {
        0 => Value::Simple(Bytes::from("x".repeat(rng.usize(0..40)))),
        1 => Value::Error(Bytes::from(format!("ERR {}", "e".repeat(rng.usize(0..40))))),
        2 => Value::Integer(rng.i64(..)),
        3 => Value::Null,
        4 => Value::NullArray,
        5 | 6 if depth > 0 => {
            let n = rng.usize(0..6);
            Value::Array((0..n).map(|_| value(rng, depth - 1)).collect())
        }
        7 if depth > 0 => {
            // A deep, thin chain, as a Lua script returns nested tables.
            let mut v = value(rng, 0);
            for _ in 0..rng.usize(1..60) {
                v = Value::Array(vec![v]);
            }
            v
        }
        _ => {
            let len = if rng.u8(0..8) == 0 {
                rng.usize(200..3000)
            } else {
                rng.usize(0..60)
            };
            Value::Bulk(Bytes::from(vec![b'\r'; len]))
        }
    }
}

/// Feeds `stream` in random chunks through a splitter with limit `max`;
/// the outcomes, and the most bytes the buffer ever held.
fn split(stream: &[u8], max: usize, rng: &mut fastrand::Rng) -> (Vec<Outcome>, usize) {
    let mut replies = Replies::new(max);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut held = 0;
    let mut rest = stream;
    while !rest.is_empty() {
        let n = rng.usize(1..=rest.len().min(700));
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some(o) = replies.next(&mut buf, ReplyKind::Resp).unwrap() {
            out.push(o);
        }
        held = held.max(buf.len());
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    (out, held)
}

#[test]
fn replies_are_relayed_intact_or_skipped_by_size_alone() {
    let mut rng = fastrand::Rng::with_seed(17);
    let max = 1000;
    for round in 0..300 {
        let frames: Vec<Bytes> = (0..rng.usize(1..12))
            .map(|_| {
                let mut out = BytesMut::new();
                resp::encode(&value(&mut rng, 4), &mut out);
                out.freeze()
            })
            .collect();
        let want: Vec<Outcome> = frames
            .iter()
            .map(|f| {
                if f.len() > max {
                    Outcome::TooLarge
                } else {
                    Outcome::Frame(f.clone())
                }
            })
            .collect();
        let stream = frames.concat();
        let (got, held) = split(&stream, max, &mut rng);
        assert_eq!(got, want, "round {round}");
        // Skipping keeps at most the limit, one read and a length line.
        assert!(held <= max + 700 + 64, "round {round}: held {held} bytes");
    }
}

#[test]
fn deep_and_long_replies_pass_under_the_default_limit() {
    let deep = {
        let mut v = Value::Integer(1);
        for _ in 0..20 {
            v = Value::Array(vec![v]);
        }
        v
    };
    let long = Value::Array((0..100_000).map(Value::Integer).collect());
    for v in [deep, long] {
        let mut frame = BytesMut::new();
        resp::encode(&v, &mut frame);
        let mut buf = frame.clone();
        let mut replies = Replies::new(crate::config::DEFAULT_MAX_REPLY_BYTES);
        assert_eq!(
            replies.next(&mut buf, ReplyKind::Resp),
            Ok(Some(Outcome::Frame(frame.freeze())))
        );
    }
}

#[test]
fn memcached_replies_are_framed_by_their_kind() {
    let mut replies = Replies::new(1024);
    let mut buf = BytesMut::from(&b"STORED\r\nVALUE k 0 3\r\nabc\r\nEND\r\nVALUE"[..]);
    assert_eq!(
        replies.next(&mut buf, ReplyKind::McLine),
        Ok(Some(Outcome::Frame(Bytes::from_static(b"STORED\r\n"))))
    );
    assert_eq!(
        replies.next(&mut buf, ReplyKind::McRetrieval),
        Ok(Some(Outcome::Frame(Bytes::from_static(
            b"VALUE k 0 3\r\nabc\r\nEND\r\n"
        ))))
    );
    assert_eq!(replies.next(&mut buf, ReplyKind::McRetrieval), Ok(None));
}

#[test]
fn bytes_that_are_no_reply_are_an_error() {
    for bad in [&b"hello\r\n"[..], b"$3\r\nabcde", b":x\r\n"] {
        let mut replies = Replies::new(1024);
        let mut buf = BytesMut::from(bad);
        assert!(replies.next(&mut buf, ReplyKind::Resp).is_err(), "{bad:?}");
    }
}

#[test]
fn the_buffer_of_a_large_reply_is_given_back() {
    let mut buf = BytesMut::with_capacity(8 * 1024 * 1024);
    Replies::shrink(&mut buf);
    assert!(buf.capacity() < 1024 * 1024);
    let mut busy = BytesMut::with_capacity(8 * 1024 * 1024);
    busy.extend_from_slice(b"+");
    Replies::shrink(&mut busy);
    assert!(
        busy.capacity() >= 8 * 1024 * 1024,
        "not while it holds bytes"
    );
}
