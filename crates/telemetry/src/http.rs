//! The HTTP/1 server behind every Tessera endpoint (`/metrics`, `/healthz`,
//! `/readyz`, `/livez`): the operator's, the sidecar's, the adapter's and
//! the ambassador's admin port, hardened once.
//!
//! - **Accept errors back off**, doubling from 10 ms to at most 1 s
//!   ([`AcceptBackoff`]). Out of file descriptors, `accept` fails at once and
//!   the listener stays readable, so a loop that retries at once spins a
//!   core until descriptors free up.
//! - **Header-read timeout** ([`HEADER_READ_TIMEOUT`], 5 s): a connection
//!   that has not sent a complete request head within it is closed, idle
//!   keep-alive connections included, so slow or silent clients cannot hold
//!   connections (and descriptors) for long.
//! - **Connection cap** ([`MAX_CONNECTIONS`]): at the cap, accepting pauses
//!   and new connections wait in the listen backlog until one closes.
//! - **Graceful drain**: when `shutdown` resolves, the listener closes,
//!   requests in progress get their answers, idle connections close, and
//!   [`serve`] returns once all are done or after [`DRAIN_TIMEOUT`].
//!
//! [`serve_with`] adds a per-connection step before HTTP (the operator's
//! webhook: a TLS handshake), run on the connection's own task so that a
//! slow handshake never holds up `accept`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// How long a client may take to send a request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// More than any kubelet plus Prometheus need; the cap keeps a misbehaving
/// client from exhausting memory or descriptors.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a drain waits for requests in progress.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The server's settings; [`Default`] is what every binary uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            drain_timeout: DRAIN_TIMEOUT,
        }
    }
}

/// Bounded exponential backoff between failed `accept` calls, shared by
/// the HTTP server and the ambassador's data-path listeners.
#[derive(Debug, Clone)]
pub struct AcceptBackoff {
    delay: Duration,
    failures: u64,
}

impl AcceptBackoff {
    pub const MIN: Duration = Duration::from_millis(10);
    pub const MAX: Duration = Duration::from_secs(1);

    pub fn new() -> Self {
        AcceptBackoff {
            delay: Self::MIN,
            failures: 0,
        }
    }

    /// Counts a failure and returns how long to wait before the next try.
    pub fn failed(&mut self) -> Duration {
        let wait = self.delay;
        self.failures += 1;
        self.delay = (self.delay * 2).min(Self::MAX);
        wait
    }

    /// Counts a success; returns how many failures preceded it.
    pub fn succeeded(&mut self) -> u64 {
        self.delay = Self::MIN;
        std::mem::take(&mut self.failures)
    }

    /// Accepts the next connection, waiting out accept errors (out of file
    /// descriptors, aborted handshakes) with backoff: it never returns an
    /// error and never spins.
    pub async fn accept(&mut self, listener: &TcpListener) -> (TcpStream, SocketAddr) {
        loop {
            match listener.accept().await {
                Ok(conn) => {
                    let failed = self.succeeded();
                    if failed > 0 {
                        tracing::info!(failed, "accepting connections again");
                    }
                    return conn;
                }
                Err(e) => {
                    let wait = self.failed();
                    tracing::warn!(error = %e, retry_ms = wait.as_millis() as u64, "accept failed");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves `handler` on `listener` until `shutdown` resolves, then drains.
///
/// `handler` answers one request; it is cloned per request, so it should
/// be cheap to clone (a closure over an `Arc`).
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    serve_with(
        listener,
        |tcp| std::future::ready(Some(tcp)),
        handler,
        settings,
        shutdown,
    )
    .await
}

/// [`serve`], with `wrap` turning each accepted connection into the stream
/// HTTP runs over (a TLS handshake, bounded by the caller), or `None` to
/// close it. The connection counts against the cap from its accept.
pub async fn serve_with<W, WF, S, H, F>(
    listener: TcpListener,
    wrap: W,
    handler: H,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) where
    W: Fn(TcpStream) -> WF + Clone + Send + Sync + 'static,
    WF: Future<Output = Option<S>> + Send + 'static,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    if let Ok(addr) = listener.local_addr() {
        tracing::debug!(%addr, "http endpoint accepting");
    }
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut backoff = AcceptBackoff::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            conn = backoff.accept(&listener) => conn,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let wrap = wrap.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            // A connection still in its handshake when the drain starts has
            // no request in progress: it is closed, not waited for.
            let wrapped = tokio::select! {
                s = wrap(stream) => s,
                () = stopped(&mut stop) => None,
            };
            if let Some(stream) = wrapped {
                connection(stream, peer, handler, settings.header_read_timeout, stop).await;
            }
            drop(permit);
        });
    }
    // New connections are refused from here on.
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(settings.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(settings.drain_timeout, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            after = ?settings.drain_timeout,
            "drain timed out; closing the remaining http connections"
        );
    }
}

/// Serves one connection until it ends, closing it gracefully (after the
/// request in progress) when `stop` turns true.
async fn connection<S, H, F>(
    stream: S,
    peer: SocketAddr,
    handler: H,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let answer = handler(req);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "http connection ended");
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await.
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests;
