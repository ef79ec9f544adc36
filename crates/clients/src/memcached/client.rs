//! A memcached text-protocol client for `version`, `stats`, and `set`/`get`
//! of text values (enough for health checks and tests, not a cache client).

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

    /// `set key 0 0 <len>` → `STORED`. `value` is text on one line: `get`
    /// reads values back as lines.
    pub async fn set(&mut self, key: &str, value: &str) -> Result<()> {
        check_key(key)?;
        if value.contains(['\r', '\n']) {
            return Err(Error::Config(
                "memcached value: one line of text, without CR or LF".into(),
            ));
        }
        let req = format!("set {key} 0 0 {}\r\n{value}\r\n", value.len());
        let lines = self.request(req.as_bytes(), |_| true).await?;
        match lines.last().map(String::as_str) {
            Some("STORED") => Ok(()),
            other => Err(Error::UnexpectedReply(truncate(other.unwrap_or_default()))),
        }
    }

    /// `get key` → its value, or `None` on a miss.
    pub async fn get(&mut self, key: &str) -> Result<Option<String>> {
        check_key(key)?;
        let lines = self
            .request(format!("get {key}\r\n").as_bytes(), |l| l == "END")
            .await?;
        match &lines[..] {
            [end] if end == "END" => Ok(None),
            [header, value, end] if end == "END" => {
                let len = header
                    .strip_prefix("VALUE ")
                    .and_then(|h| h.split(' ').nth(2))
                    .and_then(|n| n.parse::<usize>().ok());
                // A value holding CRLF would arrive as several lines.
                if len != Some(value.len()) {
                    return Err(Error::UnexpectedReply(truncate(header)));
                }
                Ok(Some(value.clone()))
            }
            other => Err(Error::UnexpectedReply(truncate(
                other.first().map(String::as_str).unwrap_or_default(),
            ))),
        }
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

/// memcached keys: 1 to 250 bytes, no spaces or control characters.
fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 250 || key.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(Error::Config(format!(
            "memcached key {:?}: 1 to 250 bytes without spaces or control characters",
            truncate(key)
        )));
    }
    Ok(())
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
    async fn get_parses_a_hit_and_a_miss_and_refuses_a_bad_length() {
        let get = |reply: &'static [u8]| async move {
            let a = serve(Behaviour::Reply(reply.to_vec())).await;
            Client::lazy(&a.to_string(), T).get("k").await
        };
        assert_eq!(
            get(b"VALUE k 0 5\r\nhello\r\nEND\r\n").await.unwrap(),
            Some("hello".into())
        );
        assert_eq!(get(b"END\r\n").await.unwrap(), None);
        // A value with CRLF inside arrives as two lines: refused, not cut.
        let e = get(b"VALUE k 0 7\r\nhe\r\nllo\r\nEND\r\n")
            .await
            .unwrap_err();
        assert_eq!(e.label(), "unexpected_reply", "{e}");
        let e = get(b"VALUE k 0 9\r\nhello\r\nEND\r\n").await.unwrap_err();
        assert_eq!(e.label(), "unexpected_reply", "{e}");
    }

    #[tokio::test]
    async fn set_wants_stored_and_bad_keys_or_values_never_reach_the_server() {
        let a = serve(Behaviour::Reply(b"STORED\r\n".to_vec())).await;
        Client::lazy(&a.to_string(), T).set("k", "v").await.unwrap();
        let a = serve(Behaviour::Reply(b"NOT_STORED\r\n".to_vec())).await;
        let e = Client::lazy(&a.to_string(), T)
            .set("k", "v")
            .await
            .unwrap_err();
        assert_eq!(e.label(), "unexpected_reply", "{e}");
        // Refused before connecting: the address is never dialled.
        let mut c = Client::lazy("127.0.0.1:1", T);
        let long = "k".repeat(251);
        for key in ["", "a b", "a\r\nflush_all", long.as_str()] {
            let e = c.set(key, "v").await.unwrap_err();
            assert_eq!(e.label(), "config", "{key:?}: {e}");
            let e = c.get(key).await.unwrap_err();
            assert_eq!(e.label(), "config", "{key:?}: {e}");
        }
        let e = c.set("k", "two\r\nlines").await.unwrap_err();
        assert_eq!(e.label(), "config", "{e}");
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
