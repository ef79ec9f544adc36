//! etcd's HTTP endpoints (`/readyz`, `/livez`, `/health`, `/metrics`) over
//! HTTP/1.1, plain or TLS, with one kept-alive connection, and cluster
//! membership through the v3 JSON gateway (see [`Member`]).

mod members;

pub use members::Member;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, pki_types};

use crate::conn::{self, deadline};
use crate::{Error, Result};

/// Health endpoints answer a line of JSON or text.
const MAX_HEALTH_BODY: usize = 64 * 1024;
/// etcd's `/metrics` is ~100-300 KiB; leave room for many histograms.
const MAX_METRICS_BODY: usize = 32 * 1024 * 1024;

/// TLS settings for `https://` endpoints.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM bundle of CAs that sign the server certificate (required).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub key_file: Option<PathBuf>,
    /// Name to verify the server certificate against; defaults to the host.
    pub server_name: Option<String>,
}

/// Status code and body of one HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpStatus {
    pub status: u16,
    pub body: String,
}

impl HttpStatus {
    /// True for a 2xx status.
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// An etcd HTTP client.
pub struct Client {
    authority: String,
    timeout: Duration,
    tls: Option<(TlsConnector, pki_types::ServerName<'static>)>,
    sender: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("etcd::Client")
            .field("authority", &self.authority)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Client {
    /// `base_url` is `http://host:port` or `https://host:port`; `tls` is
    /// required for https.
    pub fn new(base_url: &str, timeout: Duration, tls: Option<TlsOptions>) -> Result<Client> {
        let (https, rest) = if let Some(r) = base_url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = base_url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(Error::Config(format!(
                "etcd URL {base_url:?} must start with http:// or https://"
            )));
        };
        let authority = rest.trim_end_matches('/').to_string();
        let Some((host, port)) = authority.rsplit_once(':') else {
            return Err(Error::Config(format!("etcd URL {base_url:?} needs a port")));
        };
        if host.is_empty() || port.parse::<u16>().is_err() || authority.contains('/') {
            return Err(Error::Config(format!(
                "etcd URL {base_url:?} is not scheme://host:port"
            )));
        }
        let tls = match (https, tls) {
            (false, _) => None,
            (true, None) => {
                return Err(Error::Config(
                    "https:// needs TLS options with a CA file".into(),
                ));
            }
            (true, Some(t)) => {
                let name = t
                    .server_name
                    .clone()
                    .unwrap_or_else(|| host.trim_matches(['[', ']']).to_string());
                let name = pki_types::ServerName::try_from(name)
                    .map_err(|e| Error::Tls(format!("server name: {e}")))?;
                Some((TlsConnector::from(Arc::new(tls_config(&t)?)), name))
            }
        };
        Ok(Client {
            authority,
            timeout,
            tls,
            sender: Mutex::new(None),
        })
    }

    /// `GET /readyz` (etcd 3.5+).
    pub async fn readyz(&self) -> Result<HttpStatus> {
        self.get("/readyz", MAX_HEALTH_BODY).await
    }

    /// `GET /livez` (etcd 3.5+).
    pub async fn livez(&self) -> Result<HttpStatus> {
        self.get("/livez", MAX_HEALTH_BODY).await
    }

    /// `GET /health` (all versions; 3.4 has nothing else).
    pub async fn health(&self) -> Result<HttpStatus> {
        self.get("/health", MAX_HEALTH_BODY).await
    }

    /// `GET /metrics`; a non-2xx status is an error.
    pub async fn metrics(&self) -> Result<String> {
        let r = self.get("/metrics", MAX_METRICS_BODY).await?;
        if !r.is_ok() {
            return Err(Error::Server(format!("/metrics returned {}", r.status)));
        }
        Ok(r.body)
    }

    /// `GET path` with the client's deadline and a body limit.
    pub async fn get(&self, path: &str, max_body: usize) -> Result<HttpStatus> {
        self.send(hyper::Method::GET, path, Bytes::new(), max_body)
            .await
    }

    /// `POST path` with a JSON body: etcd's v3 API through its gRPC
    /// gateway (`/v3/kv/put`, `/v3/cluster/member/list`, ...). A non-2xx
    /// status is returned, not an error: its body says why.
    pub async fn post_json(&self, path: &str, json: String) -> Result<HttpStatus> {
        self.send(
            hyper::Method::POST,
            path,
            Bytes::from(json),
            MAX_HEALTH_BODY,
        )
        .await
    }

    async fn send(
        &self,
        method: hyper::Method,
        path: &str,
        body: Bytes,
        max_body: usize,
    ) -> Result<HttpStatus> {
        let mut guard = self.sender.lock().await;
        let r = deadline("etcd http", self.timeout, async {
            let reusable = guard.as_ref().is_some_and(|s| !s.is_closed());
            if !reusable {
                *guard = Some(self.handshake().await?);
            }
            // Taken out while in use: a cancelled request must not leave its
            // response queued on a connection that is used again.
            let mut sender = guard.take().ok_or(Error::Closed)?;
            sender.ready().await.map_err(map_hyper)?;
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, &self.authority);
            if !body.is_empty() {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
            }
            let req = req
                .body(Full::new(body))
                .map_err(|e| Error::Config(e.to_string()))?;
            let resp = sender.send_request(req).await.map_err(map_hyper)?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), max_body)
                .collect()
                .await
                .map_err(|e| match e.downcast::<hyper::Error>() {
                    Ok(h) => map_hyper(*h),
                    Err(_) => Error::TooLarge { limit: max_body },
                })?
                .to_bytes();
            *guard = Some(sender);
            Ok(HttpStatus {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        })
        .await;
        if r.is_err() {
            *guard = None;
        }
        r
    }

    async fn handshake(&self) -> Result<SendRequest<Full<Bytes>>> {
        let tcp = conn::connect(&self.authority, self.timeout).await?;
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some((connector, name)) => Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| Error::Tls(e.to_string()))?,
            ),
        };
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(64 * 1024)
            .handshake(TokioIo::new(io))
            .await
            .map_err(map_hyper)?;
        // The connection task ends when the sender is dropped or the peer
        // closes; errors surface through the sender.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

fn map_hyper(e: hyper::Error) -> Error {
    // A body cut short surfaces as an I/O UnexpectedEof inside hyper's error.
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    let mut eof = false;
    while let Some(s) = src {
        eof |= s
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof);
        src = s.source();
    }
    if eof || e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        Error::Closed
    } else if e.is_parse() || e.is_parse_status() {
        Error::Protocol(e.to_string())
    } else {
        Error::Io(std::io::Error::other(e))
    }
}

fn tls_config(t: &TlsOptions) -> Result<rustls::ClientConfig> {
    use pki_types::pem::PemObject;
    let ca = t
        .ca_file
        .as_ref()
        .ok_or_else(|| Error::Config("https:// needs a CA file".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in pki_types::CertificateDer::pem_file_iter(ca)
        .map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?
    {
        let cert = cert.map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?;
        roots
            .add(cert)
            .map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => {
            let chain = pki_types::CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?;
            let key = pki_types::PrivateKeyDer::from_pem_file(key)
                .map_err(|e| Error::Tls(format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::Tls(e.to_string()))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(Error::Config(
            "client TLS needs both a cert and a key file".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::fake::{Behaviour, serve};

    const T: Duration = Duration::from_millis(400);

    #[test]
    fn refuses_bad_urls() {
        for u in [
            "127.0.0.1:2379",
            "http://127.0.0.1",
            "http://h:99999",
            "ftp://h:1",
            "http://h:1/x",
        ] {
            assert_eq!(
                Client::new(u, T, None).unwrap_err().label(),
                "config",
                "{u}"
            );
        }
        assert_eq!(
            Client::new("https://127.0.0.1:1", T, None)
                .unwrap_err()
                .label(),
            "config"
        );
        let missing = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        assert_eq!(
            Client::new("https://127.0.0.1:1", T, Some(missing))
                .unwrap_err()
                .label(),
            "tls"
        );
    }

    #[tokio::test]
    async fn status_and_body() {
        let a = serve(Behaviour::Reply(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 16\r\n\r\n{\"health\":false}"
                .to_vec(),
        ))
        .await;
        let c = Client::new(&format!("http://{a}"), T, None).unwrap();
        let r = c.health().await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (503, "{\"health\":false}"));
        assert!(!r.is_ok());
    }

    #[tokio::test]
    async fn post_returns_the_status_and_body() {
        let a = serve(Behaviour::Reply(
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 16\r\n\r\n{\"error\":\"bad\"}\n".to_vec(),
        ))
        .await;
        let c = Client::new(&format!("http://{a}"), T, None).unwrap();
        let r = c.post_json("/v3/kv/put", "{}".into()).await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (400, "{\"error\":\"bad\"}\n"));
        let a = serve(Behaviour::Silent).await;
        let c = Client::new(&format!("http://{a}"), T, None).unwrap();
        let e = c.post_json("/v3/kv/put", "{}".into()).await.unwrap_err();
        assert_eq!(e.label(), "timeout");
    }

    #[tokio::test]
    async fn misbehaving_servers_give_typed_errors() {
        let cases = [
            (
                Behaviour::Reply(b"SSH-2.0-OpenSSH\r\n\r\n".to_vec()),
                "protocol",
            ),
            (
                Behaviour::Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc".to_vec()),
                "closed",
            ),
            (Behaviour::Silent, "timeout"),
        ];
        for (b, want) in cases {
            let a = serve(b).await;
            let c = Client::new(&format!("http://{a}"), T, None).unwrap();
            let e = c.readyz().await.unwrap_err();
            assert_eq!(e.label(), want, "{e}");
        }
        // A gigabyte body: refused at the limit.
        let mut head = b"HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\n\r\n".to_vec();
        head.extend(std::iter::repeat_n(b'x', 200 * 1024));
        let a = serve(Behaviour::ReplyAndHang(head)).await;
        let c = Client::new(&format!("http://{a}"), T, None).unwrap();
        assert_eq!(c.livez().await.unwrap_err().label(), "too_large");
    }
}
