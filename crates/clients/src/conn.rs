//! TCP helpers shared by the line- and frame-based clients: connect and read
//! with a deadline, never buffering more than a caller-given limit.

use std::future::Future;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use crate::{Error, Result};

/// Runs `fut` with a deadline, mapping expiry to [`Error::Timeout`].
pub(crate) async fn deadline<T>(
    op: &'static str,
    after: Duration,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(after, fut)
        .await
        .unwrap_or(Err(Error::Timeout { op, after }))
}

/// Connects with a deadline and disables Nagle (every client sends small
/// requests and waits for the reply).
pub(crate) async fn connect(addr: &str, timeout: Duration) -> Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::Timeout {
            op: "connect",
            after: timeout,
        })?
        .map_err(|source| Error::Connect {
            addr: addr.to_string(),
            source,
        })?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads more bytes into `buf`, refusing to grow it beyond `limit`.
/// End of stream becomes [`Error::Closed`].
pub(crate) async fn fill<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    limit: usize,
) -> Result<()> {
    if buf.len() >= limit {
        return Err(Error::TooLarge { limit });
    }
    let want = (limit - buf.len()).min(64 * 1024);
    buf.reserve(want);
    let mut chunk = buf.split_off(buf.len());
    // read_buf only writes into spare capacity, so cap it to `want`.
    let n = (&mut *r).take(want as u64).read_buf(&mut chunk).await?;
    buf.unsplit(chunk);
    if n == 0 {
        return Err(Error::Closed);
    }
    Ok(())
}

/// Reads until the peer closes, keeping at most `limit` bytes.
pub(crate) async fn read_to_end<R: AsyncRead + Unpin>(r: &mut R, limit: usize) -> Result<BytesMut> {
    let mut buf = BytesMut::new();
    loop {
        match fill(r, &mut buf, limit).await {
            Ok(()) => {}
            Err(Error::Closed) => return Ok(buf),
            Err(e) => return Err(e),
        }
    }
}

/// Splits the first CRLF- (or LF-) terminated line off `buf`, without the
/// terminator. `None` means no full line yet.
pub(crate) fn take_line(buf: &mut BytesMut) -> Option<BytesMut> {
    let end = buf.iter().position(|&b| b == b'\n')?;
    let mut line = buf.split_to(end + 1);
    line.truncate(end);
    if line.last() == Some(&b'\r') {
        line.truncate(end - 1);
    }
    Some(line)
}

#[cfg(test)]
pub(crate) mod fake {
    //! A tiny TCP server that answers every connection with canned bytes,
    //! for testing how clients cope with misbehaving peers.
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// What the fake does after accepting a connection.
    #[derive(Clone)]
    pub enum Behaviour {
        /// Read one request chunk, write these bytes, then close.
        Reply(Vec<u8>),
        /// Read one request chunk, write these bytes, keep the socket open.
        ReplyAndHang(Vec<u8>),
        /// Read one request chunk, then stream this many bytes of `x` and keep
        /// going (a "1 GB reply").
        Flood(usize),
        /// Accept and never answer.
        Silent,
    }

    pub async fn serve(b: Behaviour) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let b = b.clone();
                tokio::spawn(async move {
                    let mut req = [0u8; 4096];
                    if !matches!(b, Behaviour::Silent) {
                        let _ = s.read(&mut req).await;
                    }
                    match b {
                        Behaviour::Reply(bytes) => {
                            let _ = s.write_all(&bytes).await;
                            let _ = s.shutdown().await;
                        }
                        Behaviour::ReplyAndHang(bytes) => {
                            let _ = s.write_all(&bytes).await;
                            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                        }
                        Behaviour::Flood(total) => {
                            let chunk = vec![b'x'; 64 * 1024];
                            let mut sent = 0;
                            while sent < total {
                                if s.write_all(&chunk).await.is_err() {
                                    return;
                                }
                                sent += chunk.len();
                            }
                        }
                        Behaviour::Silent => {
                            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                        }
                    }
                });
            }
        });
        addr
    }
}
