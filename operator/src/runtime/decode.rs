//! The watch of a kind's own resources, decoded one object at a time.
//!
//! A typed watch fails its whole list when one object does not decode
//! (stored before a schema change, or a schema that admits what the Rust
//! type refuses), and every resource of the kind would stall behind it.
//! Here the objects arrive untyped; one that does not decode is reported
//! (an Event on it, a metric, a log) and skipped, and the others go on.

use futures::{Stream, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};

use crate::reconcile::Managed;

/// Decodes one untyped object into the kind's type.
pub fn decode<K: Managed>(obj: &DynamicObject) -> Result<K, serde_json::Error> {
    serde_json::to_value(obj).and_then(serde_json::from_value)
}

/// One watch event, typed. An object that does not decode is passed to
/// `report` and left out; when it is deleted, the last version that did
/// decode (if any) leaves the cache.
pub fn typed<K: Managed>(
    event: Event<DynamicObject>,
    cache: &Store<K>,
    report: &impl Fn(&DynamicObject, &serde_json::Error),
) -> Option<Event<K>> {
    let decoded = |o: &DynamicObject| decode::<K>(o).map_err(|e| report(o, &e)).ok();
    match event {
        Event::Apply(o) => decoded(&o).map(Event::Apply),
        Event::InitApply(o) => decoded(&o).map(Event::InitApply),
        Event::Delete(o) => match decode::<K>(&o) {
            Ok(k) => Some(Event::Delete(k)),
            Err(_) => {
                let key = ObjectRef::new(&o.name_any()).within(&o.namespace().unwrap_or_default());
                cache.get(&key).map(|k| Event::Delete((*k).clone()))
            }
        },
        Event::Init => Some(Event::Init),
        Event::InitDone => Some(Event::InitDone),
    }
}

/// The kind's cache, the stream of its changed objects (for
/// `Controller::for_stream`), and a flag that turns true once the cache
/// holds its first list. `report` is called for every object that does not
/// decode, each time it changes (and on every relist).
///
/// The flag is a `watch` channel rather than `Store::wait_until_ready`: the
/// store's readiness wakes only its last waiter, and the controller itself
/// waits on it, so a second waiter could sleep forever.
pub fn watch<K, R>(
    client: &Client,
    ns: Option<&str>,
    report: R,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    tokio::sync::watch::Receiver<bool>,
)
where
    K: Managed,
    R: Fn(&DynamicObject, &serde_json::Error) + Send + Sync + 'static,
{
    let ar = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let (reader, writer) = reflector::store::<K>();
    let cache = reader.clone();
    let events = watcher::watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .filter_map(move |ev| {
            let out = match ev {
                Ok(ev) => typed(ev, &cache, &report).map(Ok),
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(out)
        });
    let (listed, ready) = tokio::sync::watch::channel(false);
    let stream = reflector::reflector(writer, events)
        .inspect(move |ev| {
            if matches!(ev, Ok(Event::InitDone)) {
                listed.send_replace(true);
            }
        })
        .applied_objects();
    (reader, stream, ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tessera_api::Ensemble;

    fn object(spec: serde_json::Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tessera.dev/v1alpha1",
            "kind": "Ensemble",
            "metadata": {"name": "zk", "namespace": "demo", "uid": "1"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn an_object_that_does_not_decode_is_reported_and_skipped() {
        let (cache, mut writer) = reflector::store::<Ensemble>();
        let reported = Mutex::new(Vec::new());
        let report = |o: &DynamicObject, e: &serde_json::Error| {
            reported
                .lock()
                .unwrap()
                .push(format!("{}: {e}", o.name_any()));
        };
        let good = object(serde_json::json!({"engine": "etcd", "replicas": 1}));
        let bad = object(serde_json::json!({"engine": "cassandra"}));

        let ev = typed::<Ensemble>(Event::Apply(good.clone()), &cache, &report);
        let Some(Event::Apply(e)) = &ev else {
            panic!("a valid object passes: {ev:?}")
        };
        assert_eq!(e.spec.replicas, 1);
        writer.apply_watcher_event(ev.as_ref().unwrap());

        // The same object changed into something the type refuses: reported,
        // not passed on, and the cache keeps the last good version.
        assert!(typed::<Ensemble>(Event::Apply(bad.clone()), &cache, &report).is_none());
        assert_eq!(reported.lock().unwrap().len(), 1);
        assert!(
            reported.lock().unwrap()[0].starts_with("zk: "),
            "{reported:?}"
        );
        assert!(typed::<Ensemble>(Event::InitApply(bad.clone()), &cache, &report).is_none());

        // Deleting it removes the last good version from the cache.
        match typed::<Ensemble>(Event::Delete(bad), &cache, &report) {
            Some(Event::Delete(e)) => assert_eq!(e.spec.replicas, 1),
            other => panic!("delete of a cached object: {other:?}"),
        }
        assert!(matches!(
            typed::<Ensemble>(Event::InitDone, &cache, &report),
            Some(Event::InitDone)
        ));
    }
}
