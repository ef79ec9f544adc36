//! Pods that asked for injection (`tessera.dev/inject`) but were created
//! without it, because the webhook was down or unreachable (failurePolicy
//! Ignore lets them through): a Warning Event on each, once, and a gauge
//! of how many there are now, so that an outage is seen.
//!
//! Pods are watched as metadata only: the webhook marks every pod it
//! handled with `tessera.dev/injected`, so the annotations tell. Namespaces
//! are watched as metadata too: a pod in a namespace that the webhook's
//! selector leaves out (`tessera.dev/injection`) was never meant to be
//! injected, and is not reported.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Pod};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::watcher::watcher;
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::{Client, Resource, ResourceExt};

use super::WebhookMetrics;
use super::config::Selection;
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
            "the pod asked for the Tessera sidecar ({}: {}) but was created without it: the injection webhook did not answer (failurePolicy Ignore let the pod through), or the namespace's tessera.dev/injection label left it out when the pod was created; recreate the pod once the webhook serves",
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
    /// How the webhook's namespace selector reads `tessera.dev/injection`:
    /// a pod in a namespace it does not select was never sent to the
    /// webhook on purpose, and is not reported.
    pub selection: Selection,
    pub recorder: Recorder,
    pub leading: Arc<AtomicBool>,
    pub metrics: WebhookMetrics,
}

type Key = (String, String);

/// A pod that asked for injection and lacks it, whatever its namespace says.
#[derive(Clone, Debug)]
struct Candidate {
    uid: Option<String>,
    why: String,
    reference: ObjectReference,
}

/// What the reporter knows: candidates, namespaces' labels, and which pods
/// already got their Event. Pods and namespaces arrive on two watches in
/// any order, so a candidate whose namespace is not known yet waits for it.
#[derive(Default)]
struct State {
    candidates: HashMap<Key, Candidate>,
    labels: HashMap<String, BTreeMap<String, String>>,
    /// Pod uids with an Event published: once per pod.
    reported: HashSet<String>,
}

impl State {
    fn selected(&self, selection: Selection, namespace: &str) -> bool {
        self.labels
            .get(namespace)
            .is_some_and(|l| selection.selects(l))
    }

    /// Candidates in namespaces the webhook selects: missing injections.
    fn missing(&self, selection: Selection) -> impl Iterator<Item = (&Key, &Candidate)> {
        self.candidates
            .iter()
            .filter(move |((ns, _), _)| self.selected(selection, ns))
    }

    /// Missing injections among the pods `within` takes that have no
    /// Event yet.
    fn unreported(
        &self,
        selection: Selection,
        within: impl Fn(&Key) -> bool,
    ) -> Vec<(Key, Candidate)> {
        self.missing(selection)
            .filter(|(k, c)| {
                within(k) && c.uid.as_ref().is_some_and(|u| !self.reported.contains(u))
            })
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect()
    }

    fn pod(&mut self, p: &PartialObjectMeta<Pod>, excluded: &[String]) {
        let k = key(p);
        let empty = BTreeMap::new();
        let annotations = p.metadata.annotations.as_ref().unwrap_or(&empty);
        match missing(&k.0, annotations, excluded) {
            Some(why) => {
                let c = Candidate {
                    uid: p.uid(),
                    why,
                    reference: p.object_ref(&()),
                };
                self.candidates.insert(k, c);
            }
            None => {
                self.candidates.remove(&k);
            }
        }
    }

    fn pod_gone(&mut self, p: &PartialObjectMeta<Pod>) {
        self.candidates.remove(&key(p));
        if let Some(uid) = p.uid() {
            self.reported.remove(&uid);
        }
    }

    fn namespace(&mut self, n: &PartialObjectMeta<Namespace>) {
        self.labels
            .insert(n.name_any(), n.metadata.labels.clone().unwrap_or_default());
    }

    fn namespace_gone(&mut self, n: &PartialObjectMeta<Namespace>) {
        self.labels.remove(&n.name_any());
    }
}

enum Seen {
    Pod(watcher::Result<WatchEvent<PartialObjectMeta<Pod>>>),
    Namespace(watcher::Result<WatchEvent<PartialObjectMeta<Namespace>>>),
}

impl Reporter {
    pub async fn run(self) {
        let scopes: Vec<Option<String>> = if self.namespaces.is_empty() {
            vec![None]
        } else {
            self.namespaces.iter().cloned().map(Some).collect()
        };
        let pods = scopes.iter().map(|ns| {
            let api: Api<PartialObjectMeta<Pod>> = match ns {
                Some(ns) => Api::namespaced(self.client.clone(), ns),
                None => Api::all(self.client.clone()),
            };
            watcher(api, watcher::Config::default().any_semantic())
                .default_backoff()
                .map(Seen::Pod)
                .boxed()
        });
        // Namespaces are cluster-scoped: all of them, or the watched ones
        // by name.
        let namespaces = scopes.iter().map(|ns| {
            let api: Api<PartialObjectMeta<Namespace>> = Api::all(self.client.clone());
            let mut config = watcher::Config::default().any_semantic();
            if let Some(ns) = ns {
                config = config.fields(&format!("metadata.name={ns}"));
            }
            watcher(api, config)
                .default_backoff()
                .map(Seen::Namespace)
                .boxed()
        });
        let mut events = futures::stream::select_all(pods.chain(namespaces));
        let mut state = State::default();
        while let Some(ev) = events.next().await {
            // The pods this event may have made due for an Event: the pod
            // itself, or every pod of a namespace whose labels changed.
            // Only those are (re)tried, so a Recorder that keeps failing
            // costs one attempt per change of the pod, not one per event
            // of the whole cluster.
            let touched: Option<(String, Option<String>)> = match ev {
                Seen::Pod(Ok(WatchEvent::Apply(p) | WatchEvent::InitApply(p))) => {
                    state.pod(&p, &self.excluded);
                    let (ns, name) = key(&p);
                    Some((ns, Some(name)))
                }
                Seen::Pod(Ok(WatchEvent::Delete(p))) => {
                    state.pod_gone(&p);
                    None
                }
                Seen::Namespace(Ok(WatchEvent::Apply(n) | WatchEvent::InitApply(n))) => {
                    state.namespace(&n);
                    Some((n.name_any(), None))
                }
                Seen::Namespace(Ok(WatchEvent::Delete(n))) => {
                    state.namespace_gone(&n);
                    None
                }
                Seen::Pod(Ok(WatchEvent::Init | WatchEvent::InitDone))
                | Seen::Namespace(Ok(WatchEvent::Init | WatchEvent::InitDone)) => None,
                Seen::Pod(Err(e)) => {
                    tracing::warn!(error = %e, "watching pods for missing injection");
                    None
                }
                Seen::Namespace(Err(e)) => {
                    tracing::warn!(error = %e, "watching namespaces for their injection label");
                    None
                }
            };
            let now = state.missing(self.selection).count();
            self.metrics
                .missing
                .set(i64::try_from(now).unwrap_or(i64::MAX));
            if let Some((ns, pod)) = touched
                && self.leading.load(Ordering::SeqCst)
            {
                let due = state.unreported(self.selection, |(n, p)| {
                    *n == ns && pod.as_ref().is_none_or(|want| want == p)
                });
                for (k, c) in due {
                    if self.report(&k, &c).await {
                        state.reported.extend(c.uid);
                    }
                }
            }
        }
    }

    /// Publishes the Warning Event; true when it was accepted.
    async fn report(&self, k: &Key, c: &Candidate) -> bool {
        tracing::warn!(namespace = %k.0, pod = %k.1, "{}", c.why);
        let event = Event {
            type_: EventType::Warning,
            reason: REASON.into(),
            note: Some(c.why.clone()),
            action: "Inject".into(),
            secondary: None,
        };
        match self.recorder.publish(&event, &c.reference).await {
            Ok(()) => {
                self.metrics.missing_reported.inc();
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot publish the InjectionMissing event");
                false
            }
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

    fn pod(ns: &str, name: &str, inject: Option<&str>) -> PartialObjectMeta<Pod> {
        let mut p = PartialObjectMeta::<Pod>::default();
        p.metadata.namespace = Some(ns.into());
        p.metadata.name = Some(name.into());
        p.metadata.uid = Some(format!("uid-{ns}-{name}"));
        p.metadata.annotations = inject.map(|e| ann(&[("tessera.dev/inject", e)]));
        p
    }

    fn namespace(name: &str, label: Option<&str>) -> PartialObjectMeta<Namespace> {
        let mut n = PartialObjectMeta::<Namespace>::default();
        n.metadata.name = Some(name.into());
        n.metadata.labels = label.map(|v| {
            [(
                crate::webhook::config::NAMESPACE_LABEL.to_string(),
                v.to_string(),
            )]
            .into()
        });
        n
    }

    fn missing_names(s: &State, selection: Selection) -> Vec<String> {
        let mut v: Vec<String> = s.missing(selection).map(|(k, _)| k.1.clone()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_pod_waits_for_its_namespace_and_opted_out_namespaces_are_not_reported() {
        let mut s = State::default();
        s.pod(&pod("app", "a", Some("redis")), &[]);
        s.pod(&pod("quiet", "b", Some("redis")), &[]);
        s.pod(&pod("app", "plain", None), &[]);
        // Namespaces not seen yet: nothing is claimed either way.
        assert!(missing_names(&s, Selection::OptOut).is_empty());
        s.namespace(&namespace("app", None));
        s.namespace(&namespace("quiet", Some("disabled")));
        assert_eq!(missing_names(&s, Selection::OptOut), ["a"]);
        assert_eq!(s.unreported(Selection::OptOut, |_| true).len(), 1);
        // Only the pods an event touched are tried.
        assert!(
            s.unreported(Selection::OptOut, |(ns, _)| ns == "quiet")
                .is_empty()
        );
        // Opt-in: only a namespace labelled enabled counts.
        assert!(missing_names(&s, Selection::OptIn).is_empty());
        s.namespace(&namespace("quiet", Some("enabled")));
        assert_eq!(missing_names(&s, Selection::OptIn), ["b"]);
        assert_eq!(missing_names(&s, Selection::OptOut), ["a", "b"]);
    }

    #[test]
    fn a_reported_pod_is_reported_once_and_forgotten_when_deleted() {
        let mut s = State::default();
        s.namespace(&namespace("app", None));
        let a = pod("app", "a", Some("redis"));
        s.pod(&a, &[]);
        let due = s.unreported(Selection::OptOut, |_| true);
        assert_eq!(due.len(), 1);
        s.reported.extend(due[0].1.uid.clone());
        assert!(s.unreported(Selection::OptOut, |_| true).is_empty());
        assert_eq!(missing_names(&s, Selection::OptOut), ["a"]);
        // Injected on a later update (reinvocation), then deleted.
        let mut injected = a.clone();
        injected
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(INJECTED.into(), "tessera-sidecar".into());
        s.pod(&injected, &[]);
        assert!(missing_names(&s, Selection::OptOut).is_empty());
        s.pod(&a, &[]);
        s.pod_gone(&a);
        assert!(missing_names(&s, Selection::OptOut).is_empty());
        assert!(s.reported.is_empty());
        // A deleted namespace is unknown again.
        s.pod(&pod("app", "c", Some("redis")), &[]);
        s.namespace_gone(&namespace("app", None));
        assert!(missing_names(&s, Selection::OptOut).is_empty());
    }
}
