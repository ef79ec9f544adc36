//! memcached response framing, as the ambassador reads shard replies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_clients::memcached::codec::{Limits, ResponseKind, response_len};

fuzz_target!(|data: &[u8]| {
    // The defaults, and limits small enough for inputs under libFuzzer's
    // default 4 KiB to reach every bound.
    let small = Limits {
        max_line_len: 32,
        max_value_len: 64,
        max_key_len: 250,
    };
    for limits in [Limits::default(), small] {
        for kind in [ResponseKind::Line, ResponseKind::Retrieval] {
            if let Ok(Some(n)) = response_len(data, kind, &limits) {
                assert!(n <= data.len());
            }
        }
    }
});
