//! The watches of children and referenced objects, one set per watched
//! namespace, shared by every kind: each controller subscribes to the same
//! reflector, so the number of watches (and the memory of the caches) does
//! not grow with the number of kinds.

use std::fmt::Debug;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ReflectHandle, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::context::Stores;
use super::metrics::Metrics;
use crate::kinds::shared::{LABEL_MANAGED_BY, MANAGER};
use crate::reconcile::RefKind;

/// How many events a subscriber may lag behind before the reflector waits
/// for it. Controllers dequeue at once (they only schedule a reconcile),
/// so this is only a burst allowance.
const SUBSCRIBER_BUFFER: usize = 1024;

pub fn api<T>(client: &Client, ns: Option<&str>) -> Api<T>
where
    T: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// What a namespaced watch of typed objects needs of its type.
pub trait Watched:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<C> Watched for C where
    C: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// One shared watch: its cache, a subscription that controllers clone, and
/// the reflector that fills both once started.
struct Shared<C: Resource<DynamicType = ()> + Clone + 'static> {
    reader: Store<C>,
    /// Dropped in `run`: an unread subscription would hold the reflector
    /// back once the buffer is full.
    root: Option<ReflectHandle<C>>,
    events: Option<BoxFuture<'static, ()>>,
}

/// Children carry our label; everything else of the namespace is not ours.
fn managed() -> watcher::Config {
    watcher::Config::default()
        .labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"))
        .any_semantic()
}

/// The shared watches of one namespace (or of all).
pub struct Watches {
    client: Client,
    ns: Option<String>,
    metrics: Arc<Metrics>,
    statefulsets: Shared<StatefulSet>,
    services: Shared<Service>,
    configmaps: Shared<ConfigMap>,
    pdbs: Shared<PodDisruptionBudget>,
    pods: Store<Pod>,
    pod_events: Option<BoxFuture<'static, ()>>,
    secrets: Option<Shared<PartialObjectMeta<Secret>>>,
    configmap_refs: Option<Shared<PartialObjectMeta<ConfigMap>>>,
}

impl Watches {
    /// Sets up the child watches; nothing is sent to the API until
    /// [`Watches::run`].
    pub fn new(client: &Client, ns: Option<&str>, metrics: Arc<Metrics>) -> Watches {
        // Pods only feed status; their StatefulSet's status triggers
        // reconciles, so nobody subscribes. Only metadata and status are kept.
        let (pods, pod_writer) = reflector::store::<Pod>();
        let pod_events = reflector::reflector(
            pod_writer,
            watcher(api::<Pod>(client, ns), managed())
                .default_backoff()
                .modify(|p: &mut Pod| {
                    p.managed_fields_mut().clear();
                    p.spec = None;
                }),
        )
        .for_each(|_| futures::future::ready(()))
        .boxed();
        metrics.watch_opened("pods");
        Watches {
            statefulsets: child(client, ns, &metrics),
            services: child(client, ns, &metrics),
            configmaps: child(client, ns, &metrics),
            pdbs: child(client, ns, &metrics),
            pods,
            pod_events: Some(pod_events),
            secrets: None,
            configmap_refs: None,
            client: client.clone(),
            ns: ns.map(String::from),
            metrics,
        }
    }

    /// The caches, for `dereference` and `apply`.
    pub fn stores(&self) -> Stores {
        Stores {
            statefulsets: self.statefulsets.reader.clone(),
            services: self.services.reader.clone(),
            configmaps: self.configmaps.reader.clone(),
            pdbs: self.pdbs.reader.clone(),
            pods: self.pods.clone(),
            secrets: self.secrets.as_ref().map(|s| s.reader.clone()),
            configmap_refs: self.configmap_refs.as_ref().map(|s| s.reader.clone()),
        }
    }

    pub fn subscribe_statefulsets(&self) -> impl Stream<Item = Arc<StatefulSet>> + Send + use<> {
        subscribe(&self.statefulsets)
    }
    pub fn subscribe_services(&self) -> impl Stream<Item = Arc<Service>> + Send + use<> {
        subscribe(&self.services)
    }
    pub fn subscribe_configmaps(&self) -> impl Stream<Item = Arc<ConfigMap>> + Send + use<> {
        subscribe(&self.configmaps)
    }
    pub fn subscribe_pdbs(&self) -> impl Stream<Item = Arc<PodDisruptionBudget>> + Send + use<> {
        subscribe(&self.pdbs)
    }

    /// The metadata of every Secret of the namespace, opened on the first
    /// kind that references Secrets.
    pub fn subscribe_secrets(
        &mut self,
    ) -> impl Stream<Item = Arc<PartialObjectMeta<Secret>>> + Send + use<> {
        let ns = self.ns.as_deref();
        subscribe(open(
            &mut self.secrets,
            &self.client,
            ns,
            &self.metrics,
            "secrets",
        ))
    }

    /// The metadata of every ConfigMap of the namespace (not only ours).
    pub fn subscribe_configmap_refs(
        &mut self,
    ) -> impl Stream<Item = Arc<PartialObjectMeta<ConfigMap>>> + Send + use<> {
        let ns = self.ns.as_deref();
        let slot = &mut self.configmap_refs;
        subscribe(open(slot, &self.client, ns, &self.metrics, "configmaps"))
    }

    /// Opens the referenced-object watches `kinds` ask for; the controller
    /// subscribes to them with a mapper of its own.
    pub fn ensure_references(&mut self, kinds: &[RefKind]) {
        for k in kinds {
            match k {
                RefKind::Secret => drop(self.subscribe_secrets()),
                RefKind::ConfigMap => drop(self.subscribe_configmap_refs()),
            }
        }
    }

    /// The futures that drive every watch; they end only with the process.
    /// Call it once every controller has subscribed.
    pub fn run(&mut self) -> Vec<BoxFuture<'static, ()>> {
        let mut out: Vec<BoxFuture<'static, ()>> = Vec::new();
        out.extend(self.statefulsets.start());
        out.extend(self.services.start());
        out.extend(self.configmaps.start());
        out.extend(self.pdbs.start());
        out.extend(self.pod_events.take());
        if let Some(s) = self.secrets.as_mut() {
            out.extend(s.start());
        }
        if let Some(s) = self.configmap_refs.as_mut() {
            out.extend(s.start());
        }
        out
    }
}

impl<C: Resource<DynamicType = ()> + Clone + 'static> Shared<C> {
    fn start(&mut self) -> Option<BoxFuture<'static, ()>> {
        self.root = None;
        self.events.take()
    }
}

fn subscribe<C>(shared: &Shared<C>) -> impl Stream<Item = Arc<C>> + Send + use<C>
where
    C: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    shared
        .root
        .clone()
        .expect("controllers subscribe before the watches run")
}

/// The referenced-object watch in `slot`, opened on first use.
fn open<'a, C: Watched>(
    slot: &'a mut Option<Shared<PartialObjectMeta<C>>>,
    client: &Client,
    ns: Option<&str>,
    metrics: &Metrics,
    resource: &str,
) -> &'a Shared<PartialObjectMeta<C>> {
    slot.get_or_insert_with(|| referenced(client, ns, metrics, resource))
}

/// A child watch: our label only, managed fields dropped (large, never read).
fn child<C: Watched>(client: &Client, ns: Option<&str>, metrics: &Metrics) -> Shared<C> {
    let (_, writer) = reflector::store_shared::<C>(SUBSCRIBER_BUFFER);
    let events = watcher(api::<C>(client, ns), managed())
        .default_backoff()
        .modify(|o: &mut C| o.managed_fields_mut().clear());
    metrics.watch_opened(&C::plural(&()));
    shared(writer, events)
}

/// A referenced-object watch: metadata only (a Secret's data never enters
/// the operator's memory), every object of the namespace.
fn referenced<C: Watched>(
    client: &Client,
    ns: Option<&str>,
    metrics: &Metrics,
    resource: &str,
) -> Shared<PartialObjectMeta<C>> {
    let (_, writer) = reflector::store_shared::<PartialObjectMeta<C>>(SUBSCRIBER_BUFFER);
    // An Api of PartialObjectMeta makes metadata-only requests.
    let events = watcher(
        api::<PartialObjectMeta<C>>(client, ns),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(|o: &mut PartialObjectMeta<C>| o.managed_fields_mut().clear());
    metrics.watch_opened(&format!("{resource}-metadata"));
    shared(writer, events)
}

fn shared<C, S>(writer: Writer<C>, events: S) -> Shared<C>
where
    C: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    S: Stream<Item = Result<watcher::Event<C>, watcher::Error>> + Send + 'static,
{
    let reader = writer.as_reader();
    let root = writer.subscribe();
    let events = reflector::reflector(writer, events)
        .for_each(|_| futures::future::ready(()))
        .boxed();
    Shared {
        reader,
        root,
        events: Some(events),
    }
}
