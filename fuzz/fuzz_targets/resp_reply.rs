//! The framing of trusted shard replies (`ReplyFramer`) on arbitrary bytes:
//! never panics, finds the same frame ends whether the bytes come at once
//! or in small reads, with or without skipping what it no longer needs
//! (`discard`, as for an oversized reply), and the same ends as the
//! client-side framing with its bounds lifted.
#![no_main]

use bytes::{Buf, BytesMut};
use libfuzzer_sys::fuzz_target;
use tessera_clients::resp::ReplyFramer;
use tessera_fuzz::{assert_agrees, reads};

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let whole = ends(stream, &[stream.len()], false);
    let chunked = ends(stream, &reads(seed, stream.len()), false);
    let skipping = ends(stream, &reads(seed, stream.len()), true);
    assert_eq!(whole, chunked);
    assert_eq!(whole, skipping);
    assert_agrees(&whole.0, whole.1, stream);
});

/// The frame ends found in `stream` fed in `reads`, as offsets into
/// `stream`, and whether the framer gave up on an error.
fn ends(stream: &[u8], reads: &[usize], discard: bool) -> (Vec<usize>, bool) {
    let mut framer = ReplyFramer::new();
    let mut buf = BytesMut::new();
    // The offset in `stream` of `buf[0]`.
    let mut at = 0;
    let mut found = Vec::new();
    let mut fed = 0;
    for &n in reads {
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        loop {
            match framer.next_frame(&buf) {
                Ok(Some(len)) => {
                    buf.advance(len);
                    at += len;
                    found.push(at);
                }
                Ok(None) => {
                    if discard {
                        let before = buf.len();
                        framer.discard(&mut buf);
                        at += before - buf.len();
                    }
                    break;
                }
                Err(_) => return (found, true),
            }
        }
    }
    (found, false)
}
