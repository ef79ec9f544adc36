//! etcd: ready on `/readyz` (3.5+) or `/health` (3.4); live on `/livez`
//! (3.5+) or, on 3.4, on `/version` answering at all, because `/health`
//! fails without quorum and liveness must not restart a healthy member
//! that merely lost its peers.

use std::sync::atomic::{AtomicBool, Ordering};

use tessera_clients::etcd::{Client, HttpStatus, TlsOptions};

use super::Verdict;
use crate::cli::{Args, validate_host_port};
use crate::error::Error;

pub struct Etcd {
    client: Client,
    /// Set once the server answered 404 for /readyz: an old etcd.
    legacy: AtomicBool,
}

impl Etcd {
    pub fn new(args: &Args) -> Result<Etcd, Error> {
        let url = if args.target.contains("://") {
            args.target.clone()
        } else {
            validate_host_port(&args.target)?;
            let scheme = if args.tls_ca_file.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", args.target)
        };
        let tls = url.starts_with("https://").then(|| TlsOptions {
            ca_file: args.tls_ca_file.clone(),
            cert_file: args.tls_cert_file.clone(),
            key_file: args.tls_key_file.clone(),
            server_name: args.tls_server_name.clone(),
        });
        let client = Client::new(&url, args.probe_timeout, tls).map_err(|e| Error::Target {
            target: args.target.clone(),
            why: e.to_string(),
        })?;
        Ok(Etcd {
            client,
            legacy: AtomicBool::new(false),
        })
    }

    pub async fn ready(&self) -> Verdict {
        if !self.legacy.load(Ordering::Relaxed) {
            match self.client.readyz().await {
                Ok(r) if r.status == 404 => self.legacy.store(true, Ordering::Relaxed),
                Ok(r) => return http_verdict("/readyz", &r),
                Err(e) => return Verdict::error("/readyz", &e),
            }
        }
        match self.client.health().await {
            Ok(r) if r.is_ok() && r.body.contains("\"health\":\"true\"") => {
                Verdict::pass("/health: true")
            }
            Ok(r) => Verdict::fail(format!(
                "/health {}: {}",
                r.status,
                super::one_line(r.body.trim())
            )),
            Err(e) => Verdict::error("/health", &e),
        }
    }

    pub async fn live(&self) -> Verdict {
        if !self.legacy.load(Ordering::Relaxed) {
            match self.client.livez().await {
                Ok(r) if r.status == 404 => self.legacy.store(true, Ordering::Relaxed),
                Ok(r) => return http_verdict("/livez", &r),
                Err(e) => return Verdict::error("/livez", &e),
            }
        }
        match self.client.get("/version", 64 * 1024).await {
            Ok(r) => http_verdict("/version", &r),
            Err(e) => Verdict::error("/version", &e),
        }
    }
}

fn http_verdict(path: &str, r: &HttpStatus) -> Verdict {
    let body = super::one_line(r.body.trim());
    if r.is_ok() {
        Verdict::pass(format!("{path} {}: {body}", r.status))
    } else {
        Verdict::fail(format!("{path} {}: {body}", r.status))
    }
}
