//! `/metrics` (one synchronous engine scrape per request) and `/healthz`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tessera_telemetry::http::Settings;
use tokio::net::TcpListener;

use crate::cli::{Args, Engine};
use crate::engines::Collector;
use crate::error::ScrapeError;
use crate::schema::{Scrape, core};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub struct Adapter {
    engine: Engine,
    timeout: Duration,
    /// One collector, so scrapes reuse its connection; concurrent scrapes
    /// queue on the lock (inside their own deadline). The shared clients
    /// are cancel-safe: a scrape cut off by the deadline drops the
    /// half-used connection and the next one reconnects.
    collector: tokio::sync::Mutex<Collector>,
    was_up: AtomicBool,
    errors: std::sync::Mutex<BTreeMap<&'static str, u64>>,
}

impl Adapter {
    pub fn new(args: &Args) -> anyhow::Result<Adapter> {
        Ok(Adapter {
            engine: args.engine,
            timeout: args.scrape_timeout,
            collector: tokio::sync::Mutex::new(Collector::new(args)?),
            was_up: AtomicBool::new(true),
            errors: std::sync::Mutex::new(ScrapeError::PRESET.iter().map(|r| (*r, 0)).collect()),
        })
    }

    /// Asks the engine once and renders the exposition. Never fails: an
    /// engine that is down or hung gives `tessera_up 0` within the deadline.
    pub async fn scrape(&self) -> String {
        let start = Instant::now();
        let mut engine_out = Scrape::new(self.engine);
        let res = tokio::time::timeout(self.timeout, async {
            let mut c = self.collector.lock().await;
            c.collect(&mut engine_out).await
        })
        .await;
        let failure = match res {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(ScrapeError::Deadline(self.timeout)),
        };
        let up = failure.is_none();
        if let Some(e) = &failure {
            // Half a picture is worse than none.
            engine_out.clear_samples();
            engine_out.error(e);
        }
        if self.was_up.swap(up, Ordering::SeqCst) != up {
            match &failure {
                Some(e) => {
                    tracing::warn!(engine = self.engine.as_str(), error = %e, "engine is down")
                }
                None => tracing::info!(engine = self.engine.as_str(), "engine is up"),
            }
        }

        let mut out = Scrape::new(self.engine);
        out.flag(&core::UP, up);
        out.absorb(engine_out);
        out.set(&core::SCRAPE_DURATION, start.elapsed().as_secs_f64());
        {
            let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
            for reason in out.errors().to_vec() {
                *errors.entry(reason).or_default() += 1;
            }
            for (reason, n) in errors.iter() {
                out.push(
                    &core::SCRAPE_ERRORS,
                    vec![("reason", reason.to_string())],
                    *n as f64,
                );
            }
        }
        out.push(
            &core::ADAPTER_INFO,
            vec![("version", env!("CARGO_PKG_VERSION").into())],
            1.0,
        );
        let mut text = String::with_capacity(4096);
        out.render(&mut text);
        text
    }

    async fn route(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => {
                let body = self.scrape().await;
                reply(StatusCode::OK, CONTENT_TYPE, body)
            }
            // The adapter itself is alive; engine health is tessera_up.
            (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            (_, "/metrics" | "/healthz") => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "GET only\n".into(),
            ),
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: try /metrics or /healthz\n".into(),
            ),
        }
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// Serves `/metrics` and `/healthz` with the shared hardened server (accept
/// backoff, header-read timeout, connection cap) until `shutdown`, then
/// drains.
pub async fn serve(
    listener: TcpListener,
    adapter: Arc<Adapter>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let handler = move |req| {
        let adapter = adapter.clone();
        async move { adapter.route(req).await }
    };
    tessera_telemetry::http::serve(listener, handler, Settings::default(), shutdown).await;
}
