use bytes::{Bytes, BytesMut};
use tessera_clients::resp::{self, Value};

use super::*;
use crate::client::{GatherOp, Proto, merge};
use crate::error::UpstreamError;

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

fn ok(b: &'static [u8]) -> (crate::upstream::Reply, Vec<u32>) {
    (Ok(Bytes::from_static(b)), Vec::new())
}

#[test]
fn merges() {
    let mut out = BytesMut::new();
    merge(
        GatherOp::Mget,
        Proto::Redis,
        vec![
            (
                Ok(Bytes::from_static(b"*2\r\n$1\r\na\r\n$-1\r\n")),
                vec![0, 2],
            ),
            (Ok(Bytes::from_static(b"*1\r\n$1\r\nb\r\n")), vec![1]),
        ],
        3,
        &mut out,
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

    merge(
        GatherOp::Sum,
        Proto::Redis,
        vec![ok(b":2\r\n"), ok(b":3\r\n")],
        2,
        &mut out,
    );
    assert_eq!(&out.split()[..], b":5\r\n");
    merge(
        GatherOp::Mset,
        Proto::Redis,
        vec![ok(b"+OK\r\n"), ok(b"-ERR oom\r\n")],
        2,
        &mut out,
    );
    assert_eq!(&out.split()[..], b"-ERR oom\r\n");
    merge(
        GatherOp::Sum,
        Proto::Redis,
        vec![ok(b":1\r\n"), (Err(UpstreamError::NoLiveShards), vec![])],
        2,
        &mut out,
    );
    assert_eq!(&out.split()[..], b"-ERR no live shard to route to\r\n");
    merge(
        GatherOp::McGet,
        Proto::Memcached,
        vec![
            ok(b"VALUE a 0 1\r\nx\r\nEND\r\n"),
            ok(b"END\r\n"),
            ok(b"VALUE c 0 1\r\ny\r\nEND\r\n"),
        ],
        3,
        &mut out,
    );
    assert_eq!(
        &out.split()[..],
        b"VALUE a 0 1\r\nx\r\nVALUE c 0 1\r\ny\r\nEND\r\n"
    );
}
