//! CRC16-CCITT (XMODEM) as twemproxy computes it. twemproxy keeps the
//! running value in a `uint32_t` and never masks it, so the returned hash
//! carries the bits shifted above 16; we keep them to place keys identically.

const fn table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        t[i] = crc & 0xffff;
        i += 1;
    }
    t
}

pub(super) static TABLE: [u32; 256] = table();

pub fn crc16(key: &[u8]) -> u32 {
    let mut crc: u32 = 0;
    for &b in key {
        crc = (crc << 8) ^ TABLE[(((crc >> 8) ^ (b as i8 as u32)) & 0xff) as usize];
    }
    crc
}
