//! `tessera-operator run`: leader election, one controller per kind, the
//! health and metrics server, and graceful shutdown.

pub mod context;
pub mod decode;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod registry;
pub mod secret_values;
pub mod watches;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::kinds::shared::MANAGER;
use crate::reconcile::child::BuildContext;
use leader::{LeaderElector, LeaseConfig};
use metrics::Metrics;
use registry::{Registry, Settings};

/// Settings of `tessera-operator run`, from the CLI.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub build: BuildContext,
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    pub metrics_addr: SocketAddr,
    pub resync: Duration,
    pub concurrency: u16,
    /// None disables leader election (a single replica, or tests).
    pub lease: Option<LeaseConfig>,
    pub identity: String,
    /// The sidecar-injection webhook, when enabled.
    pub webhook: Option<crate::webhook::WebhookConfig>,
}

/// Runs until SIGTERM/SIGINT (Ok) or until the leader Lease is lost (Err,
/// so that the process exits and restarts as a standby).
pub async fn run(cfg: RunConfig) -> anyhow::Result<()> {
    // First: until the handlers are in, SIGHUP, SIGUSR1 and SIGUSR2 would
    // end the process.
    let signals =
        tessera_telemetry::Signals::install().context("installing the signal handlers")?;
    let client = Client::try_default()
        .await
        .context("no Kubernetes client configuration (KUBECONFIG or in-cluster)")?;
    let metrics = Arc::new(Metrics::new());
    let health = http::Health::default();
    let listener = http::bind(cfg.metrics_addr)
        .await
        .with_context(|| format!("binding the metrics address {}", cfg.metrics_addr))?;

    // `stop` turns true on SIGTERM/SIGINT or when leadership is lost.
    let (stop_tx, stop_rx) = watch::channel(false);
    let signal_tx = stop_tx.clone();
    tokio::spawn(async move {
        signals
            .shutdown(tessera_telemetry::signals::nothing_to_reopen)
            .await;
        let _ = signal_tx.send(true);
    });
    // The endpoints drain with the controllers; the process exits when
    // `run` returns, so the drain only lets answers in progress finish.
    let mut http_stop = stop_rx.clone();
    tokio::spawn(http::serve(
        listener,
        metrics.clone(),
        health.clone(),
        async move {
            let _ = http_stop.wait_for(|s| *s).await;
        },
    ));

    let leading = Arc::new(AtomicBool::new(false));
    let lost = Arc::new(AtomicBool::new(false));
    // Every replica serves the webhook, standbys included; only the
    // leader writes (certificates, the configuration, Events).
    let mut webhook_server = None;
    if let Some(webhook) = cfg.webhook.clone() {
        webhook_server = Some(
            crate::webhook::start(
                webhook,
                crate::webhook::Runtime {
                    client: client.clone(),
                    registry: metrics.registry().clone(),
                    tessera_image: cfg.build.tessera_image.clone(),
                    namespaces: cfg.namespaces.clone(),
                    identity: cfg.identity.clone(),
                    leading: leading.clone(),
                    stop: stop_rx.clone(),
                },
            )
            .await?,
        );
    }
    // Exiting cuts admission reviews in progress: wait for the drain.
    let webhook_drained = || async {
        if let Some(server) = webhook_server {
            let _ = server.await;
        }
    };
    let mut elector = None;
    if let Some(lease) = cfg.lease.clone() {
        // A standby is healthy and ready: it has nothing to serve.
        health.ready.store(true, Ordering::SeqCst);
        let mut e = LeaderElector::new(client.clone(), lease.clone());
        info!(lease = %format!("{}/{}", lease.namespace, lease.name), identity = %lease.identity, "waiting for the leader lease");
        let mut stop = stop_rx.clone();
        loop {
            match e.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(err) => warn!(error = %err, "cannot read the leader lease"),
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {
                    webhook_drained().await;
                    return Ok(());
                }
                _ = tokio::time::sleep(lease.retry) => {}
            }
        }
        info!("acquired the leader lease");
        elector = Some(e);
    }
    leading.store(true, Ordering::SeqCst);
    metrics.leader.set(1);

    // Renew in the background. Reconciles check `leading` before writing,
    // and the controllers stop as soon as a renewal deadline passes.
    let renewer = elector.map(|mut e| {
        let leading = leading.clone();
        let lost = lost.clone();
        let stop_tx = stop_tx.clone();
        let metrics = metrics.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let deadline = e.config().duration * 2 / 3;
            let mut last_renew = Instant::now();
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(e.config().retry) => {}
                }
                match e.try_acquire_or_renew().await {
                    Ok(true) => last_renew = Instant::now(),
                    Ok(false) => {
                        error!("another process took the leader lease");
                        last_renew = Instant::now() - deadline * 2;
                    }
                    Err(err) => warn!(error = %err, "cannot renew the leader lease"),
                }
                if last_renew.elapsed() >= deadline {
                    leading.store(false, Ordering::SeqCst);
                    metrics.leader.set(0);
                    lost.store(true, Ordering::SeqCst);
                    let _ = stop_tx.send(true);
                    break;
                }
            }
            e
        })
    });

    let namespaces: Vec<Option<String>> = if cfg.namespaces.is_empty() {
        vec![None]
    } else {
        cfg.namespaces.iter().cloned().map(Some).collect()
    };
    let settings = Settings {
        client: client.clone(),
        build: cfg.build.clone(),
        metrics: metrics.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: Some(cfg.identity.clone()),
            },
        ),
        resync: cfg.resync,
        concurrency: cfg.concurrency,
        leading: leading.clone(),
        synced: Arc::new(AtomicBool::new(false)),
        stop: stop_rx.clone(),
    };
    let mut controllers = Vec::new();
    let mut watches = Vec::new();
    let mut synced = Vec::new();
    for ns in &namespaces {
        let mut registry = Registry::new(settings.clone(), ns.as_deref(), crate::kinds::KINDS);
        synced.push(registry.synced());
        let (w, c) = registry.run();
        watches.extend(w.into_iter().map(tokio::spawn));
        controllers.extend(c);
    }
    // Reconciles wait for full caches: an empty cache would make every
    // child look missing and re-apply it. Ready only when every
    // controller's caches are full.
    let ready = health.ready.clone();
    let sync_task = tokio::spawn(registry::mark_synced(
        synced,
        settings.synced.clone(),
        move || ready.store(true, Ordering::SeqCst),
    ));
    futures::future::join_all(controllers).await;
    sync_task.abort();
    for w in watches {
        w.abort();
    }
    leading.store(false, Ordering::SeqCst);
    metrics.leader.set(0);

    if lost.load(Ordering::SeqCst) {
        webhook_drained().await;
        anyhow::bail!("lost the leader lease; exiting so that a restart becomes a standby");
    }
    if let Some(handle) = renewer {
        let _ = stop_tx.send(true);
        if let Ok(e) = handle.await {
            match e.release().await {
                Ok(()) => info!("released the leader lease"),
                Err(err) => warn!(error = %err, "cannot release the leader lease"),
            }
        }
    }
    webhook_drained().await;
    info!("stopped");
    Ok(())
}
