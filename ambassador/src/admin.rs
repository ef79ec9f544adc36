//! The admin endpoint: `/metrics` (Prometheus text) and `/healthz`, served
//! by the hardened server every Tessera binary shares.

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tessera_telemetry::http::Settings;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

fn handle(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match req.uri().path() {
        "/metrics" => (StatusCode::OK, crate::metrics::render()),
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

/// Binds `addr` and serves the admin endpoints until `shutdown`; the task
/// ends when the drain is over.
pub async fn serve(
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "admin endpoint ready");
    let handler = |req: Request<Incoming>| {
        let response = handle(&req);
        async move { response }
    };
    Ok(tokio::spawn(tessera_telemetry::http::serve(
        listener,
        handler,
        Settings::default(),
        shutdown,
    )))
}
