//! memcached response framing, as the ambassador reads shard replies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_clients::memcached::codec::{Limits, ResponseKind, response_len};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    for kind in [ResponseKind::Line, ResponseKind::Retrieval] {
        if let Ok(Some(n)) = response_len(data, kind, &limits) {
            assert!(n <= data.len());
        }
    }
});
