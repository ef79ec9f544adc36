//! The RESP framing the ambassador applies to client input: never panics,
//! and `frame_len` and `decode_frame` agree on where a frame ends.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tessera_clients::resp::{Limits, decode_frame, frame_len};

fuzz_target!(|data: &[u8]| {
    // The ambassador's client limits for a 64 KiB max request.
    check(
        data,
        &Limits {
            max_bulk_len: 64 * 1024,
            max_array_len: 16 * 1024,
            max_depth: 1,
            max_line_len: 1024,
        },
    );
    // Nested replies with limits small enough for inputs under libFuzzer's
    // default 4 KiB to reach every bound.
    check(
        data,
        &Limits {
            max_bulk_len: 64,
            max_array_len: 8,
            max_depth: 4,
            max_line_len: 16,
        },
    );
});

fn check(data: &[u8], limits: &Limits) {
    let mut buf = BytesMut::from(data);
    loop {
        let expected = frame_len(&buf, limits);
        match decode_frame(&mut buf, limits) {
            Ok(Some((raw, _))) => assert_eq!(expected, Ok(Some(raw.len()))),
            Ok(None) => {
                assert_eq!(expected, Ok(None));
                break;
            }
            Err(e) => {
                assert_eq!(expected, Err(e));
                break;
            }
        }
    }
}
