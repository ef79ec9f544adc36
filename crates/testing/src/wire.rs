//! Tiny blocking protocol probes used to decide that an engine is up.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Sends `req` to 127.0.0.1:`port` and reads until `done(reply)` holds, the
/// peer closes, or `timeout` passes. Replies are capped at 1 MiB.
pub fn exchange(
    port: u16,
    req: &[u8],
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    let mut s =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(req).map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if done(&text) {
            return Ok(text);
        }
        if start.elapsed() > timeout || buf.len() > 1 << 20 {
            return Err(format!("incomplete reply {text:?}"));
        }
        match s.read(&mut chunk) {
            Ok(0) => return Ok(text),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e} after {text:?}")),
        }
    }
}

/// A blocking HTTP/1.1 GET; returns (status, body). Headers are sent as
/// given (e.g. `Accept: application/json`).
pub fn http_get(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<(u16, String), String> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let reply = exchange(port, req.as_bytes(), timeout, |_| false)?;
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP reply: {reply:?}"))?;
    let body = reply.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Ok((status, body.to_string()))
}
