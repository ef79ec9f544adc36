//! A memcached text-protocol client for `version` and `stats`.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::conn::{self, deadline, take_line};
use crate::{Error, Result};

/// `stats` replies are a few KiB; anything near this is not memcached.
const MAX_REPLY: usize = 1024 * 1024;

/// One memcached connection; reconnects on the next call after a failure.
#[derive(Debug)]
pub struct Client {
    addr: String,
    timeout: Duration,
    stream: Option<TcpStream>,
    buf: BytesMut,
}

impl Client {
    /// Connects with a deadline.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Client> {
        let mut c = Client::lazy(addr, timeout);
        c.stream = Some(conn::connect(addr, timeout).await?);
        Ok(c)
    }

    /// A client that connects on its first call.
    pub fn lazy(addr: &str, timeout: Duration) -> Client {
        Client {
            addr: addr.to_string(),
            timeout,
            stream: None,
            buf: BytesMut::new(),
        }
    }

    /// `version` → the server's version string.
    pub async fn version(&mut self) -> Result<String> {
        let lines = self
            .request(b"version\r\n", |l| l.starts_with("VERSION "))
            .await?;
        let last = lines.last().map(String::as_str).unwrap_or_default();
        Ok(last.trim_start_matches("VERSION ").to_string())
    }

    /// `stats` → name → value (`STAT name value` lines up to `END`).
    pub async fn stats(&mut self) -> Result<BTreeMap<String, String>> {
        let lines = self.request(b"stats\r\n", |l| l == "END").await?;
        let mut out = BTreeMap::new();
        for line in &lines[..lines.len() - 1] {
            let mut parts = line.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("STAT"), Some(k), Some(v)) => {
                    out.insert(k.to_string(), v.to_string());
                }
                _ => return Err(Error::UnexpectedReply(truncate(line))),
            }
        }
        Ok(out)
    }

    /// Writes `req` and collects reply lines until `is_last` accepts one.
    async fn request(&mut self, req: &[u8], is_last: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        if self.stream.is_none() {
            self.buf.clear();
            self.stream = Some(conn::connect(&self.addr, self.timeout).await?);
        }
        // Taken out while in use so that a cancelled call drops the
        // connection instead of leaving half a reply on it.
        let mut taken = self.stream.take().ok_or(Error::Closed)?;
        let (s, buf) = (&mut taken, &mut self.buf);
        let r = deadline("memcached request", self.timeout, async {
            s.write_all(req).await?;
            let mut lines = Vec::new();
            loop {
                while let Some(line) = take_line(buf) {
                    let line = String::from_utf8(line.to_vec())
                        .map_err(|_| Error::Protocol("reply is not UTF-8".into()))?;
                    if line == "ERROR"
                        || line.starts_with("SERVER_ERROR")
                        || line.starts_with("CLIENT_ERROR")
                    {
                        return Err(Error::Server(truncate(&line)));
                    }
                    let done = is_last(&line);
                    lines.push(line);
                    if done {
                        return Ok(lines);
                    }
                }
                // Count what is already consumed against the limit too.
                let used: usize = lines.iter().map(|l| l.len() + 2).sum();
                conn::fill(s, buf, MAX_REPLY.saturating_sub(used).max(1)).await?;
            }
        })
        .await;
        if r.is_ok() {
            self.stream = Some(taken);
        }
        r
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::fake::{Behaviour, serve};

    const T: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn parses_stats_and_version() {
        let a = serve(Behaviour::Reply(
            b"STAT pid 1\r\nSTAT accepting_conns 1\r\nSTAT version 1.6.18\r\nEND\r\n".to_vec(),
        ))
        .await;
        let s = Client::connect(&a.to_string(), T)
            .await
            .unwrap()
            .stats()
            .await
            .unwrap();
        assert_eq!(s["accepting_conns"], "1");
        assert_eq!(s.len(), 3);
        let a = serve(Behaviour::Reply(b"VERSION 1.6.18\r\n".to_vec())).await;
        let v = Client::connect(&a.to_string(), T)
            .await
            .unwrap()
            .version()
            .await
            .unwrap();
        assert_eq!(v, "1.6.18");
    }

    #[tokio::test]
    async fn garbage_half_close_flood_and_silence_are_typed_errors() {
        let cases = [
            (
                Behaviour::Reply(b"HELLO there\r\nEND\r\n".to_vec()),
                "unexpected_reply",
            ),
            (
                Behaviour::Reply(b"SERVER_ERROR out of memory\r\n".to_vec()),
                "server_error",
            ),
            (Behaviour::Reply(b"STAT pid 1\r\n".to_vec()), "closed"),
            (Behaviour::Flood(1 << 30), "too_large"),
            (Behaviour::Silent, "timeout"),
        ];
        for (b, want) in cases {
            let a = serve(b).await;
            let e = Client::lazy(&a.to_string(), T).stats().await.unwrap_err();
            assert_eq!(e.label(), want, "{e}");
        }
    }
}
