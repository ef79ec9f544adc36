//! What the targets share: one three-shard pool for the planning targets,
//! read sizes and a reference framing for the shard-reply targets.

use std::sync::LazyLock;

use tessera_ambassador::config::{Config, PoolConfig};
use tessera_ambassador::ring::{Member, Ring};
use tessera_clients::resp::{Limits, frame_len};

/// A pool like the benchmark's: fnv1a_64, ketama, three named servers.
pub static POOL: LazyLock<PoolConfig> = LazyLock::new(|| {
    let yaml = "fuzz:\n  listen: 127.0.0.1:6379\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n  hash_tag: \"{}\"\n  servers:\n   - 127.0.0.1:7001:1 shard-0\n   - 127.0.0.1:7002:1 shard-1\n   - 127.0.0.1:7003:1 shard-2\n";
    Config::parse(yaml).expect("a valid pool").pools.remove(0)
});

/// The ring over [`POOL`]'s servers, all live.
pub static RING: LazyLock<Ring> = LazyLock::new(|| {
    let members: Vec<Member> = POOL
        .servers
        .iter()
        .map(|s| Member {
            identity: s.identity(),
            weight: s.weight,
            live: true,
        })
        .collect();
    Ring::new(POOL.hash, POOL.distribution, POOL.hash_tag, &members)
});

/// Read sizes, 1 to 64 bytes each, that add up to `len`: how a socket might
/// hand over `len` bytes, drawn from `seed`.
pub fn reads(seed: u8, len: usize) -> Vec<usize> {
    let mut state = u32::from(seed) | 0x100;
    let mut sizes = Vec::new();
    let mut left = len;
    while left > 0 {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (((state >> 16) % 64) as usize + 1).min(left);
        sizes.push(n);
        left -= n;
    }
    sizes
}

/// Where each reply in `stream` ends, found by the client-side RESP
/// framing with bounds no fuzz input reaches: the reference the shard-reply
/// framing must agree with. It stops at the first incomplete frame, or at
/// an invalid one (then the flag is true).
pub fn reference_ends(stream: &[u8]) -> (Vec<usize>, bool) {
    let limits = Limits {
        max_bulk_len: usize::MAX - (1 << 20),
        max_array_len: usize::MAX,
        max_depth: stream.len() + 1,
        max_line_len: 1 << 40,
    };
    let mut ends = Vec::new();
    let mut at = 0;
    loop {
        match frame_len(&stream[at..], &limits) {
            Ok(Some(len)) => {
                at += len;
                ends.push(at);
            }
            Ok(None) => return (ends, false),
            Err(_) => return (ends, true),
        }
    }
}

/// The framing under test must find the reference's frames: all of them
/// when it reports no error, and never a frame the reference does not
/// have (it is stricter only on integer lines, which it caps at 32 bytes).
pub fn assert_agrees(found: &[usize], failed: bool, stream: &[u8]) {
    let (want, want_failed) = reference_ends(stream);
    if failed {
        assert!(
            want.starts_with(found),
            "{found:?} is not a prefix of {want:?}"
        );
    } else {
        assert_eq!(found, want);
        assert!(!want_failed, "the reference refused what was accepted");
    }
}
