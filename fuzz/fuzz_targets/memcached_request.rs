//! memcached request framing: never panics, and what it returns stays
//! inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_clients::memcached::codec::{Limits, parse_request};

fuzz_target!(|data: &[u8]| {
    check(
        data,
        &Limits {
            max_line_len: 2048,
            max_value_len: 64 * 1024,
            max_key_len: 250,
        },
    );
    // Limits small enough for inputs under libFuzzer's default 4 KiB to
    // reach every bound.
    check(
        data,
        &Limits {
            max_line_len: 32,
            max_value_len: 64,
            max_key_len: 8,
        },
    );
});

fn check(data: &[u8], limits: &Limits) {
    let mut rest = data;
    while let Ok(Some(req)) = parse_request(rest, limits) {
        assert!(req.len <= rest.len() && req.line_len <= req.len);
        for k in &req.keys {
            assert!(k.end <= req.line_len && !k.is_empty());
        }
        rest = &rest[req.len..];
    }
}
