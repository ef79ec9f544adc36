//! Bob Jenkins' one-at-a-time hash, as in twemproxy.

/// Bytes are read through a signed `char`, so bytes >= 0x80 are
/// sign-extended, matching nutcracker on x86.
pub fn one_at_a_time(key: &[u8]) -> u32 {
    let mut value: u32 = 0;
    for &b in key {
        value = value.wrapping_add(b as i8 as u32);
        value = value.wrapping_add(value << 10);
        value ^= value >> 6;
    }
    value = value.wrapping_add(value << 3);
    value ^= value >> 11;
    value.wrapping_add(value << 15)
}
