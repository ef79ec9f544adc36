//! The kinds the operator reconciles, and their controllers over the shared
//! watches. A kind plugs in with one entry in `kinds::KINDS`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::api::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::context::Context;
use super::decode;
use super::metrics::Metrics;
use super::watches::Watches;
use crate::reconcile::child::BuildContext;
use crate::reconcile::{self as pipeline, Managed, RefKind};

/// How long a stopping controller may take to finish its reconciles.
const CONTROLLER_DRAIN: Duration = Duration::from_secs(5);

/// One kind in `kinds::KINDS`: what it references, and how to start it.
#[derive(Clone, Copy)]
pub struct Kind {
    pub name: &'static str,
    pub references: &'static [RefKind],
    add: fn(&mut Registry),
}

/// The entry of kind `K` in `kinds::KINDS`.
pub const fn kind<K: Managed>() -> Kind {
    Kind {
        name: K::METRIC_KIND,
        references: K::REFERENCES,
        add: Registry::add::<K>,
    }
}

/// What every controller of the process shares.
#[derive(Clone)]
pub struct Settings {
    pub client: Client,
    pub build: BuildContext,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub resync: Duration,
    pub concurrency: u16,
    pub leading: Arc<AtomicBool>,
    /// Turns true once every cache of every namespace holds its first list.
    pub synced: Arc<AtomicBool>,
    pub stop: watch::Receiver<bool>,
}

/// The controllers of one watched namespace (or of all), one per kind,
/// over one set of shared watches.
pub struct Registry {
    settings: Settings,
    ns: Option<String>,
    watches: Watches,
    controllers: Vec<BoxFuture<'static, ()>>,
    /// The kinds' own caches, for readiness.
    own: Vec<BoxFuture<'static, ()>>,
    kinds: Vec<&'static str>,
}

impl Registry {
    /// Sets up a controller for every kind; nothing talks to the API until
    /// the returned futures run.
    pub fn new(settings: Settings, ns: Option<&str>, kinds: &[Kind]) -> Registry {
        let mut watches = Watches::new(&settings.client, ns, settings.metrics.clone());
        // Reference watches first, so that every kind's stores include them.
        for k in kinds {
            watches.ensure_references(k.references);
        }
        let mut r = Registry {
            settings,
            ns: ns.map(String::from),
            watches,
            controllers: Vec::new(),
            own: Vec::new(),
            kinds: Vec::new(),
        };
        for k in kinds {
            (k.add)(&mut r);
        }
        r
    }

    /// The kinds registered, in order.
    pub fn kinds(&self) -> &[&'static str] {
        &self.kinds
    }

    /// Resolves once every shared cache and every kind's own cache holds
    /// its first list.
    pub fn synced(&mut self) -> BoxFuture<'static, ()> {
        let stores = self.watches.stores();
        let own = std::mem::take(&mut self.own);
        async move {
            stores.wait_until_ready().await;
            futures::future::join_all(own).await;
        }
        .boxed()
    }

    /// The watches and the controllers; the controllers end on `stop`.
    pub fn run(mut self) -> (Vec<BoxFuture<'static, ()>>, Vec<BoxFuture<'static, ()>>) {
        (self.watches.run(), self.controllers)
    }

    fn add<K: Managed>(&mut self) {
        let s = &self.settings;
        let ns = self.ns.as_deref();
        let ar = ApiResource::erase::<K>(&());
        let metrics = s.metrics.clone();
        let recorder = s.recorder.clone();
        let (store, stream, mut listed) = decode::watch::<K, _>(&s.client, ns, move |obj, err| {
            report_undecodable(obj, err, &ar, K::METRIC_KIND, &metrics, &recorder)
        });
        s.metrics.watch_opened(&K::plural(&()));
        self.own.push(
            async move {
                let _ = listed.wait_for(|l| *l).await;
            }
            .boxed(),
        );

        let ctx = Arc::new(Context {
            client: s.client.clone(),
            build: s.build.clone(),
            metrics: s.metrics.clone(),
            recorder: s.recorder.clone(),
            stores: self.watches.stores(),
            resync: s.resync,
            leading: s.leading.clone(),
            synced: s.synced.clone(),
            failures: Default::default(),
            secret_values: Default::default(),
        });
        let w = &mut self.watches;
        let mut c = Controller::for_stream(stream, store.clone())
            .with_config(controller::Config::default().concurrency(s.concurrency))
            .owns_shared_stream(w.subscribe_statefulsets())
            .owns_shared_stream(w.subscribe_services())
            .owns_shared_stream(w.subscribe_configmaps())
            .owns_shared_stream(w.subscribe_pdbs());
        for r in K::REFERENCES {
            c = match r {
                RefKind::Secret => {
                    c.watches_shared_stream(w.subscribe_secrets(), users::<K, _>(store.clone(), *r))
                }
                RefKind::ConfigMap => c.watches_shared_stream(
                    w.subscribe_configmap_refs(),
                    users::<K, _>(store.clone(), *r),
                ),
            };
        }
        let mut stop = s.stop.clone();
        let namespace = ns.unwrap_or("<all>").to_string();
        info!(kind = K::METRIC_KIND, namespace = %namespace, "starting controller");
        let controller = c
            .graceful_shutdown_on(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .run(pipeline::reconcile::<K>, pipeline::error_policy::<K>, ctx)
            .for_each(|res| {
                match res {
                    Ok((obj, _)) => debug!(object = %obj, "reconciled"),
                    // The watch of the kind itself failed: most often its
                    // CRD is not installed (yet) or RBAC forbids the list.
                    // It retries with backoff; the user must see why
                    // nothing happens.
                    Err(controller::Error::QueueError(e)) => warn!(
                        kind = K::METRIC_KIND,
                        error = %e,
                        "cannot watch the resources (is the CRD installed?)"
                    ),
                    Err(e) => debug!(error = %e, "reconcile failed"),
                }
                futures::future::ready(())
            });
        // kube-runtime holds its runner until the kind's own cache has
        // synced, and a graceful shutdown waits for the runner: without the
        // CRD it would wait forever and the kubelet would have to kill the
        // process. Reconciles are idempotent, so abandoning one is safe.
        let mut drain = s.stop.clone();
        let controller = async move {
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
            info!(kind = K::METRIC_KIND, namespace = %namespace, "controller stopped");
        };
        self.controllers.push(controller.boxed());
        self.kinds.push(K::METRIC_KIND);
    }
}

/// The resources of kind `K` that reference the object that changed.
pub fn users<K, O>(
    store: Store<K>,
    kind: RefKind,
) -> impl Fn(Arc<PartialObjectMeta<O>>) -> Vec<ObjectRef<K>> + Send + Sync + 'static
where
    K: Managed,
    O: Resource + Send + Sync + 'static,
{
    move |changed| {
        let ns = changed.namespace();
        let name = changed.name_any();
        store
            .state()
            .into_iter()
            .filter(|k| k.namespace() == ns)
            .filter(|k| {
                k.references()
                    .iter()
                    .any(|r| r.kind == kind && r.name == name)
            })
            .map(|k| ObjectRef::from_obj(&*k))
            .collect()
    }
}

/// An object of a kind that does not decode: a Warning Event on it (so
/// that `kubectl describe` says why nothing happens), a metric and a log.
fn report_undecodable(
    obj: &DynamicObject,
    err: &serde_json::Error,
    ar: &ApiResource,
    kind: &'static str,
    metrics: &Metrics,
    recorder: &Recorder,
) {
    metrics.decode_errors.with_label_values(&[kind]).inc();
    warn!(kind, namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any(), error = %err, "cannot decode; skipping it");
    let reference = obj.object_ref(ar);
    let recorder = recorder.clone();
    let event = Event {
        type_: EventType::Warning,
        reason: "DecodeError".into(),
        note: Some(format!("The operator cannot read this object: {err}")),
        action: "Decode".into(),
        secondary: None,
    };
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            warn!(error = %e, "cannot publish the DecodeError event");
        }
    });
}

/// Marks the process synced (and ready) once every registry's caches are.
pub async fn mark_synced(
    synced: Vec<BoxFuture<'static, ()>>,
    flag: Arc<AtomicBool>,
    on_ready: impl FnOnce(),
) {
    futures::future::join_all(synced).await;
    flag.store(true, Ordering::SeqCst);
    on_ready();
    info!("caches synced");
}
