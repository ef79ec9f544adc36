//! Sidecar injection into pods Tessera did not create: a mutating
//! admission webhook served by the operator over HTTPS (docs/injection.md).
//!
//! | Module | What |
//! |---|---|
//! | `spec` | the `tessera.dev/inject*` annotations, parsed, with clear errors |
//! | `patch` | the JSON patch: the operator's sidecar and adapter, native or not; idempotent |
//! | `admission` | one AdmissionReview in, one out |
//! | `nodes` | the kubelet versions, for native sidecars |
//! | `tls`, `certs` | the CA and serving certificate in a Secret, rotation, hot swap, the CA bundle |
//! | `config` | the MutatingWebhookConfiguration the leader applies |
//! | `server` | HTTPS |
//! | `report` | pods that asked for injection but lack it: Event and metric |
//! | `cli` | the `--webhook-*` flags |

pub mod admission;
pub mod certs;
pub mod cli;
pub mod config;
pub mod nodes;
pub mod patch;
pub mod report;
pub mod server;
pub mod spec;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter as EventReporter};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::kinds::shared::MANAGER;

/// Settings of the webhook, from `--webhook-*` flags.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub addr: SocketAddr,
    /// The operator's namespace: the certificate Secret, never injected.
    pub namespace: String,
    pub settings: config::Settings,
    pub policy: tls::Policy,
    pub native: admission::NativeSidecars,
    pub check_secrets: bool,
    /// After `stop`, how long the server keeps accepting before it drains.
    pub shutdown_delay: std::time::Duration,
}

/// The webhook's metrics, registered into the operator's registry.
#[derive(Clone)]
pub struct WebhookMetrics {
    /// AdmissionReviews answered, by result.
    pub requests: IntCounterVec,
    /// Time to answer one, by result.
    pub duration: HistogramVec,
    /// Certificate changes, by kind.
    pub rotations: IntCounterVec,
    /// Expiry of the served certificate, Unix seconds.
    pub cert_expiry: IntGauge,
    /// Pods that asked for injection and lack it, now.
    pub missing: IntGauge,
    /// InjectionMissing Events published.
    pub missing_reported: IntCounter,
}

impl WebhookMetrics {
    pub fn new() -> WebhookMetrics {
        let requests = IntCounterVec::new(
            Opts::new(
                "tessera_operator_admission_requests_total",
                "AdmissionReviews answered by the injection webhook, by result (injected, already_injected, not_requested, denied, excluded, ignored, error).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tessera_operator_admission_duration_seconds",
                "Time to answer one AdmissionReview, inside the operator, by result.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
            ]),
            &["result"],
        )
        .expect("valid metric");
        let rotations = IntCounterVec::new(
            Opts::new(
                "tessera_operator_webhook_certificate_changes_total",
                "Changes to the webhook's certificates written by the leader (created, leaf_renewed, ca_rotated, previous_ca_dropped).",
            ),
            &["change"],
        )
        .expect("valid metric");
        let cert_expiry = IntGauge::new(
            "tessera_operator_webhook_certificate_expiry_timestamp_seconds",
            "When the serving certificate this process serves expires (Unix time).",
        )
        .expect("valid metric");
        let missing = IntGauge::new(
            "tessera_operator_injection_missing_pods",
            "Pods that asked for injection (tessera.dev/inject) but were created without it.",
        )
        .expect("valid metric");
        let missing_reported = IntCounter::new(
            "tessera_operator_injection_missing_events_total",
            "InjectionMissing Warning Events published.",
        )
        .expect("valid metric");
        WebhookMetrics {
            requests,
            duration,
            rotations,
            cert_expiry,
            missing,
            missing_reported,
        }
    }

    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.duration.clone()))?;
        registry.register(Box::new(self.rotations.clone()))?;
        registry.register(Box::new(self.cert_expiry.clone()))?;
        registry.register(Box::new(self.missing.clone()))?;
        registry.register(Box::new(self.missing_reported.clone()))?;
        Ok(())
    }
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        WebhookMetrics::new()
    }
}

/// What `start` needs from the operator's runtime.
pub struct Runtime {
    pub client: Client,
    pub registry: Registry,
    pub tessera_image: String,
    /// Namespaces the operator watches; empty: all.
    pub namespaces: Vec<String>,
    pub identity: String,
    /// True while this replica leads: it writes certificates, the
    /// configuration and Events.
    pub leading: Arc<AtomicBool>,
    pub stop: watch::Receiver<bool>,
}

/// Binds the HTTPS port (an error here fails startup) and spawns the
/// server, the certificate manager, the node watch and the reporter.
/// Every replica serves; only the leader writes. The returned task ends
/// when the server has drained after `stop`: await it before exiting.
pub async fn start(cfg: WebhookConfig, rt: Runtime) -> anyhow::Result<JoinHandle<()>> {
    let metrics = WebhookMetrics::new();
    metrics
        .register(&rt.registry)
        .context("registering the webhook metrics")?;
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .with_context(|| format!("binding the webhook address {}", cfg.addr))?;
    let resolver = Arc::new(tls::Resolver::default());
    let nodes = nodes::NodeVersions::default();
    tokio::spawn(nodes.clone().watch(rt.client.clone()));
    let injector = Arc::new(admission::Injector {
        image: rt.tessera_image.clone(),
        excluded: cfg.settings.excluded.clone(),
        native: cfg.native,
        nodes,
        secrets: cfg
            .check_secrets
            .then(|| Box::new(admission::ApiSecrets(rt.client.clone())) as Box<_>),
        metrics: metrics.clone(),
    });
    let tls_config = server::tls_config(resolver.clone())?;
    tracing::info!(addr = %cfg.addr, namespace = %cfg.namespace, "serving the injection webhook");
    let server = tokio::spawn(server::serve(
        listener,
        tls_config,
        injector,
        resolver.clone(),
        rt.stop.clone(),
        cfg.shutdown_delay,
    ));
    let manager = certs::CertManager {
        client: rt.client.clone(),
        namespace: cfg.namespace.clone(),
        policy: cfg.policy.clone(),
        settings: cfg.settings.clone(),
        resolver,
        leading: rt.leading.clone(),
        metrics: metrics.clone(),
    };
    tokio::spawn(manager.run(rt.stop.clone()));
    let reporter = report::Reporter {
        client: rt.client.clone(),
        namespaces: rt.namespaces.clone(),
        excluded: cfg.settings.excluded.clone(),
        selection: cfg.settings.selection,
        recorder: Recorder::new(
            rt.client.clone(),
            EventReporter {
                controller: MANAGER.into(),
                instance: Some(rt.identity.clone()),
            },
        ),
        leading: rt.leading.clone(),
        metrics,
    };
    let mut stop = rt.stop;
    tokio::spawn(async move {
        tokio::select! {
            _ = reporter.run() => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    });
    Ok(server)
}
