//! `tessera-operator run`: leader election, one controller per kind, the
//! health and metrics server, and graceful shutdown.

pub mod context;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tessera_api::Ensemble;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::kinds::shared::{LABEL_MANAGED_BY, MANAGER};
use crate::reconcile::child::BuildContext;
use crate::reconcile::{self as pipeline, Managed};
use context::{Context, Stores};
use leader::{LeaderElector, LeaseConfig};
use metrics::Metrics;

/// How long a stopping controller may take to finish its reconciles.
const CONTROLLER_DRAIN: Duration = Duration::from_secs(5);

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
                _ = stop.wait_for(|s| *s) => return Ok(()),
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
    let mut controllers = Vec::new();
    for ns in namespaces {
        controllers.push(run_controller::<Ensemble>(
            client.clone(),
            ns,
            &cfg,
            metrics.clone(),
            leading.clone(),
            health.clone(),
            stop_rx.clone(),
        ));
    }
    futures::future::join_all(controllers).await;
    leading.store(false, Ordering::SeqCst);
    metrics.leader.set(0);

    if lost.load(Ordering::SeqCst) {
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
    info!("stopped");
    Ok(())
}

fn api<T>(client: &Client, ns: Option<&str>) -> Api<T>
where
    T: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A child watch that fills a store and triggers the owner's reconcile.
/// Managed fields are dropped: they are large and never read.
fn child_watch<C>(
    client: &Client,
    ns: Option<&str>,
) -> (
    Store<C>,
    impl futures::Stream<Item = Result<C, watcher::Error>> + Send + 'static,
)
where
    C: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let wc = watcher::Config::default()
        .labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"))
        .any_semantic();
    let stream = reflector::reflector(
        writer,
        watcher(api::<C>(client, ns), wc)
            .default_backoff()
            .modify(|o: &mut C| o.managed_fields_mut().clear()),
    )
    .touched_objects();
    (reader, stream)
}

async fn run_controller<K: Managed>(
    client: Client,
    ns: Option<String>,
    cfg: &RunConfig,
    metrics: Arc<Metrics>,
    leading: Arc<AtomicBool>,
    health: http::Health,
    stop: watch::Receiver<bool>,
) {
    let ns = ns.as_deref();
    let (statefulsets, sts_stream) = child_watch::<StatefulSet>(&client, ns);
    let (services, svc_stream) = child_watch::<Service>(&client, ns);
    let (configmaps, cm_stream) = child_watch::<ConfigMap>(&client, ns);
    let (pdbs, pdb_stream) = child_watch::<PodDisruptionBudget>(&client, ns);

    // Pods only feed status; their StatefulSet's status triggers reconciles.
    // Only metadata and status are kept.
    let (pods, pod_writer) = reflector::store::<Pod>();
    let pod_wc = watcher::Config::default()
        .labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"))
        .any_semantic();
    let pod_stream = reflector::reflector(
        pod_writer,
        watcher(api::<Pod>(&client, ns), pod_wc)
            .default_backoff()
            .modify(|p: &mut Pod| {
                p.managed_fields_mut().clear();
                p.spec = None;
            }),
    );
    let pod_task = tokio::spawn(pod_stream.for_each(|_| futures::future::ready(())));

    let stores = Stores {
        statefulsets,
        services,
        configmaps,
        pdbs,
        pods,
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: Some(cfg.identity.clone()),
        },
    );
    let synced = Arc::new(AtomicBool::new(false));
    let ctx = Arc::new(Context {
        client: client.clone(),
        build: cfg.build.clone(),
        metrics,
        recorder,
        stores: stores.clone(),
        resync: cfg.resync,
        leading,
        synced: synced.clone(),
        failures: Default::default(),
    });
    // Reconciles wait for full caches: an empty cache would make every
    // child look missing and re-apply it.
    tokio::spawn(async move {
        let _ = stores.statefulsets.wait_until_ready().await;
        let _ = stores.services.wait_until_ready().await;
        let _ = stores.configmaps.wait_until_ready().await;
        let _ = stores.pdbs.wait_until_ready().await;
        let _ = stores.pods.wait_until_ready().await;
        synced.store(true, Ordering::SeqCst);
        health.ready.store(true, Ordering::SeqCst);
        info!("caches synced");
    });

    let mut stop_signal = stop.clone();
    info!(
        kind = K::METRIC_KIND,
        namespace = ns.unwrap_or("<all>"),
        "starting controller"
    );
    let controller = Controller::new(
        api::<K>(&client, ns),
        watcher::Config::default().any_semantic(),
    )
    .with_config(controller::Config::default().concurrency(cfg.concurrency))
    .owns_stream(sts_stream)
    .owns_stream(svc_stream)
    .owns_stream(cm_stream)
    .owns_stream(pdb_stream)
    .graceful_shutdown_on(async move {
        let _ = stop_signal.wait_for(|s| *s).await;
    })
    .run(pipeline::reconcile::<K>, pipeline::error_policy::<K>, ctx)
    .for_each(|res| {
        match res {
            Ok((obj, _)) => debug!(object = %obj, "reconciled"),
            // The watch of the kind itself failed: most often its CRD is
            // not installed (yet) or RBAC forbids the list. The watch
            // retries with backoff; the user must see why nothing happens.
            Err(controller::Error::QueueError(e)) => {
                warn!(kind = K::METRIC_KIND, error = %e, "cannot watch the resources (is the CRD installed?)")
            }
            Err(e) => debug!(error = %e, "reconcile failed"),
        }
        futures::future::ready(())
    });
    // kube-runtime holds its runner until the kind's own cache has synced,
    // and a graceful shutdown waits for the runner: without the CRD, it
    // would wait forever and the kubelet would have to kill the process.
    // Reconciles are idempotent, so abandoning one in flight is safe.
    let mut drain = stop.clone();
    tokio::select! {
        () = controller => {}
        () = async move {
            let _ = drain.wait_for(|s| *s).await;
            tokio::time::sleep(CONTROLLER_DRAIN).await;
        } => warn!(
            kind = K::METRIC_KIND,
            after = ?CONTROLLER_DRAIN,
            "the controller did not stop in time; abandoning it"
        ),
    }
    pod_task.abort();
    info!(kind = K::METRIC_KIND, "controller stopped");
}
