use bytes::{Bytes, BytesMut};

use super::*;

fn decode_all(input: &[u8]) -> Result<Option<Value>, DecodeError> {
    decode(&mut BytesMut::from(input), &Limits::default())
}

fn bulk(s: &str) -> Value {
    Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn decodes_each_type() {
    assert_eq!(
        decode_all(b"+OK\r\n"),
        Ok(Some(Value::Simple(Bytes::from_static(b"OK"))))
    );
    assert_eq!(
        decode_all(b"-ERR bad\r\n"),
        Ok(Some(Value::Error(Bytes::from_static(b"ERR bad"))))
    );
    assert_eq!(decode_all(b":-42\r\n"), Ok(Some(Value::Integer(-42))));
    assert_eq!(decode_all(b"$3\r\nfoo\r\n"), Ok(Some(bulk("foo"))));
    assert_eq!(decode_all(b"$0\r\n\r\n"), Ok(Some(bulk(""))));
    assert_eq!(decode_all(b"$-1\r\n"), Ok(Some(Value::Null)));
    assert_eq!(decode_all(b"*-1\r\n"), Ok(Some(Value::NullArray)));
    assert_eq!(
        decode_all(b"*2\r\n$3\r\nGET\r\n*1\r\n:1\r\n"),
        Ok(Some(Value::Array(vec![
            bulk("GET"),
            Value::Array(vec![Value::Integer(1)])
        ])))
    );
}

#[test]
fn bulk_strings_may_contain_crlf() {
    assert_eq!(decode_all(b"$4\r\na\r\nb\r\n"), Ok(Some(bulk("a\r\nb"))));
}

#[test]
fn every_prefix_of_a_frame_is_incomplete_not_an_error() {
    let frame = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n";
    for cut in 0..frame.len() {
        assert_eq!(
            frame_len(&frame[..cut], &Limits::default()),
            Ok(None),
            "cut at {cut}"
        );
    }
    assert_eq!(frame_len(frame, &Limits::default()), Ok(Some(frame.len())));
}

#[test]
fn decode_consumes_exactly_one_frame() {
    let mut buf = BytesMut::from(&b"+A\r\n+B\r\n+C"[..]);
    let limits = Limits::default();
    assert_eq!(
        decode(&mut buf, &limits),
        Ok(Some(Value::Simple("A".into())))
    );
    assert_eq!(
        decode(&mut buf, &limits),
        Ok(Some(Value::Simple("B".into())))
    );
    assert_eq!(decode(&mut buf, &limits), Ok(None));
    assert_eq!(&buf[..], b"+C", "an incomplete frame stays in the buffer");
}

#[test]
fn rejects_malformed_input() {
    assert_eq!(decode_all(b"?x\r\n"), Err(DecodeError::InvalidType(b'?')));
    assert!(matches!(
        decode_all(b"$-2\r\n"),
        Err(DecodeError::InvalidLength(_))
    ));
    assert!(matches!(
        decode_all(b"*-5\r\n"),
        Err(DecodeError::InvalidLength(_))
    ));
    assert!(matches!(
        decode_all(b"$abc\r\n"),
        Err(DecodeError::InvalidLength(_))
    ));
    assert!(matches!(
        decode_all(b"$\r\n"),
        Err(DecodeError::InvalidLength(_))
    ));
    assert!(matches!(
        decode_all(b":12x\r\n"),
        Err(DecodeError::InvalidInteger(_))
    ));
    assert_eq!(decode_all(b"$3\r\nfooXY"), Err(DecodeError::MissingCrlf));
    assert!(matches!(
        decode_all(b"+a\rb\r\n"),
        Err(DecodeError::InvalidLength(_))
    ));
}

#[test]
fn huge_lengths_are_refused_before_allocating() {
    // A 2 GB bulk length must fail at once rather than wait for 2 GB of data.
    assert_eq!(
        decode_all(b"$2147483648\r\n"),
        Err(DecodeError::BulkTooLarge {
            len: 2_147_483_648,
            max: Limits::default().max_bulk_len
        })
    );
    assert!(matches!(
        decode_all(b"*99999999999\r\n"),
        Err(DecodeError::ArrayTooLarge { .. })
    ));
    // More digits than any usize: an error, not an overflow.
    assert!(matches!(
        decode_all(b"$99999999999999999999999\r\n"),
        Err(DecodeError::InvalidLength(_))
    ));
}

#[test]
fn limits_are_configurable() {
    let limits = Limits {
        max_bulk_len: 4,
        max_array_len: 2,
        max_depth: 1,
        max_line_len: 8,
    };
    assert!(frame_len(b"$4\r\nabcd\r\n", &limits).unwrap().is_some());
    assert!(matches!(
        frame_len(b"$5\r\n", &limits),
        Err(DecodeError::BulkTooLarge { len: 5, max: 4 })
    ));
    assert!(matches!(
        frame_len(b"*3\r\n", &limits),
        Err(DecodeError::ArrayTooLarge { len: 3, max: 2 })
    ));
    assert_eq!(
        frame_len(b"*1\r\n*1\r\n", &limits),
        Err(DecodeError::TooDeep(1))
    );
    assert_eq!(
        frame_len(b"+123456789", &limits),
        Err(DecodeError::LineTooLong(8)),
        "an endless line is refused without waiting for CRLF"
    );
}

#[test]
fn encode_round_trips() {
    let values = [
        Value::Simple("OK".into()),
        Value::Error("ERR x".into()),
        Value::Integer(i64::MIN),
        bulk("a\r\nb"),
        Value::Null,
        Value::NullArray,
        Value::Array(vec![bulk("x"), Value::Array(vec![]), Value::Null]),
    ];
    for value in values {
        let mut out = BytesMut::new();
        encode(&value, &mut out);
        assert_eq!(decode(&mut out, &Limits::default()), Ok(Some(value)));
        assert!(out.is_empty());
    }
}

#[test]
fn encode_command_writes_bulk_array() {
    let mut out = BytesMut::new();
    encode_command(&["INFO", "replication"], &mut out);
    assert_eq!(&out[..], b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n");
}

#[test]
fn decode_frame_returns_the_raw_bytes_and_a_value_sharing_them() {
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n"[..]);
    let (raw, value) = decode_frame(&mut buf, &Limits::default()).unwrap().unwrap();
    assert_eq!(&raw[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    assert_eq!(
        value,
        Value::Array(vec![
            Value::Bulk(Bytes::from_static(b"GET")),
            Value::Bulk(Bytes::from_static(b"k"))
        ])
    );
    assert_eq!(&buf[..], b"*1\r\n");
    assert_eq!(decode_frame(&mut buf, &Limits::default()).unwrap(), None);
}

#[test]
fn a_wrong_type_byte_is_refused_without_waiting_for_its_line() {
    assert_eq!(
        frame_len(b"P", &Limits::default()),
        Err(DecodeError::InvalidType(b'P'))
    );
    assert_eq!(
        frame_len(b"*1\r\nP", &Limits::default()),
        Err(DecodeError::InvalidType(b'P'))
    );
}

// ---- ReplyFramer: trusted replies of any depth and size ----

/// Feeds `stream` to a framer `chunk` bytes at a time, as a socket would,
/// and returns the lengths of the frames it found.
fn frames_in_chunks(stream: &[u8], chunk: usize) -> Result<Vec<usize>, DecodeError> {
    let mut framer = ReplyFramer::new();
    let mut buf = BytesMut::new();
    let mut found = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        while let Some(len) = framer.next_frame(&buf)? {
            let _ = buf.split_to(len);
            found.push(len);
        }
    }
    assert!(buf.is_empty(), "bytes left over: {buf:?}");
    Ok(found)
}

fn sample_frames() -> Vec<&'static [u8]> {
    vec![
        b"+OK\r\n",
        b"-ERR bad thing\r\n",
        b":-9223372036854775808\r\n",
        b"$3\r\nfoo\r\n",
        b"$4\r\na\r\nb\r\n",
        b"$0\r\n\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*3\r\n$3\r\nSET\r\n*1\r\n:1\r\n*0\r\n",
        b"*2\r\n*2\r\n+a\r\n-b\r\n$-1\r\n",
    ]
}

#[test]
fn framer_finds_every_frame_however_the_bytes_arrive() {
    let frames = sample_frames();
    let stream: Vec<u8> = frames.concat();
    let want: Vec<usize> = frames.iter().map(|f| f.len()).collect();
    for chunk in [1, 2, 3, 5, 7, 64, stream.len()] {
        assert_eq!(
            frames_in_chunks(&stream, chunk),
            Ok(want.clone()),
            "chunk {chunk}"
        );
    }
    // The same frames as the client-side framing finds.
    for f in frames {
        assert_eq!(frame_len(f, &Limits::default()), Ok(Some(f.len())));
    }
}

#[test]
fn framer_follows_any_depth() {
    // 100,000 levels: the client limits stop at 16, the framer keeps no stack.
    let depth = 100_000;
    let mut frame = b"*1\r\n".repeat(depth);
    frame.extend_from_slice(b":7\r\n");
    assert_eq!(
        frame_len(&frame, &Limits::default()),
        Err(DecodeError::TooDeep(16))
    );
    assert_eq!(frames_in_chunks(&frame, 4096), Ok(vec![frame.len()]));
}

#[test]
fn framer_follows_millions_of_elements_in_linear_time() {
    let n = 1_100_000;
    let mut frame = format!("*{n}\r\n").into_bytes();
    for i in 0..n {
        let item = i.to_string();
        frame.extend_from_slice(format!("${}\r\n{item}\r\n", item.len()).as_bytes());
    }
    assert!(matches!(
        frame_len(&frame, &Limits::default()),
        Err(DecodeError::ArrayTooLarge { .. })
    ));
    // 16 KiB reads, as a socket gives them: rescanning from the start on
    // every read would take minutes here.
    let start = std::time::Instant::now();
    assert_eq!(frames_in_chunks(&frame, 16 * 1024), Ok(vec![frame.len()]));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn framer_refuses_what_is_not_resp() {
    // An integer line too long for any number, its CR already there or
    // not (found by the resp_reply fuzz target: the verdict must not
    // depend on how the bytes were split).
    let long_with_cr = [&[b':'; 40][..], b"\r"].concat();
    let cases: [(&[u8], DecodeError); 9] = [
        (b"?", DecodeError::InvalidType(b'?')),
        (b"*1\r\n!", DecodeError::InvalidType(b'!')),
        (
            b"+a\rb\r\n",
            DecodeError::InvalidLength("CR without LF".into()),
        ),
        (b"$3\r\nfooXY", DecodeError::MissingCrlf),
        (b":12x\r\n", DecodeError::InvalidInteger("12x".into())),
        (b"$-2\r\n", DecodeError::InvalidLength("-2".into())),
        (b"*abc\r\n", DecodeError::InvalidLength("abc".into())),
        (&[b':'; 40], DecodeError::LineTooLong(32)),
        (&long_with_cr, DecodeError::LineTooLong(32)),
    ];
    for (input, want) in cases {
        let mut framer = ReplyFramer::new();
        assert_eq!(framer.next_frame(input), Err(want), "{input:?}");
    }
    // Counts past what any stream could hold are an error, not an overflow.
    let mut framer = ReplyFramer::new();
    let huge = b"*9999999999999999999\r\n*9999999999999999999\r\n";
    assert!(matches!(
        framer.next_frame(huge),
        Err(DecodeError::InvalidLength(_))
    ));
    let mut framer = ReplyFramer::new();
    assert!(matches!(
        framer.next_frame(b"$9999999999999999999\r\n"),
        Ok(None) | Err(DecodeError::InvalidLength(_))
    ));
}

#[test]
fn framer_never_waits_on_an_endless_number() {
    let mut framer = ReplyFramer::new();
    assert_eq!(framer.next_frame(b"$12345"), Ok(None));
    assert_eq!(
        framer.next_frame(&[b'$'; 64][..]),
        Err(DecodeError::LineTooLong(32))
    );
}

#[test]
fn discarding_skips_a_frame_without_holding_it() {
    // A 1 MiB bulk string, a long status line, then a small frame.
    let mut stream = b"*2\r\n$1048576\r\n".to_vec();
    stream.extend(std::iter::repeat_n(b'x', 1 << 20));
    stream.extend_from_slice(b"\r\n+");
    stream.extend(std::iter::repeat_n(b's', 100_000));
    stream.extend_from_slice(b"\r\n:42\r\n");
    for chunk in [1000, 4096, 65536] {
        let mut framer = ReplyFramer::new();
        let mut buf = BytesMut::new();
        let mut held = 0;
        let mut lens = Vec::new();
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match framer.next_frame(&buf).unwrap() {
                    Some(len) => {
                        lens.push(len);
                        let _ = buf.split_to(len);
                    }
                    None => {
                        if lens.is_empty() {
                            framer.discard(&mut buf);
                        }
                        held = held.max(buf.len());
                        break;
                    }
                }
            }
        }
        assert_eq!(lens.len(), 2, "chunk {chunk}");
        assert_eq!(lens[1], 5, "the next frame is intact");
        assert!(
            held <= chunk + 32,
            "held {held} bytes with {chunk}-byte reads"
        );
    }
}
