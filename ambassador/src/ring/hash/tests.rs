//! Vectors computed by compiling twemproxy's own hashkit sources (x86-64),
//! over a byte pattern that includes bytes >= 0x80 and covers every tail
//! length of the block-based functions, read at an odd (unaligned) address.

use super::HashFn;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 37 + 101) as u8).collect()
}

const PREFIXES: &[(usize, [u32; 12])] = &[
    (
        0,
        [
            0x00000000, 0xd98c1dd4, 0x00000000, 0x00000000, 0x00000000, 0x84222325, 0x84222325,
            0x811c9dc5, 0x811c9dc5, 0x00000000, 0x00000000, 0xdeadbefc,
        ],
    ),
    (
        1,
        [
            0x11162210, 0x971767e1, 0x00003c03, 0x00006fda, 0xefda7a5a, 0x8601b7ba, 0x8601e5c0,
            0x050c5d7a, 0xe00c22e0, 0x030fe761, 0x988f3810, 0xbd912ee6,
        ],
    ),
    (
        2,
        [
            0x42b493b9, 0xb230e15c, 0x003cc41d, 0x0000543e, 0x543ee723, 0x4b14ce84, 0x4ac6abbe,
            0x9388d884, 0xb6e58dde, 0x5dbd295f, 0x56f7c58b, 0xe34297e4,
        ],
    ),
    (
        3,
        [
            0x090519c9, 0x1806492d, 0x3cc4c0cd, 0x00003658, 0x36581e61, 0x6ba515e3, 0xf069d8e3,
            0x3b932863, 0x85a227e3, 0x1e9c14ca, 0x245d0c9a, 0xe9e56e12,
        ],
    ),
    (
        4,
        [
            0x7d84ee0a, 0x0e58d867, 0xc4c09fb5, 0x0000693f, 0x693ff090, 0x167bcf6d, 0x7c24a275,
            0xd4576c0d, 0xd8bb5e95, 0xf1c0e489, 0xb82b2854, 0x9577b4f6,
        ],
    ),
    (
        5,
        [
            0x8dc504b5, 0x6ae1514e, 0xc09fb960, 0x00006605, 0xe6050981, 0xcb9e89ce, 0x0dbff4e4,
            0xad60e78e, 0x3d0a1d04, 0x8c8b8b9f, 0x161cdc6c, 0xc30ff277,
        ],
    ),
    (
        6,
        [
            0xce3a7299, 0xaa87c9aa, 0x9fb9a50d, 0x00003254, 0xb2546451, 0xfe642914, 0x5d2d44ce,
            0x7d8c8494, 0x30ebcfee, 0x021f3f41, 0x098211c8, 0x9d95c52e,
        ],
    ),
    (
        7,
        [
            0x1cac6e7f, 0xfd8d855f, 0xb9a590e8, 0x00002109, 0x2109caa1, 0x4431ccbf, 0x53eb7b97,
            0x3834b4bf, 0xb037ed57, 0x8933c1df, 0x957ad0f9, 0x8c9c67ea,
        ],
    ),
    (
        8,
        [
            0xa71e443c, 0x456a5077, 0xa5908617, 0x0000309b, 0x309b9c53, 0xe09ee8e5, 0x9923b24d,
            0x39f888c5, 0xa70a7a2d, 0x621a0ce1, 0xa81e2e8e, 0xbb1c8ec5,
        ],
    ),
    (
        9,
        [
            0x3d1b6e6d, 0x6251f198, 0x9086a66b, 0x00003359, 0xb3598bc2, 0x51fa4292, 0xc8581d40,
            0xf8c0b192, 0xaa815ae0, 0xfb5e867f, 0x8720f483, 0xabdd1d49,
        ],
    ),
    (
        10,
        [
            0xfdfa4fff, 0x0810d22a, 0x86a639b5, 0x000002b4, 0x82b4c73a, 0xb3c0e1a4, 0x9246a136,
            0xd6a87764, 0xe85e4016, 0xc36274b8, 0x42cf5e54, 0x372a895b,
        ],
    ),
    (
        11,
        [
            0xeb3fd1e5, 0x4423be35, 0xa639a9e0, 0x00000c3b, 0x0c3bc58f, 0x8f40967b, 0x71fc3853,
            0xb0cc0dbb, 0xf4a0dcd3, 0x72664760, 0x668e6f7d, 0x69c04459,
        ],
    ),
    (
        12,
        [
            0x8fa44884, 0x9ba506a8, 0x39a9ea50, 0x00001b02, 0x1b02f4ce, 0x95404cfd, 0x506c4e5d,
            0xf3c6629d, 0x15c462fd, 0x971db0dd, 0x8dd3083b, 0xbec469b4,
        ],
    ),
    (
        13,
        [
            0xcfc65856, 0xcd1831f9, 0xa9ea3827, 0x000062ac, 0xe2ac1290, 0x9c42d1c6, 0xa8095cb4,
            0x5e4d3d06, 0x2027a054, 0xd717accd, 0x29525e95, 0x03988886,
        ],
    ),
    (
        14,
        [
            0x951ac49e, 0x1c9f509e, 0xea38b859, 0x00003d50, 0xbd50347e, 0x858a7334, 0x87e8ef36,
            0x79971034, 0xb060fc56, 0x00f6adf0, 0x3957c3d3, 0xbc95d8d2,
        ],
    ),
    (
        15,
        [
            0x672abecd, 0xeaac4c68, 0x38b8a21e, 0x00003f62, 0xbf625b52, 0xea41c137, 0xf0cebb07,
            0x9cce81b7, 0xe5ad1407, 0xc123daed, 0xe5d57da1, 0x4124275f,
        ],
    ),
    (
        16,
        [
            0xd50fb5ee, 0x28a19a77, 0xb8a20811, 0x000027d7, 0xa7d72e4a, 0xf244afe5, 0xd0b78c95,
            0x6fe9cc85, 0x0788deb5, 0x6f15b8cc, 0x8589538f, 0xb6330225,
        ],
    ),
    (
        17,
        [
            0x0eeff73f, 0x9f3de0d8, 0xa2086776, 0x00007fa7, 0xffa7d72e, 0x55491daa, 0x581b9f60,
            0x4df30aea, 0x2388f300, 0x065a000d, 0xd7214df3, 0x48a936e6,
        ],
    ),
    (
        18,
        [
            0xb0bc7a4a, 0x24b8309a, 0x08670076, 0x0000682d, 0x682d7e5f, 0x14c29804, 0x49105c0e,
            0x6065d184, 0xe9693b2e, 0x113cfce2, 0x6bea68f6, 0xc9a225df,
        ],
    ),
    (
        19,
        [
            0xc5f62c72, 0xa15c76e1, 0x670068f0, 0x000004bc, 0x04bc611b, 0xb957b133, 0xd9339283,
            0xbbb72d33, 0x6057d503, 0x489c41fe, 0xcf5c1151, 0x8471819c,
        ],
    ),
    (
        20,
        [
            0xc092bb43, 0xcf4f2159, 0x00687948, 0x00006460, 0x64607ed1, 0xf002198d, 0x12a231c5,
            0xb45c276d, 0xd1448c65, 0xbe9b45f4, 0xef512a3f, 0xc3cccc99,
        ],
    ),
    (
        21,
        [
            0x6c83920d, 0xfc45acc3, 0x68797e53, 0x00002cb2, 0x2cb29485, 0xd3916ade, 0xa99a30e4,
            0x5a1210de, 0x9ae8a944, 0x825e6bb6, 0x055345d2, 0x57ee23fc,
        ],
    ),
    (
        22,
        [
            0xae667900, 0x470ad159, 0x797e4131, 0x000065f6, 0xe5f666e9, 0x80189754, 0x31007a7e,
            0xa8708d14, 0x06424d1e, 0xcbd4ec4f, 0xe8772ce3, 0xea559179,
        ],
    ),
    (
        23,
        [
            0x65aec418, 0xee2013a8, 0x7e41da3f, 0x00006237, 0x623781c9, 0x5636dc2f, 0xbc3091b7,
            0xc2d1e9ef, 0xb2a013f7, 0xc2621bdf, 0xbeabe4a3, 0x41cd53dc,
        ],
    ),
    (
        24,
        [
            0xa2119b23, 0x4fedd6df, 0x41da73e4, 0x00007562, 0xf56299a6, 0x80c7dc65, 0x3978037d,
            0x608cbc85, 0x1d01005d, 0xcd6be8e3, 0xb7a718fb, 0x5739f7d0,
        ],
    ),
    (
        25,
        [
            0xaa0c58b2, 0xcce73b13, 0xda73b024, 0x00001520, 0x152025a0, 0x2c648042, 0x591243e0,
            0x7d733a82, 0xd76c3680, 0x530cea62, 0x15a454f0, 0xc5433669,
        ],
    ),
    (
        26,
        [
            0xb13daf6f, 0x9835414a, 0x73b0a399, 0x00006acf, 0xeacf0d6c, 0x6ec5f024, 0x5a095906,
            0xfe651aa4, 0xa159cea6, 0x2ce48495, 0x4779a5c3, 0xcc6157ec,
        ],
    ),
    (
        27,
        [
            0xa92f8de8, 0x1ddc7d8c, 0xb0a3480c, 0x000033e6, 0x33e6b898, 0x3a570d0b, 0xfde27313,
            0x1d28f00b, 0x81601513, 0x6ec92081, 0x6e791b6c, 0xdb06edde,
        ],
    ),
    (
        28,
        [
            0xe86c5e2f, 0x522e7d99, 0xa3484c84, 0x0000538f, 0x538f1ff8, 0x21eb29fd, 0x67ca0a6d,
            0xf271e11d, 0x0941a48d, 0xc0379a11, 0x72fbf5ac, 0xd5a90f68,
        ],
    ),
    (
        29,
        [
            0x32d1de23, 0x9b05008a, 0x484c63fe, 0x00004635, 0x46355b16, 0xa2985896, 0x5c4f2d94,
            0xc64560d6, 0x8e56b8b4, 0x083290e0, 0xac72145d, 0x35b8b535,
        ],
    ),
];

const WORDS: &[(&[u8], [u32; 12])] = &[
    (
        b"foo",
        [
            0x238678dd, 0xdb18bdac, 0x0c3caf96, 0x00000c73, 0x8c736521, 0x6ba13533, 0xfed9d577,
            0x408f5e13, 0xa9f37ed7, 0x76d4d427, 0xc4e0338f, 0x99f84f99,
        ],
    ),
    (
        b"hello world",
        [
            0x3e4a5a57, 0xbb3bb65e, 0xf2063be4, 0x00000d4a, 0x0d4a1185, 0xb1910e6f, 0x023cd2e7,
            0x548da96f, 0xd58b3fa7, 0x4f799873, 0x5e19153b, 0x153343fb,
        ],
    ),
    (
        b"key:000123",
        [
            0xd9cd05fb, 0x7ce43ae6, 0x1cfae465, 0x0000410c, 0x410cdef7, 0x654b59dc, 0x1331d2a2,
            0xac15193c, 0x2d161722, 0xfc690c4d, 0x6390d672, 0x12ce79f9,
        ],
    ),
    (
        b"{user1000}.following",
        [
            0x601d07b4, 0x73813d21, 0xb3926fba, 0x0000760c, 0x760c43ef, 0xb60ca1a8, 0x31c09a76,
            0xf8a53b08, 0x25e77276, 0x01de784b, 0xa6e2c735, 0xa8ff9d55,
        ],
    ),
    (
        b"127.0.0.1:6379-0",
        [
            0xc1c9d55b, 0x8bb75706, 0xd685837e, 0x00000309, 0x830994d7, 0xa37329ac, 0x2a7d4ec6,
            0xb6f42bac, 0x3218d326, 0xbb66ee34, 0x52a5978e, 0x2ac63ae2,
        ],
    ),
    (
        b"memcache",
        [
            0xdcb41bfa, 0x8714b2c6, 0xeda0a4e9, 0x0000444d, 0xc44d893f, 0x06006e22, 0x15ea9d1c,
            0xced87e62, 0x8f2cd4fc, 0x67bbb724, 0x8b9fd936, 0x2a397184,
        ],
    ),
];

#[test]
fn every_function_matches_twemproxy_on_every_tail_length() {
    for (len, expected) in PREFIXES {
        let key = pattern(*len);
        for (f, want) in HashFn::ALL.iter().zip(expected) {
            assert_eq!(f.hash(&key), *want, "{f} over {len} pattern bytes");
        }
    }
}

#[test]
fn every_function_matches_twemproxy_on_ascii_keys() {
    for (key, expected) in WORDS {
        for (f, want) in HashFn::ALL.iter().zip(expected) {
            assert_eq!(
                f.hash(key),
                *want,
                "{f} of {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }
}

#[test]
fn high_bytes_are_sign_extended_like_x86() {
    // With an unsigned read fnv1a_64("\xff") would be (0x84222325 ^ 0xff) * 0x1b3.
    let unsigned = (0x8422_2325u32 ^ 0xff).wrapping_mul(0x1b3);
    assert_ne!(HashFn::Fnv1a64.hash(b"\xff"), unsigned);
    let signed = (0x8422_2325u32 ^ 0xffff_ffff).wrapping_mul(0x1b3);
    assert_eq!(HashFn::Fnv1a64.hash(b"\xff"), signed);
}

#[test]
fn tables_match_the_published_ones() {
    assert_eq!(super::crc16::TABLE[1], 0x1021);
    assert_eq!(super::crc16::TABLE[255], 0x1ef0);
    assert_eq!(super::crc32::TABLE[1], 0x7707_3096);
    assert_eq!(super::crc32::TABLE[255], 0x2d02_ef8d);
}

#[test]
fn names_round_trip() {
    for f in HashFn::ALL {
        assert_eq!(f.name().parse::<HashFn>(), Ok(f));
    }
    assert!("fnv1a-64".parse::<HashFn>().is_err());
    assert_eq!(HashFn::default(), HashFn::Fnv1a64);
}
