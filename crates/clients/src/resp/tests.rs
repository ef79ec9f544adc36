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
