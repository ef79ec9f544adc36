//! CRC-32 (IEEE, reflected). `crc32` is libmemcached's 15-bit variant that
//! twemproxy keeps for compatibility; `crc32a` is the full checksum.

const fn table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
}

pub(super) static TABLE: [u32; 256] = table();

fn checksum(key: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &b in key {
        crc = (crc >> 8) ^ TABLE[((crc ^ u32::from(b)) & 0xff) as usize];
    }
    !crc
}

pub fn crc32(key: &[u8]) -> u32 {
    (checksum(key) >> 16) & 0x7fff
}

pub fn crc32a(key: &[u8]) -> u32 {
    checksum(key)
}
