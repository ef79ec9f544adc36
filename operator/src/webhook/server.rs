//! HTTPS for the API server: `POST /inject` takes an AdmissionReview;
//! `GET /healthz` answers once a certificate is loaded. Bounded: a cap on
//! connections, a handshake deadline, a header-read timeout and a body cap;
//! on shutdown it lingers, then drains.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use tessera_telemetry::http::Settings;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::admission::Injector;
use super::config::PATH;
use super::tls::Resolver;

const MAX_CONNECTIONS: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Reviews in progress at shutdown; the API server gives up after the
/// configuration's timeoutSeconds (at most 30 s, 5 s by default) anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
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

/// Serves until `stop` turns true, goes on accepting for `linger` (the
/// API server keeps calling this pod until its endpoint is removed), then
/// drains: reviews in progress get their answers. The shared server does
/// the accepting, the connection cap, the header timeout and the drain;
/// here the TLS handshake runs first on each connection's own task.
pub async fn serve(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    injector: Arc<Injector>,
    resolver: Arc<Resolver>,
    mut stop: watch::Receiver<bool>,
    linger: Duration,
) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let handshake = move |tcp: TcpStream| {
        let acceptor = acceptor.clone();
        async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "webhook TLS handshake failed");
                    None
                }
                Err(_) => None,
            }
        }
    };
    let handler = move |req: Request<Incoming>| {
        let injector = injector.clone();
        let resolver = resolver.clone();
        async move { handle(req, &injector, &resolver).await }
    };
    let settings = Settings {
        header_read_timeout: HEADER_READ_TIMEOUT,
        max_connections: MAX_CONNECTIONS,
        drain_timeout: DRAIN_TIMEOUT,
    };
    tessera_telemetry::http::serve_with(listener, handshake, handler, settings, async move {
        let _ = stop.wait_for(|s| *s).await;
        if !linger.is_zero() {
            tracing::info!(
                ?linger,
                "stopping: the webhook accepts until its endpoint is gone"
            );
            tokio::time::sleep(linger).await;
        }
    })
    .await;
    tracing::info!("the webhook has drained");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::WebhookMetrics;
    use crate::webhook::admission::NativeSidecars;
    use crate::webhook::tls::{self, Policy};

    /// The server with a fresh certificate for 127.0.0.1, and a client
    /// configuration trusting its CA.
    async fn start(
        linger: Duration,
    ) -> (
        u16,
        rustls::ClientConfig,
        watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ) {
        let policy = Policy {
            leaf_validity: Duration::from_secs(3600),
            ca_validity: Duration::from_secs(86400),
            names: vec!["127.0.0.1".into()],
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let (pki, _) = tls::renew(None, &policy, now, None).unwrap().unwrap();
        let resolver = Arc::new(Resolver::default());
        resolver.load(&pki.cert, &pki.key).unwrap();
        let injector = Arc::new(Injector {
            image: "tessera:test".into(),
            excluded: vec![],
            native: NativeSidecars::Never,
            nodes: Default::default(),
            secrets: None,
            metrics: WebhookMetrics::new(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(
            listener,
            tls_config(resolver.clone()).unwrap(),
            injector,
            resolver,
            stop_rx,
            linger,
        ));
        let (_, pem) = x509_parser::pem::parse_x509_pem(pki.ca_cert.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(pem.contents))
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        (port, client, stop_tx, server)
    }

    /// `GET /healthz` over a new HTTPS connection: the status line.
    async fn healthz(port: u16, client: &rustls::ClientConfig) -> std::io::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let name =
            rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client.clone()))
            .connect(name, tcp)
            .await?;
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        // A server closing TLS without close_notify is an error to rustls;
        // what was read before still counts.
        let _ = tls.read_to_end(&mut out).await;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned())
    }

    #[tokio::test]
    async fn after_stop_it_serves_for_the_linger_then_drains_and_closes() {
        let (port, client, stop, server) = start(Duration::from_millis(800)).await;
        assert_eq!(healthz(port, &client).await.unwrap(), "HTTP/1.1 200 OK");
        // A plain-TCP client that never handshakes holds only its own task.
        let _silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        assert_eq!(healthz(port, &client).await.unwrap(), "HTTP/1.1 200 OK");

        stop.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            healthz(port, &client).await.unwrap(),
            "HTTP/1.1 200 OK",
            "new connections are still served while lingering"
        );
        // The drain does not wait for the silent client's handshake.
        tokio::time::timeout(Duration::from_secs(3), server)
            .await
            .expect("the server returns after the linger and a quick drain")
            .unwrap();
        assert!(
            healthz(port, &client).await.is_err(),
            "the port is closed after the drain"
        );
    }
}
