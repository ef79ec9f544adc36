//! The reconcile pipeline shared by every kind:
//! `dereference → validate → build → apply → update_status`.
//!
//! Only `dereference` (the caches), `apply`, `update_status` and the
//! finalizer touch the API. A kind plugs in by implementing [`Managed`].

pub mod apply;
pub mod child;
pub mod finalizer;
pub mod matches;
pub mod status;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tessera_api::{CommonSpec, CommonStatus, Invalid};
use tracing::{info, warn};

use crate::kinds::shared::Identity;
use crate::runtime::context::Context;
use crate::runtime::error::{Error, Result};
use child::{BuildContext, Desired};

/// A Tessera kind the operator reconciles.
pub trait Managed:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    type Status: Serialize + Clone + PartialEq + Debug + Send + Sync;

    /// Lower-case kind for metric labels, e.g. "ensemble".
    const METRIC_KIND: &'static str;

    fn common(&self) -> &CommonSpec;
    /// Labels of this resource's children and pods.
    fn identity(&self) -> Identity<'_>;
    /// The number of members the spec asks for.
    fn desired_replicas(&self) -> i32;
    /// Rules the CRD schema cannot express.
    fn validate(&self) -> Result<(), Invalid>;
    /// Pure: the desired children.
    fn build(&self, ctx: &BuildContext) -> Desired;
    fn status(&self) -> Option<&Self::Status>;
    fn common_status(status: &Self::Status) -> &CommonStatus;
    /// The complete status from the generic part and what was observed.
    fn make_status(&self, common: CommonStatus, observed: &Observed) -> Self::Status;
}

/// The children as the caches see them.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub statefulsets: Vec<Arc<StatefulSet>>,
    /// This resource's pods, sorted by name.
    pub pods: Vec<Arc<Pod>>,
}

/// `dereference`: this resource's StatefulSets and pods, from the caches.
fn dereference<K: Managed>(obj: &K, ctx: &Context) -> Observed {
    let ns = obj.namespace();
    let uid = obj.uid();
    let owned = |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        refs.iter().any(|r| Some(&r.uid) == uid.as_ref())
    };
    let statefulsets = ctx
        .stores
        .statefulsets
        .state()
        .into_iter()
        .filter(|s| s.namespace() == ns && owned(s.owner_references()))
        .collect();
    let selector = obj.identity().selector();
    let mut pods: Vec<Arc<Pod>> = ctx
        .stores
        .pods
        .state()
        .into_iter()
        .filter(|p| {
            p.namespace() == ns && selector.iter().all(|(k, v)| p.labels().get(k) == Some(v))
        })
        .collect();
    pods.sort_by_key(|p| p.name_any());
    Observed { statefulsets, pods }
}

/// One reconcile of one object. Invalid specs end in `Ok`: they are reported
/// in status and an Event, and wait for the next change instead of retrying.
pub async fn reconcile<K: Managed>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    let result = run_pipeline(obj.as_ref(), &ctx).await;
    ctx.metrics
        .duration
        .with_label_values(&[K::METRIC_KIND])
        .observe(start.elapsed().as_secs_f64());
    match &result {
        Ok(outcome) => {
            ctx.reset_backoff(&key);
            let label = if outcome.invalid {
                "invalid"
            } else {
                "success"
            };
            ctx.metrics
                .reconciles
                .with_label_values(&[K::METRIC_KIND, label])
                .inc();
        }
        Err(e) => {
            ctx.metrics
                .reconciles
                .with_label_values(&[K::METRIC_KIND, "error"])
                .inc();
            ctx.metrics
                .errors
                .with_label_values(&[K::METRIC_KIND, e.metric_label()])
                .inc();
            // Make a stuck resource explain itself in `kubectl describe`
            // (a missing RBAC verb, a conflict). The Recorder folds repeats
            // into one Event series. A standby must not write at all.
            if !matches!(e, Error::NotLeader) {
                let event = kube::runtime::events::Event {
                    type_: kube::runtime::events::EventType::Warning,
                    reason: "ReconcileError".into(),
                    note: Some(e.to_string()),
                    action: "Reconcile".into(),
                    secondary: None,
                };
                status::publish(obj.as_ref(), &ctx, event).await;
            }
        }
    }
    result.map(|o| o.action)
}

/// Transient errors: retry with exponential backoff per object.
pub fn error_policy<K: Managed>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    let delay = ctx.backoff(&key);
    warn!(object = %key, kind = K::METRIC_KIND, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

struct Outcome {
    action: Action,
    invalid: bool,
}

async fn run_pipeline<K: Managed>(obj: &K, ctx: &Context) -> Result<Outcome> {
    if !ctx.is_leading() {
        return Err(Error::NotLeader);
    }
    if !ctx.is_synced() {
        return Ok(Outcome {
            action: Action::requeue(std::time::Duration::from_secs(1)),
            invalid: false,
        });
    }
    if obj.meta().deletion_timestamp.is_some() {
        finalizer::cleanup(obj, ctx).await?;
        return Ok(Outcome {
            action: Action::await_change(),
            invalid: false,
        });
    }
    finalizer::ensure(obj, ctx).await?;

    let observed = dereference(obj, ctx);
    let invalid = obj.validate().err();
    let paused = obj.common().paused;
    let mut applied = apply::Report::default();
    match &invalid {
        Some(e) => {
            ctx.metrics
                .errors
                .with_label_values(&[K::METRIC_KIND, e.reason()])
                .inc();
            info!(kind = K::METRIC_KIND, name = %obj.name_any(), reason = e.reason(), "invalid spec");
        }
        None if paused => {}
        None => {
            let desired = obj.build(&ctx.build);
            applied = apply::apply(obj, desired, ctx).await?;
        }
    }
    status::update(obj, ctx, &observed, invalid.as_ref(), &applied).await?;
    Ok(Outcome {
        action: Action::requeue(ctx.resync),
        invalid: invalid.is_some(),
    })
}

/// The condition of `type_`, if set.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}
