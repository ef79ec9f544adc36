//! The HTTP endpoints: /livez, /readyz, /metrics.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tessera_telemetry::http::Settings;
use tokio::net::TcpListener;

use crate::checks::Kind;
use crate::metrics::Metrics;
use crate::probe::Prober;

pub struct App {
    pub engine: &'static str,
    pub prober: Prober,
    pub metrics: Arc<Metrics>,
}

/// Serves the endpoints with the shared hardened server (accept backoff,
/// header-read timeout, connection cap) until `shutdown`, then drains.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let handler = move |req| {
        let app = app.clone();
        async move { route(&app, req).await }
    };
    tessera_telemetry::http::serve(listener, handler, Settings::default(), shutdown).await;
}

async fn route(app: &App, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    let kind = match req.uri().path() {
        "/readyz" => Kind::Readiness,
        "/livez" => Kind::Liveness,
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(app.metrics.render())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return r;
        }
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                "not found: try /readyz, /livez or /metrics\n".into(),
            );
        }
    };
    let wants_json = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let out = app.prober.probe(kind).await;
    let v = &out.verdict;
    let status = if v.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if !v.ok {
        tracing::info!(engine = app.engine, check = kind.as_str(), cause = v.cause, reason = %v.reason, "check failed");
    }
    if wants_json {
        let body = serde_json::json!({
            "ok": v.ok,
            "engine": app.engine,
            "check": kind.as_str(),
            "reason": v.reason,
            "cause": if v.ok { None } else { Some(v.cause) },
            "duration_seconds": out.duration.as_secs_f64(),
        });
        let mut r = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return r;
    }
    let word = if v.ok { "ok" } else { "not ok" };
    text(status, format!("{word}: {}\n", v.reason))
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
