//! The ambassador's Redis command planning on arbitrary client input:
//! never panics, forwards single-shard commands unchanged, and splits
//! multi-key commands so that every key (and its value) is sent exactly
//! once, to the shard that owns it.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tessera_ambassador::plan::Plan;
use tessera_ambassador::redis::{self, Session};
use tessera_clients::resp::{self, Value};
use tessera_fuzz::{POOL, RING};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let limits = redis::limits(64 * 1024);
    let mut session = Session {
        authenticated: true,
    };
    while let Ok(Some((raw, value))) = resp::decode_frame(&mut buf, &limits) {
        let args = bulk_args(&value);
        match redis::plan(raw.clone(), value, &RING, &POOL, &mut session) {
            Err(_) => assert!(args.is_none(), "a command was refused as not a command"),
            Ok(Plan::Reply(b) | Plan::Close(b)) => {
                assert_eq!(
                    resp::frame_len(&b, &resp::Limits::default()),
                    Ok(Some(b.len()))
                );
            }
            Ok(Plan::One { shard, call }) => {
                assert!(shard < 3);
                assert_eq!(call.frame, raw, "single-shard commands go out unchanged");
            }
            Ok(Plan::Split { parts, keys, .. }) => {
                let args = args.expect("only commands are split");
                let stride = (args.len() - 1) / keys;
                assert_eq!(1 + keys * stride, args.len());
                let mut seen = vec![false; keys];
                for part in parts {
                    let sent = bulk_args(&decode(&part.call.frame)).expect("a command");
                    assert_eq!(sent[0], args[0]);
                    let mut i = 1;
                    for &p in &part.positions {
                        let p = p as usize;
                        assert!(!std::mem::replace(&mut seen[p], true), "key {p} sent twice");
                        assert_eq!(RING.route(&args[1 + p * stride]), Some(part.shard));
                        for j in 0..stride {
                            assert_eq!(sent[i], args[1 + p * stride + j]);
                            i += 1;
                        }
                    }
                    assert_eq!(i, sent.len(), "nothing else in the part");
                }
                assert!(seen.iter().all(|&s| s), "every key sent");
            }
        }
    }
});

fn bulk_args(value: &Value) -> Option<Vec<Bytes>> {
    let Value::Array(items) = value else {
        return None;
    };
    if items.is_empty() {
        return None;
    }
    items
        .iter()
        .map(|v| match v {
            Value::Bulk(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

fn decode(frame: &[u8]) -> Value {
    let mut buf = BytesMut::from(frame);
    resp::decode(&mut buf, &resp::Limits::default())
        .ok()
        .flatten()
        .expect("a part is one complete frame")
}
