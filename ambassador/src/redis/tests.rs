use bytes::{Bytes, BytesMut};
use tessera_clients::resp::{self, Value};

use super::*;
use crate::client::{GatherOp, Proto};
use crate::error::{ClientError, UpstreamError};
use crate::merge::{PartReply, merge};

#[test]
fn lookup_is_case_insensitive_and_knows_the_rules() {
    assert_eq!(lookup(b"get").map(|(_, k)| k), Some(Kind::Single));
    assert_eq!(lookup(b"GeT"), lookup(b"GET"));
    assert_eq!(lookup(b"mget").map(|(_, k)| k), Some(Kind::Mget));
    assert_eq!(lookup(b"unlink").map(|(_, k)| k), Some(Kind::Sum));
    assert!(matches!(lookup(b"blpop"), Some((_, Kind::Unsupported(_)))));
    assert!(matches!(lookup(b"keys"), Some((_, Kind::Unsupported(_)))));
    assert_eq!(lookup(b"nosuchcommand"), None);
    assert_eq!(lookup(&[b'A'; 100]), None);
    let (id, _) = lookup(b"hset").unwrap();
    assert_eq!(command_names()[id], "hset");
}

#[test]
fn client_limits_refuse_nesting_and_huge_lengths() {
    let l = limits(1024);
    for bad in [
        &b"*1\r\n*1\r\n$1\r\na\r\n"[..],
        b"*1\r\n$2000\r\n",
        b"*1\r\n$-2\r\n",
    ] {
        assert!(resp::frame_len(bad, &l).is_err(), "{bad:?}");
    }
}

#[test]
fn random_bytes_never_panic_the_framing() {
    let l = limits(4096);
    let mut rng = fastrand::Rng::with_seed(1);
    for _ in 0..20_000 {
        let len = rng.usize(0..64);
        let mut data: Vec<u8> = (0..len)
            .map(|_| *rng.choice(b"*$:+-\r\n0123456789-abc".iter()).unwrap())
            .collect();
        if rng.bool() {
            data.insert(0, b'*');
        }
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = resp::decode_frame(&mut buf, &l) {}
    }
}

fn part(shard: &str, reply: crate::upstream::Reply, positions: Vec<u32>) -> PartReply {
    PartReply {
        reply,
        positions,
        shard: shard.into(),
    }
}

fn ok(shard: &str, b: &'static [u8]) -> PartReply {
    part(shard, Ok(Bytes::from_static(b)), Vec::new())
}

fn merged(op: GatherOp, proto: Proto, parts: Vec<PartReply>, keys: usize) -> Bytes {
    let mut out = BytesMut::new();
    merge(op, proto, parts, keys, &mut out);
    out.freeze()
}

#[test]
fn merges() {
    let mut out = BytesMut::from(
        &merged(
            GatherOp::Mget,
            Proto::Redis,
            vec![
                part(
                    "s0",
                    Ok(Bytes::from_static(b"*2\r\n$1\r\na\r\n$-1\r\n")),
                    vec![0, 2],
                ),
                part("s1", Ok(Bytes::from_static(b"*1\r\n$1\r\nb\r\n")), vec![1]),
            ],
            3,
        )[..],
    );
    let v = resp::decode(&mut out, &resp::Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        v,
        Value::Array(vec![
            Value::Bulk("a".into()),
            Value::Bulk("b".into()),
            Value::Null
        ])
    );
    let sum = merged(
        GatherOp::Sum,
        Proto::Redis,
        vec![ok("s0", b":2\r\n"), ok("s1", b":3\r\n")],
        2,
    );
    assert_eq!(&sum[..], b":5\r\n");
    let gets = merged(
        GatherOp::McGet,
        Proto::Memcached,
        vec![
            ok("s0", b"VALUE a 0 1\r\nx\r\nEND\r\n"),
            ok("s1", b"END\r\n"),
            ok("s2", b"VALUE c 0 1\r\ny\r\nEND\r\n"),
        ],
        3,
    );
    assert_eq!(
        &gets[..],
        b"VALUE a 0 1\r\nx\r\nVALUE c 0 1\r\ny\r\nEND\r\n"
    );
}

/// A failed part fails the command, keeping the shard's error code and
/// saying how the split went (docs/ambassador.md, "What differs").
#[test]
fn a_failed_part_fails_the_command_with_its_code_and_the_split() {
    let timeout = UpstreamError::Timeout {
        shard: "s1".into(),
        ms: 300,
    };
    let auth = UpstreamError::Auth {
        shard: "s1".into(),
        reason: "WRONGPASS invalid password".into(),
    };
    let cases = [
        (
            GatherOp::Sum,
            Proto::Redis,
            vec![
                ok("s0", b":1\r\n"),
                ok(
                    "s1",
                    b"-READONLY You can't write against a read only replica.\r\n",
                ),
                ok("s2", b":2\r\n"),
            ],
            "-READONLY You can't write against a read only replica. (split across 3 shards: s1 failed, 2 succeeded)\r\n",
        ),
        (
            GatherOp::Mset,
            Proto::Redis,
            vec![
                ok("s0", b"+OK\r\n"),
                ok("s1", b"-OOM command not allowed\r\n"),
            ],
            "-OOM command not allowed (split across 2 shards: s1 failed, 1 succeeded)\r\n",
        ),
        (
            GatherOp::Mget,
            Proto::Redis,
            vec![
                part("s0", Err(UpstreamError::NoLiveShards), vec![0]),
                part("s1", Err(timeout), vec![1]),
            ],
            "-ERR no live shard to route to (split across 2 shards: s0, s1 failed, 0 succeeded)\r\n",
        ),
        (
            GatherOp::Sum,
            Proto::Redis,
            vec![ok("s0", b":1\r\n"), part("s1", Err(auth), vec![])],
            "-NOAUTH shard s1 refused the proxy's password (redis_auth): WRONGPASS invalid password (split across 2 shards: s1 failed, 1 succeeded)\r\n",
        ),
        (
            GatherOp::McGet,
            Proto::Memcached,
            vec![
                ok("s0", b"END\r\n"),
                ok("s1", b"SERVER_ERROR out of memory\r\n"),
            ],
            "SERVER_ERROR out of memory (split across 2 shards: s1 failed, 1 succeeded)\r\n",
        ),
    ];
    for (op, proto, parts, want) in cases {
        let got = merged(op, proto, parts, 2);
        assert_eq!(String::from_utf8_lossy(&got), want, "{op:?}");
    }
}

#[test]
fn unexpected_part_replies_are_errors_not_garbage() {
    for (op, reply) in [
        (GatherOp::Mget, &b":1\r\n"[..]),
        (GatherOp::Sum, b"+OK\r\n"),
        (GatherOp::Mset, b":1\r\n"),
    ] {
        let out = merged(
            op,
            Proto::Redis,
            vec![part("s0", Ok(Bytes::copy_from_slice(reply)), vec![0])],
            1,
        );
        assert!(out.starts_with(b"-ERR unexpected reply"), "{op:?}: {out:?}");
    }
}

#[test]
fn timeouts_say_timed_out_as_twemproxy_does() {
    let mut out = BytesMut::new();
    crate::merge::upstream_error(
        Proto::Redis,
        &UpstreamError::Timeout {
            shard: "s2".into(),
            ms: 300,
        },
        &mut out,
    );
    assert_eq!(
        &out[..],
        b"-ERR Connection timed out: shard s2 did not answer within 300 ms\r\n"
    );
}

/// Clients must send RESP arrays: every other first byte is refused at
/// once, with a reason, and the connection is then closed by the caller.
#[test]
fn requests_must_be_resp_arrays() {
    let l = limits(1024);
    let cases: [(&[u8], ClientError); 6] = [
        (b"\r\n", ClientError::EmptyLine),
        (b"\n", ClientError::EmptyLine),
        (b"\r", ClientError::EmptyLine),
        (b"PING\r\n", ClientError::Inline),
        (b"P", ClientError::Inline),
        (b"$4\r\nPING\r\n", ClientError::Inline),
    ];
    for (input, want) in cases {
        let mut buf = BytesMut::from(input);
        assert_eq!(next_request(&mut buf, &l), Err(want), "{input:?}");
    }
    let mut buf = BytesMut::from(&b"*1\r\n$4\r\nPING\r\n*1\r\n"[..]);
    let (raw, _) = next_request(&mut buf, &l).unwrap().unwrap();
    assert_eq!(&raw[..], b"*1\r\n$4\r\nPING\r\n");
    assert_eq!(next_request(&mut buf, &l), Ok(None), "incomplete");
    assert_eq!(next_request(&mut BytesMut::new(), &l), Ok(None));
}
