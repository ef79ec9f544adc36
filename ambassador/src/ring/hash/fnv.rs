//! The four FNV variants. twemproxy's "64-bit" ones are not what their names
//! say: `fnv1a_64` runs entirely in 32 bits with the low halves of the 64-bit
//! constants, and `fnv1_64` returns only the low 32 bits. Every byte goes
//! through a signed `char` (sign-extended on x86); we match x86.

const FNV_64_INIT: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_64_PRIME: u64 = 0x0000_0100_0000_01b3;
const FNV_32_INIT: u32 = 2_166_136_261;
const FNV_32_PRIME: u32 = 16_777_619;

pub fn fnv1_64(key: &[u8]) -> u32 {
    let mut hash = FNV_64_INIT;
    for &b in key {
        hash = hash.wrapping_mul(FNV_64_PRIME);
        hash ^= b as i8 as i64 as u64;
    }
    hash as u32
}

pub fn fnv1a_64(key: &[u8]) -> u32 {
    let mut hash = FNV_64_INIT as u32;
    for &b in key {
        hash ^= b as i8 as u32;
        hash = hash.wrapping_mul(FNV_64_PRIME as u32);
    }
    hash
}

pub fn fnv1_32(key: &[u8]) -> u32 {
    let mut hash = FNV_32_INIT;
    for &b in key {
        hash = hash.wrapping_mul(FNV_32_PRIME);
        hash ^= b as i8 as u32;
    }
    hash
}

pub fn fnv1a_32(key: &[u8]) -> u32 {
    let mut hash = FNV_32_INIT;
    for &b in key {
        hash ^= b as i8 as u32;
        hash = hash.wrapping_mul(FNV_32_PRIME);
    }
    hash
}
