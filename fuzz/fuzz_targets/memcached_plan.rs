//! The ambassador's memcached request planning on arbitrary client input:
//! never panics, forwards single-shard requests unchanged, and splits
//! multi-key retrievals so that every key is asked for exactly once, from
//! the shard that owns it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_ambassador::memcache;
use tessera_ambassador::plan::Plan;
use tessera_clients::memcached::codec as mc;
use tessera_fuzz::RING;

fuzz_target!(|data: &[u8]| {
    let mut buf = bytes::BytesMut::from(data);
    let limits = memcache::limits(64 * 1024);
    while let Ok(Some(req)) = mc::parse_request(&buf, &limits) {
        let frame = buf.split_to(req.len).freeze();
        match memcache::plan(frame.clone(), &req, &RING) {
            Plan::Reply(_) | Plan::Close(_) => {}
            Plan::One { shard, call } => {
                assert!(shard < 3);
                assert_eq!(call.frame, frame, "single-shard requests go out unchanged");
                assert_eq!(call.noreply, req.noreply);
            }
            Plan::Split { parts, keys, .. } => {
                assert!(req.command.is_retrieval());
                assert_eq!(keys, req.keys.len());
                let mut seen = vec![false; keys];
                for part in parts {
                    let sub = mc::parse_request(&part.call.frame, &limits)
                        .expect("a part parses")
                        .expect("a part is complete");
                    assert_eq!(sub.command, req.command);
                    assert_eq!(sub.len, part.call.frame.len());
                    assert_eq!(sub.keys.len(), part.positions.len());
                    for (range, &p) in sub.keys.iter().zip(&part.positions) {
                        let p = p as usize;
                        assert!(!std::mem::replace(&mut seen[p], true), "key {p} sent twice");
                        let key = &frame[req.keys[p].clone()];
                        assert_eq!(&part.call.frame[range.clone()], key);
                        assert_eq!(RING.route(key), Some(part.shard));
                    }
                }
                assert!(seen.iter().all(|&s| s), "every key asked for");
            }
        }
    }
});
