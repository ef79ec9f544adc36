//! MD5-based key hash: the first four digest bytes, little-endian.

pub fn md5(key: &[u8]) -> u32 {
    let d = ::md5::compute(key).0;
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

/// The four little-endian words of `md5(key)`; ketama uses all of them.
pub fn md5_words(key: &[u8]) -> [u32; 4] {
    let d = ::md5::compute(key).0;
    std::array::from_fn(|i| {
        u32::from_le_bytes([d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]])
    })
}
