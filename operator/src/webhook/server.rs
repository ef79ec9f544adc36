//! HTTPS for the API server: `POST /inject` takes an AdmissionReview;
//! `GET /healthz` answers once a certificate is loaded. Bounded: a cap on
//! connections, a handshake deadline, a header-read timeout and a body cap.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use super::admission::Injector;
use super::config::PATH;
use super::tls::Resolver;

const MAX_CONNECTIONS: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// An AdmissionReview of a pod is a few kB; the API server caps objects at
/// 3 MiB in etcd.
const MAX_BODY: usize = 8 << 20;

pub fn tls_config(resolver: Arc<Resolver>) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serves until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    injector: Arc<Injector>,
    resolver: Arc<Resolver>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = tessera_telemetry::http::AcceptBackoff::new();
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        // Accept errors (out of descriptors) back off as on every other
        // Tessera listener, instead of retrying on a fixed short period.
        let (tcp, peer) = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            a = backoff.accept(&listener) => a,
        };
        let _ = tcp.set_nodelay(true);
        tracing::debug!(%peer, "webhook connection");
        let acceptor = acceptor.clone();
        let injector = injector.clone();
        let resolver = resolver.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper::service::service_fn(move |req| {
                let injector = injector.clone();
                let resolver = resolver.clone();
                async move { Ok::<_, Infallible>(handle(req, &injector, &resolver).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

async fn handle(
    req: Request<Incoming>,
    injector: &Injector,
    resolver: &Resolver,
) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, PATH) => {}
        (&Method::GET, "/healthz") if resolver.is_loaded() => {
            return reply(StatusCode::OK, "text/plain", b"ok\n".to_vec());
        }
        (&Method::GET, "/healthz") => {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                b"no certificate yet\n".to_vec(),
            );
        }
        _ => return reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                "text/plain",
                format!("cannot read the body: {e}\n").into_bytes(),
            );
        }
    };
    match injector.review(&body).await {
        Ok(v) => reply(
            StatusCode::OK,
            "application/json",
            serde_json::to_vec(&v).unwrap_or_default(),
        ),
        Err(e) => reply(
            StatusCode::BAD_REQUEST,
            "text/plain",
            format!("{}\n", e.0).into_bytes(),
        ),
    }
}
