//! What every reconcile gets: the client, caches, metrics and settings.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::PartialObjectMeta;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;

use crate::reconcile::child::BuildContext;
use crate::runtime::metrics::Metrics;
use crate::runtime::secret_values::SecretValues;

/// Caches of the children, filled by the watches that also trigger
/// reconciles, so that a steady-state reconcile reads nothing from the API.
/// One set per watched namespace, shared by every kind.
#[derive(Clone)]
pub struct Stores {
    pub statefulsets: Store<StatefulSet>,
    pub services: Store<Service>,
    pub configmaps: Store<ConfigMap>,
    pub pdbs: Store<PodDisruptionBudget>,
    pub pods: Store<Pod>,
    /// Metadata of every Secret, when some kind references Secrets.
    pub secrets: Option<Store<PartialObjectMeta<Secret>>>,
    /// Metadata of every ConfigMap, when some kind references ConfigMaps.
    pub configmap_refs: Option<Store<PartialObjectMeta<ConfigMap>>>,
}

impl Stores {
    /// Waits until every cache holds its first complete list. Nothing else
    /// may wait on these stores: a store's readiness wakes only its last
    /// waiter.
    pub async fn wait_until_ready(&self) {
        let _ = self.statefulsets.wait_until_ready().await;
        let _ = self.services.wait_until_ready().await;
        let _ = self.configmaps.wait_until_ready().await;
        let _ = self.pdbs.wait_until_ready().await;
        let _ = self.pods.wait_until_ready().await;
        if let Some(s) = &self.secrets {
            let _ = s.wait_until_ready().await;
        }
        if let Some(s) = &self.configmap_refs {
            let _ = s.wait_until_ready().await;
        }
    }
}

pub struct Context {
    pub client: Client,
    pub build: BuildContext,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub stores: Stores,
    /// How often an unchanged object is reconciled again.
    pub resync: Duration,
    /// False once this process lost the leader Lease: no more writes.
    pub leading: Arc<AtomicBool>,
    /// True once every cache holds its initial list.
    pub synced: Arc<AtomicBool>,
    /// Consecutive failures per object, for exponential backoff.
    pub failures: Backoff,
    /// Values read from referenced Secrets, by the version they were read at.
    pub secret_values: SecretValues,
}

/// Per-object exponential backoff: 1s, 2s, 4s … capped at 5 min.
#[derive(Default)]
pub struct Backoff(Mutex<HashMap<String, u32>>);

impl Backoff {
    /// Records a failure of `key` and returns how long to wait.
    pub fn fail(&self, key: &str) -> Duration {
        let mut failures = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let secs = 1u64
            .checked_shl(n.saturating_sub(1).min(16))
            .unwrap_or(u64::MAX);
        Duration::from_secs(secs.min(300))
    }

    /// A success: the next failure starts again at 1s.
    pub fn reset(&self, key: &str) {
        let mut failures = self.0.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(key);
    }
}

impl Context {
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    pub fn backoff(&self, key: &str) -> Duration {
        self.failures.fail(key)
    }

    pub fn reset_backoff(&self, key: &str) {
        self.failures.reset(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets_per_object() {
        let b = Backoff::default();
        let secs: Vec<u64> = (0..11).map(|_| b.fail("ns/a").as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(
            b.fail("ns/b").as_secs(),
            1,
            "objects back off independently"
        );
        b.reset("ns/a");
        assert_eq!(b.fail("ns/a").as_secs(), 1);
    }
}
