//! A minimal ZooKeeper client session over the binary (jute) protocol:
//! connect, create, read, authenticate and reconfigure. Enough for a client
//! that must see what a real application sees (an acknowledged write, an
//! unavailable quorum), which the four-letter words cannot show, and for
//! the operator to change ensemble membership through ZooKeeper's own
//! `reconfig`.
//!
//! One request at a time, no watches, no pings: a caller that goes idle
//! for longer than the session timeout gets [`Error::Closed`] and connects
//! again.

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::conn::{self, deadline};
use crate::{Error, Result};

/// Frames larger than this are refused (ZooKeeper's own `jute.maxbuffer`
/// default is 1 MiB of data).
const MAX_FRAME: usize = 2 * 1024 * 1024;
/// What the session asks the server to keep it alive for without traffic.
const SESSION_TIMEOUT_MS: i32 = 10_000;

const OP_CREATE: i32 = 1;
const OP_GET_DATA: i32 = 4;
const OP_RECONFIG: i32 = 16;
const OP_AUTH: i32 = 100;
/// Auth packets do not take a sequence number: ZooKeeper answers them with
/// this fixed xid (`ClientCnxn.AUTHPACKET_XID`).
const AUTH_XID: i32 = -4;
const ERR_UNIMPLEMENTED: i32 = -6;
const ERR_BAD_ARGUMENTS: i32 = -8;
const ERR_NEW_CONFIG_NO_QUORUM: i32 = -13;
const ERR_RECONFIG_IN_PROGRESS: i32 = -14;
const ERR_NO_NODE: i32 = -101;
const ERR_NO_AUTH: i32 = -102;
const ERR_BAD_VERSION: i32 = -103;
const ERR_NODE_EXISTS: i32 = -110;
const ERR_AUTH_FAILED: i32 = -115;
const ERR_RECONFIG_DISABLED: i32 = -123;
/// `ZooDefs.Perms.ALL`, for the `world:anyone` ACL.
const PERMS_ALL: i32 = 31;

/// An open session with one server.
#[derive(Debug)]
pub struct Session {
    stream: TcpStream,
    /// Received bytes not yet consumed (a reply may arrive with a ping).
    buf: BytesMut,
    xid: i32,
    timeout: Duration,
    /// The zxid of the last reply: the write (or read) it acknowledged.
    pub last_zxid: i64,
}

/// A reply's header: which request, at which zxid, and ZooKeeper's error code.
#[derive(Debug, PartialEq, Eq)]
struct ReplyHeader {
    xid: i32,
    zxid: i64,
    err: i32,
}

impl Session {
    /// Connects to `addr` and opens a new session; each call (this one
    /// included) must complete within `timeout`.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Session> {
        deadline("zookeeper connect", timeout, async {
            let mut stream = conn::connect(addr, timeout).await?;
            let mut req = BytesMut::new();
            req.put_i32(0); // protocol version
            req.put_i64(0); // last zxid seen
            req.put_i32(SESSION_TIMEOUT_MS);
            req.put_i64(0); // session id: a new one
            put_buffer(&mut req, &[0u8; 16]); // password
            write_frame(&mut stream, &req).await?;
            let mut buf = BytesMut::new();
            let mut resp = read_frame(&mut stream, &mut buf).await?;
            // protocolVersion, timeOut, sessionId, passwd: a zero timeout
            // means the server refused the session.
            need(&resp, 16)?;
            let _version = resp.get_i32();
            let negotiated = resp.get_i32();
            if negotiated <= 0 {
                return Err(Error::Server(
                    "the server refused the session (it is not serving)".into(),
                ));
            }
            Ok(Session {
                stream,
                buf,
                xid: 0,
                timeout,
                last_zxid: 0,
            })
        })
        .await
    }

    /// Creates a persistent znode readable and writable by anyone. A node
    /// that exists already is [`Error::Server`] "node exists".
    pub async fn create(&mut self, path: &str, data: &[u8]) -> Result<()> {
        let mut body = BytesMut::new();
        put_string(&mut body, path);
        put_buffer(&mut body, data);
        body.put_i32(1); // one ACL: world:anyone, all permissions
        body.put_i32(PERMS_ALL);
        put_string(&mut body, "world");
        put_string(&mut body, "anyone");
        body.put_i32(0); // flags: persistent
        let (header, _) = self.call(OP_CREATE, &body).await?;
        match header.err {
            0 => Ok(()),
            ERR_NODE_EXISTS => Err(Error::Server(format!("node exists: {path}"))),
            code => Err(server_error(code)),
        }
    }

    /// The data of a znode, or `None` when it does not exist.
    pub async fn get(&mut self, path: &str) -> Result<Option<Vec<u8>>> {
        let mut body = BytesMut::new();
        put_string(&mut body, path);
        body.put_u8(0); // no watch
        let (header, mut resp) = self.call(OP_GET_DATA, &body).await?;
        match header.err {
            0 => Ok(Some(get_buffer(&mut resp)?)),
            ERR_NO_NODE => Ok(None),
            code => Err(server_error(code)),
        }
    }

    /// Adds credentials to the session (`addAuthInfo`), e.g. scheme
    /// `digest` with `user:password`; with `super:<password>` the session
    /// becomes ZooKeeper's super user when the server runs with the matching
    /// [`super_digest`].
    ///
    /// The `digest` scheme accepts any `user:password` (a wrong password
    /// only yields a different identity, refused later as "no auth"): only
    /// an unknown scheme or a failing provider gets [`Error::Server`]
    /// "zookeeper auth failed". The server then closes the connection, so
    /// the session is unusable afterwards; connect again.
    pub async fn add_auth(&mut self, scheme: &str, auth: &[u8]) -> Result<()> {
        let mut body = BytesMut::new();
        body.put_i32(0); // type: unused by the server, 0 like the Java client
        put_string(&mut body, scheme);
        put_buffer(&mut body, auth);
        // Not `call`: auth replies carry zxid 0, which is no acknowledgement.
        let header = match self.request(AUTH_XID, OP_AUTH, &body).await {
            Ok((header, _)) => header,
            Err(Error::Closed) => {
                return Err(Error::Server(format!(
                    "zookeeper auth failed for scheme {scheme:?}: the server closed the \
                     connection (it does so when authentication fails)"
                )));
            }
            Err(e) => return Err(e),
        };
        match header.err {
            0 => Ok(()),
            ERR_AUTH_FAILED => Err(Error::Server(format!(
                "zookeeper auth failed ({ERR_AUTH_FAILED}) for scheme {scheme:?} (unknown scheme \
                 or rejected credentials); the server closes the connection"
            ))),
            code => Err(server_error(code)),
        }
    }

    /// Changes the ensemble's membership (ZooKeeper 3.5+ `reconfig`,
    /// incremental form) and returns the new dynamic configuration as the
    /// server reports it (`server.N=...` lines and `version=...`).
    ///
    /// `joining` is a comma-separated list of server specs
    /// (`server.4=host:quorum:election:participant;host:client`),
    /// `leaving` a comma-separated list of server ids; `from_config` makes
    /// the change conditional on the current configuration version (the
    /// hexadecimal `version=` of `conf`, parsed), `None` applies it to
    /// whatever is current.
    ///
    /// The server must run with `reconfigEnabled=true` in quorum mode, and
    /// the session must be the super user (see [`Session::add_auth`])
    /// unless the server skips ACLs: each failure is an [`Error::Server`]
    /// that says so. ZooKeeper checks permission last, so an unauthorized
    /// session still sees "no quorum", "bad version" or "in progress"
    /// first. Removing an id that is not a member succeeds (a new version,
    /// same members); removing every voter is "bad arguments".
    pub async fn reconfig(
        &mut self,
        joining: Option<&str>,
        leaving: Option<&str>,
        from_config: Option<i64>,
    ) -> Result<Vec<u8>> {
        let mut body = BytesMut::new();
        put_opt_string(&mut body, joining);
        put_opt_string(&mut body, leaving);
        put_opt_string(&mut body, None); // newMembers: the non-incremental form
        body.put_i64(from_config.unwrap_or(-1));
        let (header, mut resp) = self.call(OP_RECONFIG, &body).await?;
        match header.err {
            // A GetDataResponse: the new config, then a Stat left unread.
            0 => get_buffer(&mut resp),
            code => Err(reconfig_error(code, from_config)),
        }
    }

    /// A numbered request; its reply's zxid becomes [`Session::last_zxid`].
    async fn call(&mut self, op: i32, body: &[u8]) -> Result<(ReplyHeader, BytesMut)> {
        self.xid += 1;
        let xid = self.xid;
        let (header, resp) = self.request(xid, op, body).await?;
        self.last_zxid = header.zxid;
        Ok((header, resp))
    }

    /// Sends one request and waits for the reply with the same xid.
    async fn request(&mut self, xid: i32, op: i32, body: &[u8]) -> Result<(ReplyHeader, BytesMut)> {
        let timeout = self.timeout;
        let stream = &mut self.stream;
        let buf = &mut self.buf;
        deadline("zookeeper request", timeout, async move {
            let mut req = BytesMut::with_capacity(8 + body.len());
            req.put_i32(xid);
            req.put_i32(op);
            req.put_slice(body);
            write_frame(stream, &req).await?;
            loop {
                let mut resp = read_frame(stream, buf).await?;
                need(&resp, 16)?;
                let header = ReplyHeader {
                    xid: resp.get_i32(),
                    zxid: resp.get_i64(),
                    err: resp.get_i32(),
                };
                if header.xid == xid {
                    return Ok((header, resp));
                }
                // Other negative xids are notifications and pings, not
                // replies (the auth reply's -4 is matched above).
                if header.xid < 0 {
                    continue;
                }
                return Err(Error::Protocol(format!(
                    "reply to request {} while waiting for {xid}",
                    header.xid
                )));
            }
        })
        .await
    }
}

/// ZooKeeper's digest of `user:password` for the `digest` scheme
/// (`DigestAuthenticationProvider.generateDigest`): base64 of the SHA-1 of
/// `user:password`. Start the server with
/// `-Dzookeeper.DigestAuthenticationProvider.superDigest=super:<digest>`
/// (user `super`) and authenticate with scheme `digest`, auth
/// `super:<password>` to become the super user.
pub fn super_digest(user: &str, password: &str) -> String {
    use base64::Engine;
    let sha1 = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{user}:{password}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(sha1.as_ref())
}

/// [`server_error`] with what a reconfig caller needs to know to fix it.
fn reconfig_error(code: i32, from_config: Option<i64>) -> Error {
    let hint = match code {
        ERR_NO_AUTH => "reconfig needs the super user: add_auth(\"digest\", \"super:<password>\") \
             on a server started with zookeeper.DigestAuthenticationProvider.superDigest"
            .to_string(),
        ERR_RECONFIG_DISABLED => "the server runs without reconfigEnabled=true".into(),
        ERR_UNIMPLEMENTED => {
            "a standalone server cannot be reconfigured (run it with standaloneEnabled=false)"
                .into()
        }
        ERR_NEW_CONFIG_NO_QUORUM => "a quorum of the new configuration is not connected \
             to the leader (start joining servers first)"
            .into(),
        ERR_RECONFIG_IN_PROGRESS => "another reconfig has not committed yet; retry".into(),
        ERR_BAD_ARGUMENTS => "a server spec is malformed or no voting member would remain".into(),
        ERR_BAD_VERSION => match from_config {
            Some(v) => format!("the configuration is no longer version {v:x}"),
            None => "the configuration changed meanwhile".into(),
        },
        _ => return server_error(code),
    };
    Error::Server(format!("zookeeper {} ({code}): {hint}", error_name(code)))
}

fn server_error(code: i32) -> Error {
    Error::Server(format!("zookeeper {} ({code})", error_name(code)))
}

/// Names from ZooKeeper's `KeeperException.Code`.
fn error_name(code: i32) -> &'static str {
    match code {
        -4 => "connection loss",
        ERR_UNIMPLEMENTED => "unimplemented",
        -7 => "operation timeout",
        ERR_BAD_ARGUMENTS => "bad arguments",
        ERR_NEW_CONFIG_NO_QUORUM => "new config no quorum",
        ERR_RECONFIG_IN_PROGRESS => "reconfig in progress",
        ERR_NO_AUTH => "no auth",
        ERR_BAD_VERSION => "bad version",
        -112 => "session expired",
        ERR_AUTH_FAILED => "auth failed",
        ERR_RECONFIG_DISABLED => "reconfig disabled",
        _ => "error",
    }
}

fn need(buf: &BytesMut, n: usize) -> Result<()> {
    if buf.len() < n {
        return Err(Error::Protocol(format!(
            "zookeeper reply of {} bytes, expected at least {n}",
            buf.len()
        )));
    }
    Ok(())
}

fn put_string(buf: &mut BytesMut, s: &str) {
    put_buffer(buf, s.as_bytes());
}

fn put_buffer(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

/// A jute `ustring` that may be null (length -1).
fn put_opt_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i32(-1),
    }
}

/// A jute buffer: a length (-1 for null) and that many bytes.
fn get_buffer(buf: &mut BytesMut) -> Result<Vec<u8>> {
    need(buf, 4)?;
    let len = buf.get_i32();
    if len < 0 {
        return Ok(Vec::new());
    }
    need(buf, len as usize)?;
    Ok(buf.split_to(len as usize).to_vec())
}

async fn write_frame(stream: &mut TcpStream, payload: &[u8]) -> Result<()> {
    let mut frame = BytesMut::with_capacity(4 + payload.len());
    frame.put_i32(payload.len() as i32);
    frame.put_slice(payload);
    stream.write_all(&frame).await?;
    Ok(())
}

/// The next frame's payload; bytes of later frames stay in `buf`.
async fn read_frame(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<BytesMut> {
    while buf.len() < 4 {
        conn::fill(stream, buf, MAX_FRAME).await?;
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 || len as usize > MAX_FRAME - 4 {
        return Err(Error::TooLarge { limit: MAX_FRAME });
    }
    let want = 4 + len as usize;
    while buf.len() < want {
        conn::fill(stream, buf, MAX_FRAME).await?;
    }
    buf.advance(4);
    Ok(buf.split_to(len as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::fake::{Behaviour, serve};

    const T: Duration = Duration::from_millis(500);

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    }

    fn connect_reply(timeout: i32) -> Vec<u8> {
        let mut p = BytesMut::new();
        p.put_i32(0);
        p.put_i32(timeout);
        p.put_i64(0x1234);
        put_buffer(&mut p, &[0u8; 16]);
        frame(&p)
    }

    fn reply(xid: i32, zxid: i64, err: i32, body: &[u8]) -> Vec<u8> {
        let mut p = BytesMut::new();
        p.put_i32(xid);
        p.put_i64(zxid);
        p.put_i32(err);
        p.put_slice(body);
        frame(&p)
    }

    #[tokio::test]
    async fn a_refused_session_is_an_error() {
        let a = serve(Behaviour::ReplyAndHang(connect_reply(0))).await;
        let e = Session::connect(&a.to_string(), T).await.unwrap_err();
        assert!(e.to_string().contains("refused the session"), "{e}");
        let a = serve(Behaviour::Silent).await;
        let e = Session::connect(&a.to_string(), T).await.unwrap_err();
        assert_eq!(e.label(), "timeout");
    }

    #[tokio::test]
    async fn create_reports_the_zxid_and_existing_nodes() {
        let mut script = connect_reply(10_000);
        script.extend(reply(1, 0x5_0000_0007, 0, &{
            let mut b = BytesMut::new();
            put_string(&mut b, "/k");
            b
        }));
        let a = serve(Behaviour::ReplyAndHang(script)).await;
        let mut s = Session::connect(&a.to_string(), T).await.unwrap();
        s.create("/k", b"v").await.unwrap();
        assert_eq!(s.last_zxid, 0x5_0000_0007);

        let mut script = connect_reply(10_000);
        script.extend(reply(1, 9, ERR_NODE_EXISTS, &[]));
        let a = serve(Behaviour::ReplyAndHang(script)).await;
        let mut s = Session::connect(&a.to_string(), T).await.unwrap();
        let e = s.create("/k", b"v").await.unwrap_err();
        assert!(e.to_string().contains("node exists"), "{e}");
    }

    #[tokio::test]
    async fn get_returns_data_or_none_and_skips_notifications() {
        let mut script = connect_reply(10_000);
        // A ping reply (xid -2) first: not the answer.
        script.extend(reply(-2, 0, 0, &[]));
        let mut body = BytesMut::new();
        put_buffer(&mut body, b"hello");
        body.put_slice(&[0u8; 68]); // the Stat, unread
        script.extend(reply(1, 3, 0, &body));
        let a = serve(Behaviour::ReplyAndHang(script)).await;
        let mut s = Session::connect(&a.to_string(), T).await.unwrap();
        assert_eq!(s.get("/k").await.unwrap().as_deref(), Some(&b"hello"[..]));

        let mut script = connect_reply(10_000);
        script.extend(reply(1, 3, ERR_NO_NODE, &[]));
        let a = serve(Behaviour::ReplyAndHang(script)).await;
        let mut s = Session::connect(&a.to_string(), T).await.unwrap();
        assert_eq!(s.get("/missing").await.unwrap(), None);
    }

    #[tokio::test]
    async fn bad_frames_are_typed_errors() {
        let mut script = connect_reply(10_000);
        script.extend(reply(7, 3, 0, &[]));
        let a = serve(Behaviour::ReplyAndHang(script)).await;
        let mut s = Session::connect(&a.to_string(), T).await.unwrap();
        assert_eq!(s.get("/k").await.unwrap_err().label(), "protocol");

        let mut script = connect_reply(10_000);
        script.extend(i32::MAX.to_be_bytes());
        let a = serve(Behaviour::ReplyAndHang(script)).await;
        let mut s = Session::connect(&a.to_string(), T).await.unwrap();
        assert_eq!(s.get("/k").await.unwrap_err().label(), "too_large");

        let a = serve(Behaviour::Reply(frame(&[0, 0]))).await;
        assert_eq!(
            Session::connect(&a.to_string(), T)
                .await
                .unwrap_err()
                .label(),
            "protocol"
        );
    }

    #[tokio::test]
    async fn add_auth_matches_the_auth_xid() {
        let mut script = connect_reply(10_000);
        // A ping reply first, then the auth reply (xid -4, zxid 0).
        script.extend(reply(-2, 0, 0, &[]));
        script.extend(reply(AUTH_XID, 0, 0, &[]));
        script.extend(reply(1, 7, 0, &{
            let mut b = BytesMut::new();
            put_string(&mut b, "/k");
            b
        }));
        let a = serve(Behaviour::ReplyAndHang(script)).await;
        let mut s = Session::connect(&a.to_string(), T).await.unwrap();
        s.add_auth("digest", b"super:secret").await.unwrap();
        // The auth reply's zxid 0 is no acknowledgement.
        s.create("/k", b"v").await.unwrap();
        assert_eq!(s.last_zxid, 7);
    }

    #[tokio::test]
    async fn failed_auth_is_a_clear_error() {
        // The server answers AuthFailed, then closes.
        let mut script = connect_reply(10_000);
        script.extend(reply(AUTH_XID, 0, ERR_AUTH_FAILED, &[]));
        let a = serve(Behaviour::Reply(script)).await;
        let mut s = Session::connect(&a.to_string(), T).await.unwrap();
        let e = s.add_auth("nosuch", b"x").await.unwrap_err();
        assert_eq!(e.label(), "server_error");
        assert!(
            e.to_string().contains("zookeeper auth failed (-115)"),
            "{e}"
        );
        assert!(e.to_string().contains("\"nosuch\""), "{e}");

        // The server closes without answering.
        let a = serve(Behaviour::Reply(connect_reply(10_000))).await;
        let mut s = Session::connect(&a.to_string(), T).await.unwrap();
        let e = s.add_auth("nosuch", b"x").await.unwrap_err();
        assert_eq!(e.label(), "server_error");
        assert!(e.to_string().contains("zookeeper auth failed"), "{e}");
        assert!(e.to_string().contains("closed the connection"), "{e}");
    }

    #[tokio::test]
    async fn reconfig_returns_the_new_config() {
        let config = "server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\nversion=100000003";
        let mut body = BytesMut::new();
        put_buffer(&mut body, config.as_bytes());
        body.put_slice(&[0u8; 68]); // the Stat, unread
        let mut script = connect_reply(10_000);
        script.extend(reply(1, 0x1_0000_0003, 0, &body));
        let a = serve(Behaviour::ReplyAndHang(script)).await;
        let mut s = Session::connect(&a.to_string(), T).await.unwrap();
        let got = s.reconfig(None, Some("2"), None).await.unwrap();
        assert_eq!(got, config.as_bytes());
        assert_eq!(s.last_zxid, 0x1_0000_0003);
    }

    #[test]
    fn reconfig_request_encoding() {
        // What `reconfig` sends after the header, checked against the jute
        // layout: three ustrings (null = -1) and a long.
        let mut body = BytesMut::new();
        put_opt_string(&mut body, Some("server.2=h:1:2"));
        put_opt_string(&mut body, None);
        put_opt_string(&mut body, None);
        body.put_i64(-1);
        let mut want = 14i32.to_be_bytes().to_vec();
        want.extend(b"server.2=h:1:2");
        want.extend((-1i32).to_be_bytes());
        want.extend((-1i32).to_be_bytes());
        want.extend((-1i64).to_be_bytes());
        assert_eq!(&body[..], &want[..]);
    }

    #[tokio::test]
    async fn reconfig_errors_say_what_to_fix() {
        let cases: [(i32, Option<i64>, &str); 7] = [
            (
                ERR_BAD_ARGUMENTS,
                None,
                "bad arguments (-8): a server spec is malformed",
            ),
            (
                ERR_NO_AUTH,
                None,
                "no auth (-102): reconfig needs the super user",
            ),
            (ERR_NEW_CONFIG_NO_QUORUM, None, "new config no quorum (-13)"),
            (ERR_RECONFIG_IN_PROGRESS, None, "reconfig in progress (-14)"),
            (
                ERR_RECONFIG_DISABLED,
                None,
                "reconfig disabled (-123): the server runs without reconfigEnabled=true",
            ),
            (
                ERR_BAD_VERSION,
                Some(0x1_0000_0000),
                "bad version (-103): the configuration is no longer version 100000000",
            ),
            (
                ERR_UNIMPLEMENTED,
                None,
                "unimplemented (-6): a standalone server",
            ),
        ];
        for (code, from, want) in cases {
            let mut script = connect_reply(10_000);
            script.extend(reply(1, 3, code, &[]));
            let a = serve(Behaviour::ReplyAndHang(script)).await;
            let mut s = Session::connect(&a.to_string(), T).await.unwrap();
            let e = s
                .reconfig(Some("server.2=127.0.0.1:1:2"), None, from)
                .await
                .unwrap_err();
            assert_eq!(e.label(), "server_error");
            assert!(e.to_string().contains(want), "{code}: {e}");
        }
    }

    #[test]
    fn super_digest_matches_zookeeper() {
        // From ZooKeeper 3.8.0 itself:
        // java -cp '/usr/share/java/*' \
        //   org.apache.zookeeper.server.auth.DigestAuthenticationProvider super:secret
        assert_eq!(
            super_digest("super", "secret"),
            "lK75jTNcA+U9vtVEw5vB51mj/w4="
        );
        // The password may contain ':' (only the first one separates).
        assert_eq!(
            super_digest("bob", "p@ss:w"),
            "8Kc9NHH6GXOVZ17NzSLbiFlKrxI="
        );
    }
}
