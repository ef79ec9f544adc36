use bytes::{BufMut, BytesMut};

use super::Value;

/// Appends `value` to `out` in RESP2 form.
pub fn encode(value: &Value, out: &mut BytesMut) {
    match value {
        Value::Simple(s) => line(out, b'+', s),
        Value::Error(s) => line(out, b'-', s),
        Value::Integer(i) => line(out, b':', i.to_string().as_bytes()),
        Value::Bulk(b) => bulk(out, b),
        Value::Null => out.put_slice(b"$-1\r\n"),
        Value::NullArray => out.put_slice(b"*-1\r\n"),
        Value::Array(items) => {
            line(out, b'*', items.len().to_string().as_bytes());
            for item in items {
                encode(item, out);
            }
        }
    }
}

/// Appends a command (an array of bulk strings) to `out`.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut BytesMut) {
    line(out, b'*', args.len().to_string().as_bytes());
    for arg in args {
        bulk(out, arg.as_ref());
    }
}

fn line(out: &mut BytesMut, kind: u8, body: &[u8]) {
    out.reserve(body.len() + 3);
    out.put_u8(kind);
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

fn bulk(out: &mut BytesMut, data: &[u8]) {
    line(out, b'$', data.len().to_string().as_bytes());
    out.reserve(data.len() + 2);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}
