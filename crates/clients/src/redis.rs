//! A small Redis (and Valkey) client over the shared RESP2 codec: one
//! connection, one command at a time, every call bounded in time and size.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::conn::{self, deadline};
use crate::resp::{self, Limits, Value};
use crate::{Error, Result};

/// Connection options.
#[derive(Clone)]
pub struct Options {
    /// Deadline for connecting and for each command (write plus reply).
    pub timeout: Duration,
    /// `AUTH` password; sent on every (re)connect when set.
    pub password: Option<String>,
    /// ACL user name (Redis 6+); only used together with `password`.
    pub username: Option<String>,
    /// Largest reply accepted, in bytes, across the whole frame.
    pub max_reply_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(1),
            password: None,
            username: None,
            max_reply_bytes: 16 * 1024 * 1024,
        }
    }
}

// Hand-written so that a password never reaches a log line via `{:?}`.
impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("timeout", &self.timeout)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("username", &self.username)
            .field("max_reply_bytes", &self.max_reply_bytes)
            .finish()
    }
}

/// A Redis connection that reconnects on the next call after any failure
/// (a timed-out or garbled connection is never reused: its framing is lost).
pub struct Client {
    addr: String,
    opts: Options,
    stream: Option<TcpStream>,
    buf: BytesMut,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("connected", &self.stream.is_some())
            .finish()
    }
}

impl Client {
    /// Connects (and authenticates when a password is set).
    pub async fn connect(addr: &str, opts: Options) -> Result<Client> {
        let mut c = Client::lazy(addr, opts);
        c.ensure_connected().await?;
        Ok(c)
    }

    /// A client that connects on its first call; useful when the engine
    /// may not be up yet.
    pub fn lazy(addr: &str, opts: Options) -> Client {
        Client {
            addr: addr.to_string(),
            opts,
            stream: None,
            buf: BytesMut::new(),
        }
    }

    /// The address this client talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn ensure_connected(&mut self) -> Result<()> {
        if self.stream.is_some() {
            return Ok(());
        }
        self.buf.clear();
        self.stream = Some(conn::connect(&self.addr, self.opts.timeout).await?);
        if let Some(password) = self.opts.password.clone() {
            let username = self.opts.username.clone();
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &username {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            match self.roundtrip(&args).await {
                Ok(Value::Error(e)) => {
                    self.stream = None;
                    return Err(Error::Auth(String::from_utf8_lossy(&e).into_owned()));
                }
                Ok(_) => {}
                Err(e) => {
                    self.stream = None;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Sends one command and returns the raw reply, error replies included.
    pub async fn raw_command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value> {
        self.ensure_connected().await?;
        let r = self.roundtrip(args).await;
        if r.is_err() {
            // Whatever was half-read belongs to a reply we no longer track.
            self.stream = None;
        }
        r
    }

    /// Sends one command; an error reply becomes [`Error::Server`] (or
    /// [`Error::Auth`] for `NOAUTH`/`WRONGPASS`).
    pub async fn command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value> {
        match self.raw_command(args).await? {
            Value::Error(e) => {
                let msg = String::from_utf8_lossy(&e).into_owned();
                if msg.starts_with("NOAUTH") || msg.starts_with("WRONGPASS") {
                    Err(Error::Auth(msg))
                } else {
                    Err(Error::Server(msg))
                }
            }
            v => Ok(v),
        }
    }

    async fn roundtrip<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value> {
        let timeout = self.opts.timeout;
        let max = self.opts.max_reply_bytes;
        let limits = Limits {
            max_bulk_len: max,
            ..Limits::default()
        };
        // Taken out while in use: if the caller drops this future mid-reply
        // (its own timeout), the half-read connection goes with it.
        let mut taken = self.stream.take().ok_or(Error::Closed)?;
        let (stream, buf) = (&mut taken, &mut self.buf);
        let r = deadline("redis command", timeout, async {
            let mut out = BytesMut::new();
            resp::encode_command(args, &mut out);
            stream.write_all(&out).await?;
            loop {
                match resp::decode(buf, &limits) {
                    Ok(Some(v)) => return Ok(v),
                    Ok(None) => conn::fill(stream, buf, max).await?,
                    Err(
                        resp::DecodeError::BulkTooLarge { .. }
                        | resp::DecodeError::ArrayTooLarge { .. }
                        | resp::DecodeError::LineTooLong(_),
                    ) => {
                        return Err(Error::TooLarge { limit: max });
                    }
                    Err(e) => return Err(Error::Protocol(e.to_string())),
                }
            }
        })
        .await;
        if r.is_ok() {
            self.stream = Some(taken);
        }
        r
    }

    /// `PING`; succeeds only on `PONG`.
    pub async fn ping(&mut self) -> Result<()> {
        match self.command(&["PING"]).await? {
            Value::Simple(s) if &s[..] == b"PONG" => Ok(()),
            other => Err(Error::UnexpectedReply(format!("{other:?}"))),
        }
    }

    /// `INFO [section]`, parsed.
    pub async fn info(&mut self, section: Option<&str>) -> Result<Info> {
        let reply = match section {
            Some(s) => self.command(&["INFO", s]).await?,
            None => self.command(&["INFO"]).await?,
        };
        match reply.as_bytes() {
            Some(b) => Ok(Info::parse(&String::from_utf8_lossy(b))),
            None => Err(Error::UnexpectedReply(format!("INFO returned {reply:?}"))),
        }
    }

    /// `ROLE`, unparsed (its shape differs between primary and replica).
    pub async fn role(&mut self) -> Result<Value> {
        self.command(&["ROLE"]).await
    }
}

/// The reply of `INFO`: section (lower-case) → key → value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    pub sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl Info {
    /// Parses `# Section` headers and `key:value` lines; anything else is
    /// ignored, so unknown or future fields never fail a parse.
    pub fn parse(text: &str) -> Info {
        let mut info = Info::default();
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if let Some(name) = line.strip_prefix('#') {
                section = name.trim().to_ascii_lowercase();
            } else if let Some((k, v)) = line.split_once(':') {
                info.sections
                    .entry(section.clone())
                    .or_default()
                    .insert(k.to_string(), v.to_string());
            }
        }
        info
    }

    /// The value of `key` in whichever section holds it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.sections
            .values()
            .find_map(|s| s.get(key))
            .map(String::as_str)
    }

    /// The value of `key` parsed as a number.
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key)?.parse().ok()
    }

    /// One section, e.g. `replication` or `keyspace`.
    pub fn section(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.sections.get(&name.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::fake::{Behaviour, serve};

    fn opts() -> Options {
        Options {
            timeout: Duration::from_millis(300),
            max_reply_bytes: 1024 * 1024,
            ..Options::default()
        }
    }

    #[test]
    fn info_parses_sections_and_ignores_noise() {
        let i = Info::parse(
            "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\n\r\ngarbage\r\n# Keyspace\r\ndb0:keys=1,expires=0\r\n",
        );
        assert_eq!(i.get("role"), Some("slave"));
        assert_eq!(i.section("replication").unwrap().len(), 2);
        assert_eq!(i.section("Keyspace").unwrap()["db0"], "keys=1,expires=0");
        assert_eq!(i.get("nope"), None);
    }

    /// PING against a fake server that answers `reply`.
    async fn ping_against(b: Behaviour) -> Result<()> {
        let a = serve(b).await;
        Client::lazy(&a.to_string(), opts()).ping().await
    }

    #[tokio::test]
    async fn ping_ok_and_misbehaving_servers() {
        ping_against(Behaviour::Reply(b"+PONG\r\n".to_vec()))
            .await
            .unwrap();
        let cases: [(&[u8], &str); 4] = [
            (b"-LOADING Redis is loading\r\n", "server_error"),
            (b"HTTP/1.1 400 Bad Request\r\n\r\n", "protocol"),
            // Half-closed: the bulk string never completes.
            (b"$10\r\nabc", "closed"),
            // Announced size beyond the limit: refused before reading it.
            (b"$1073741824\r\n", "too_large"),
        ];
        for (reply, want) in cases {
            let e = ping_against(Behaviour::Reply(reply.to_vec()))
                .await
                .unwrap_err();
            assert_eq!(e.label(), want, "{e}");
        }
        // A simple string that never ends: refused at the line limit.
        let mut flood = b"+".to_vec();
        flood.extend(std::iter::repeat_n(b'x', 256 * 1024));
        let e = ping_against(Behaviour::ReplyAndHang(flood))
            .await
            .unwrap_err();
        assert_eq!(e.label(), "too_large", "{e}");
    }

    #[tokio::test]
    async fn silent_server_times_out_then_reconnects() {
        let a = serve(Behaviour::Silent).await;
        let mut c = Client::connect(&a.to_string(), opts()).await.unwrap();
        let t = std::time::Instant::now();
        let e = c.ping().await.unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(
            c.stream.is_none(),
            "a timed-out connection must not be reused"
        );
    }

    #[tokio::test]
    async fn auth_failure_is_typed() {
        let a = serve(Behaviour::Reply(
            b"-WRONGPASS invalid username-password pair\r\n".to_vec(),
        ))
        .await;
        let o = Options {
            password: Some("nope".into()),
            ..opts()
        };
        let e = Client::connect(&a.to_string(), o.clone())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Auth(_)), "{e}");
        assert!(
            !format!("{o:?}").contains("nope"),
            "password leaked into Debug"
        );
    }
}
