//! A mutating admission webhook served by the test itself on 127.0.0.1 over
//! TLS, with a certificate made on the spot, for the API server to call.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Decides the JSON patch (an array of operations) for an AdmissionRequest,
/// or `None` to admit the object unchanged.
pub type Patcher = dyn Fn(&Value) -> Option<Value> + Send + Sync;

/// A running webhook server; stops when dropped.
pub struct WebhookServer {
    /// `https://127.0.0.1:<port>`; append the path you register.
    pub base_url: String,
    /// PEM of the CA that signed the serving certificate, for `caBundle`.
    pub ca_pem: String,
    requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl WebhookServer {
    /// Starts serving on a free port of 127.0.0.1.
    pub async fn start(patcher: Arc<Patcher>) -> Result<WebhookServer> {
        let (ca_pem, cert, key) = make_certs()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .context("TLS server configuration")?;
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let port = listener.local_addr()?.port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let patcher = patcher.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let patcher = patcher.clone();
                        let counter = counter.clone();
                        async move { Ok::<_, Infallible>(handle(req, &*patcher, &counter).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(WebhookServer {
            base_url: format!("https://127.0.0.1:{port}"),
            ca_pem,
            requests,
            task,
        })
    }

    /// How many AdmissionReviews the server has answered.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    req: Request<Incoming>,
    patcher: &Patcher,
    counter: &AtomicUsize,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("response")
    };
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, format!("{{\"error\":\"{e}\"}}")),
    };
    let review: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": e.to_string()}).to_string(),
            );
        }
    };
    let request = &review["request"];
    let mut response = json!({"uid": request["uid"], "allowed": true});
    if let Some(patch) = patcher(request) {
        let bytes = serde_json::to_vec(&patch).expect("patch JSON");
        response["patchType"] = json!("JSONPatch");
        // ByteString serializes as base64, which is what the API expects.
        response["patch"] = serde_json::to_value(k8s_openapi::ByteString(bytes)).expect("base64");
    }
    counter.fetch_add(1, Ordering::SeqCst);
    let out = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
    reply(StatusCode::OK, out.to_string())
}

/// A fresh CA and a serving certificate for 127.0.0.1 signed by it.
fn make_certs() -> Result<(String, CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tessera-e2e webhook CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "tessera-e2e webhook");
    let cert = params.signed_by(&key, &issuer)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((ca_cert.pem(), cert.der().clone(), key_der))
}
