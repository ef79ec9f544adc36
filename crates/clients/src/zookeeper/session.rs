//! A minimal ZooKeeper client session over the binary (jute) protocol:
//! connect, create, read. Enough for a client that must see what a real
//! application sees (an acknowledged write, an unavailable quorum), which
//! the four-letter words cannot show.
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
const ERR_NO_NODE: i32 = -101;
const ERR_NODE_EXISTS: i32 = -110;
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

    async fn call(&mut self, op: i32, body: &[u8]) -> Result<(ReplyHeader, BytesMut)> {
        self.xid += 1;
        let xid = self.xid;
        let timeout = self.timeout;
        let stream = &mut self.stream;
        let buf = &mut self.buf;
        let (header, resp) = deadline("zookeeper request", timeout, async move {
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
                // Negative xids are notifications and pings, not replies.
                if header.xid < 0 {
                    continue;
                }
                if header.xid != xid {
                    return Err(Error::Protocol(format!(
                        "reply to request {} while waiting for {xid}",
                        header.xid
                    )));
                }
                return Ok((header, resp));
            }
        })
        .await?;
        self.last_zxid = header.zxid;
        Ok((header, resp))
    }
}

fn server_error(code: i32) -> Error {
    let name = match code {
        -4 => "connection loss",
        -7 => "operation timeout",
        -112 => "session expired",
        -13 => "new config no quorum",
        -14 => "reconfig in progress",
        -102 => "no auth",
        -103 => "bad version",
        _ => "error",
    };
    Error::Server(format!("zookeeper {name} ({code})"))
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
}
