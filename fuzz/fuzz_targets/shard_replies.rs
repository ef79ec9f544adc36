//! The ambassador's relaying of shard replies (`upstream::replies`) on
//! arbitrary bytes, in small reads: never panics, relays every reply up to
//! the limit byte for byte, reports every larger one as too large, and
//! stays in step with the stream, as the client-side framing finds it.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tessera_ambassador::upstream::ReplyKind;
use tessera_ambassador::upstream::replies::{Outcome, Replies};
use tessera_fuzz::{assert_agrees, reads};

fuzz_target!(|data: &[u8]| {
    let [limit, seed, stream @ ..] = data else {
        return;
    };
    // 8 bytes to 2 KiB: small enough for fuzz inputs to cross it.
    let max = 8 + usize::from(*limit) * 8;
    let mut replies = Replies::new(max);
    let mut buf = BytesMut::new();
    let mut outcomes = Vec::new();
    let mut failed = false;
    let mut fed = 0;
    'reads: for n in reads(*seed, stream.len()) {
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        loop {
            match replies.next(&mut buf, ReplyKind::Resp) {
                Ok(Some(o)) => outcomes.push(o),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'reads;
                }
            }
        }
    }
    let mut ends = Vec::new();
    let mut start = 0;
    for outcome in &outcomes {
        let (_, rest) = stream.split_at(start);
        let len = match outcome {
            Outcome::Frame(frame) => {
                assert!(frame.len() <= max, "a reply over the limit was relayed");
                assert_eq!(&rest[..frame.len()], &frame[..], "relayed as sent");
                frame.len()
            }
            // Its length is where the reference says the frame ends.
            Outcome::TooLarge => match tessera_fuzz::reference_ends(rest).0.first() {
                Some(&len) => {
                    assert!(len > max, "a reply under the limit was refused");
                    len
                }
                None => panic!("a reply was refused that the reference does not find"),
            },
        };
        start += len;
        ends.push(start);
    }
    assert_agrees(&ends, failed, stream);
});
