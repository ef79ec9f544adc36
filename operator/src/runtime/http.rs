//! `/healthz`, `/readyz` and `/metrics` on their own port.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use tessera_telemetry::http::Settings;
use tokio::net::TcpListener;
use tracing::info;

use super::metrics::Metrics;

/// Shared health state.
#[derive(Clone, Default)]
pub struct Health {
    /// Set once the controllers (or the standby loop) run.
    pub ready: Arc<AtomicBool>,
}

/// Binds first, so that a bad address fails startup instead of a task.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `shutdown`, then drains, with the server every Tessera
/// binary shares (accept backoff, header-read timeout, connection cap).
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
    shutdown: impl Future<Output = ()>,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "serving /healthz, /readyz and /metrics");
    }
    let handler = move |req: Request<Incoming>| {
        let response = route(&req, &metrics, &health);
        async move { response }
    };
    tessera_telemetry::http::serve(listener, handler, Settings::default(), shutdown).await;
}

fn route(req: &Request<Incoming>, metrics: &Metrics, health: &Health) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String, content_type: &str| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    match req.uri().path() {
        "/healthz" | "/livez" => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        "/readyz" if health.ready.load(Ordering::SeqCst) => {
            text(StatusCode::OK, "ok\n".into(), "text/plain")
        }
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting\n".into(),
            "text/plain",
        ),
        "/metrics" => text(
            StatusCode::OK,
            metrics.render(),
            "text/plain; version=0.0.4",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn status(port: u16, path: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out.lines().next().unwrap_or_default().to_owned()
    }

    /// The endpoints, served by the shared server: its header-read timeout
    /// (tested with signals and descriptor exhaustion in tessera-telemetry)
    /// applies here too.
    #[tokio::test]
    async fn endpoints_answer_and_silent_clients_are_cut_off() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let health = Health::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            Arc::new(Metrics::new()),
            health.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        assert_eq!(status(port, "/healthz").await, "HTTP/1.1 200 OK");
        assert_eq!(
            status(port, "/readyz").await,
            "HTTP/1.1 503 Service Unavailable"
        );
        health.ready.store(true, Ordering::SeqCst);
        assert_eq!(status(port, "/readyz").await, "HTTP/1.1 200 OK");
        assert_eq!(status(port, "/metrics").await, "HTTP/1.1 200 OK");
        assert_eq!(status(port, "/nope").await, "HTTP/1.1 404 Not Found");

        let start = Instant::now();
        let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let n = silent.read(&mut [0u8; 16]).await.unwrap_or(0);
        let cut = start.elapsed();
        assert_eq!(n, 0);
        let timeout = tessera_telemetry::http::HEADER_READ_TIMEOUT;
        assert!(
            cut + Duration::from_millis(300) >= timeout && cut < timeout * 2,
            "cut after {cut:?}"
        );

        stop.send(()).unwrap();
        task.await.unwrap();
        assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
    }
}
