//! Pods that asked for injection (`tessera.dev/inject`) but were created
//! without it, because the webhook was down or unreachable (failurePolicy
//! Ignore lets them through): a Warning Event on each, once, and a gauge
//! of how many there are now, so that an outage is seen.
//!
//! Pods are watched as metadata only: the webhook marks every pod it
//! handled with `tessera.dev/injected`, so the annotations tell.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::watcher::watcher;
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::{Client, Resource, ResourceExt};

use super::WebhookMetrics;
use super::spec::{self, INJECTED};

pub const REASON: &str = "InjectionMissing";

/// Why a pod lacks the injection it asked for, or None when it is fine.
pub fn missing(
    namespace: &str,
    annotations: &BTreeMap<String, String>,
    excluded: &[String],
) -> Option<String> {
    if excluded.iter().any(|e| e == namespace) || annotations.contains_key(INJECTED) {
        return None;
    }
    match spec::parse(annotations) {
        Ok(None) => None,
        Ok(Some(s)) => Some(format!(
            "the pod asked for the Tessera sidecar ({}: {}) but was created without it: the injection webhook did not answer (failurePolicy Ignore let the pod through), or was not called for this namespace (kube-system, the operator's, or excluded by the tessera.dev/injection label); recreate the pod once the webhook serves",
            spec::INJECT,
            s.engine
        )),
        Err(e) => Some(format!(
            "the pod asked for the Tessera sidecar but was created without it, and its annotations are invalid: {e}"
        )),
    }
}

pub struct Reporter {
    pub client: Client,
    /// Namespaces to watch; empty: all.
    pub namespaces: Vec<String>,
    pub excluded: Vec<String>,
    pub recorder: Recorder,
    pub leading: Arc<AtomicBool>,
    pub metrics: WebhookMetrics,
}

type Key = (String, String);

impl Reporter {
    pub async fn run(self) {
        let scopes: Vec<Option<String>> = if self.namespaces.is_empty() {
            vec![None]
        } else {
            self.namespaces.iter().cloned().map(Some).collect()
        };
        let streams = scopes.into_iter().map(|ns| {
            let api: Api<PartialObjectMeta<Pod>> = match &ns {
                Some(ns) => Api::namespaced(self.client.clone(), ns),
                None => Api::all(self.client.clone()),
            };
            watcher(api, watcher::Config::default().any_semantic())
                .default_backoff()
                .boxed()
        });
        let mut events = futures::stream::select_all(streams);
        // Pods missing their injection now, and those already reported
        // (an Event once per pod, by uid).
        let mut missing_now: HashMap<Key, String> = HashMap::new();
        let mut reported: HashSet<String> = HashSet::new();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(WatchEvent::Apply(p) | WatchEvent::InitApply(p)) => {
                    self.observe(p, &mut missing_now, &mut reported).await
                }
                Ok(WatchEvent::Delete(p)) => {
                    missing_now.remove(&key(&p));
                    if let Some(uid) = p.uid() {
                        reported.remove(&uid);
                    }
                }
                Ok(WatchEvent::Init | WatchEvent::InitDone) => {}
                Err(e) => tracing::warn!(error = %e, "watching pods for missing injection"),
            }
            self.metrics
                .missing
                .set(i64::try_from(missing_now.len()).unwrap_or(i64::MAX));
        }
    }

    async fn observe(
        &self,
        p: PartialObjectMeta<Pod>,
        missing_now: &mut HashMap<Key, String>,
        reported: &mut HashSet<String>,
    ) {
        let k = key(&p);
        let empty = BTreeMap::new();
        let why = missing(
            &k.0,
            p.metadata.annotations.as_ref().unwrap_or(&empty),
            &self.excluded,
        );
        let Some(why) = why else {
            missing_now.remove(&k);
            return;
        };
        missing_now.insert(k.clone(), why.clone());
        let Some(uid) = p.uid() else { return };
        if reported.contains(&uid) || !self.leading.load(Ordering::SeqCst) {
            return;
        }
        tracing::warn!(namespace = %k.0, pod = %k.1, "{why}");
        let event = Event {
            type_: EventType::Warning,
            reason: REASON.into(),
            note: Some(why),
            action: "Inject".into(),
            secondary: None,
        };
        let reference = p.object_ref(&());
        match self.recorder.publish(&event, &reference).await {
            Ok(()) => {
                reported.insert(uid);
                self.metrics.missing_reported.inc();
            }
            Err(e) => tracing::warn!(error = %e, "cannot publish the InjectionMissing event"),
        }
    }
}

fn key(p: &PartialObjectMeta<Pod>) -> Key {
    (p.namespace().unwrap_or_default(), p.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::spec::ann;

    #[test]
    fn only_pods_that_asked_and_were_not_handled_are_missing() {
        let ex = vec!["kube-system".to_string()];
        assert!(missing("app", &ann(&[]), &ex).is_none());
        assert!(missing("app", &ann(&[("tessera.dev/inject", "false")]), &ex).is_none());
        assert!(
            missing(
                "app",
                &ann(&[
                    ("tessera.dev/inject", "redis"),
                    (INJECTED, "tessera-sidecar")
                ]),
                &ex
            )
            .is_none()
        );
        assert!(missing("kube-system", &ann(&[("tessera.dev/inject", "redis")]), &ex).is_none());
        let why = missing("app", &ann(&[("tessera.dev/inject", "redis")]), &ex).unwrap();
        assert!(
            why.contains("tessera.dev/inject: redis") && why.contains("webhook"),
            "{why}"
        );
        let why = missing("app", &ann(&[("tessera.dev/inject", "redix")]), &ex).unwrap();
        assert!(why.contains("unknown engine \"redix\""), "{why}");
    }
}
