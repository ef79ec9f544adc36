//! The reconcile pipeline shared by every kind:
//! `dereference → validate → prepare → build → apply → orchestrate →
//! update_status`.
//!
//! Only `dereference` (the caches), `apply`, `update_status` and the
//! finalizer touch the API. A kind plugs in by implementing [`Managed`].

pub mod apply;
pub mod child;
pub mod finalizer;
pub mod matches;
pub mod observed;
pub mod orchestrate;
pub mod roll;
pub mod status;
#[cfg(test)]
pub(crate) mod tests;

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tessera_api::{CommonSpec, CommonStatus, Invalid};
use tracing::{info, warn};

use crate::runtime::context::Context;
use crate::runtime::error::{Error, Result};
use child::{BuildContext, Desired};
pub use observed::{Component, Observed, RefKind, Reference};
pub use orchestrate::{Note, Orchestrated};

/// A Tessera kind the operator reconciles. Implement it in a module under
/// `kinds/` and add one line to `kinds::KINDS`.
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
    /// The spec with every default resolved: what `build` reads.
    type Valid: Debug + Send + Sync;
    /// What `orchestrate` learns from the engines, for `make_status`.
    type Live: Debug + Default + Send + Sync;

    /// Lower-case kind for metric labels, e.g. "ensemble".
    const METRIC_KIND: &'static str;
    /// Kinds of object this kind references by name (an auth Secret). The
    /// runtime watches them (metadata only) when some kind lists them.
    const REFERENCES: &'static [RefKind] = &[];

    fn common(&self) -> &CommonSpec;
    /// The groups of pods the spec asks for, each with its own selector,
    /// claims and desired count. The first one is the `scale` subresource's.
    fn components(&self) -> Vec<Component>;
    /// Objects in the same namespace this resource reads; a change to one
    /// reconciles it.
    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }
    /// Rules the CRD schema cannot express, and the defaults resolved.
    /// `observed` holds the referenced objects found in the caches.
    fn validate(&self, ctx: &BuildContext, observed: &Observed) -> Result<Self::Valid, Invalid>;
    /// Before `apply`, unless paused: objects the children need that are
    /// created once and then owned by `orchestrate` or the engine, not
    /// rebuilt on every pass (a generated password, a membership list the
    /// engine changes). The default does nothing.
    fn prepare(
        &self,
        valid: &Self::Valid,
        observed: &Observed,
        ctx: &Context,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (valid, observed, ctx);
        async { Ok(()) }
    }
    /// Pure: the desired children of a validated spec.
    fn build(valid: &Self::Valid, ctx: &BuildContext) -> Desired;
    /// After `apply`, unless paused: the engine-aware steps the spec needs
    /// (replace members one at a time, change membership, fail over), at
    /// most one disruptive step per pass, deciding from `observed` and the
    /// engines only, so that a restarted operator resumes where the last
    /// one stopped. The default does nothing.
    fn orchestrate(
        &self,
        valid: &Self::Valid,
        observed: &Observed,
        ctx: &Context,
    ) -> impl Future<Output = Result<Orchestrated<Self::Live>>> + Send {
        let _ = (valid, observed, ctx);
        async { Ok(Orchestrated::default()) }
    }
    fn status(&self) -> Option<&Self::Status>;
    fn common_status(status: &Self::Status) -> &CommonStatus;
    /// The complete status from the generic part, what was observed and
    /// what the engines said (default when paused or invalid).
    fn make_status(
        &self,
        common: CommonStatus,
        observed: &Observed,
        live: &Self::Live,
    ) -> Self::Status;
}

/// How soon to look again while some pod is not ready.
const UNREADY_REQUEUE: std::time::Duration = std::time::Duration::from_secs(30);

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

    let observed = observed::dereference(obj, &ctx.stores);
    let valid = obj.validate(&ctx.build, &observed);
    let paused = obj.common().paused;
    let mut applied = apply::Report::default();
    let mut orchestrated = Orchestrated::default();
    let invalid = match valid {
        Err(e) => {
            ctx.metrics
                .errors
                .with_label_values(&[K::METRIC_KIND, e.reason()])
                .inc();
            info!(kind = K::METRIC_KIND, name = %obj.name_any(), reason = e.reason(), "invalid spec");
            Some(e)
        }
        Ok(_) if paused => None,
        Ok(valid) => {
            obj.prepare(&valid, &observed, ctx).await?;
            let desired = K::build(&valid, &ctx.build);
            applied = apply::apply(obj, desired, ctx).await?;
            orchestrated = obj.orchestrate(&valid, &observed, ctx).await?;
            None
        }
    };
    // A pod that is not ready may be failing in a way status should say
    // (its termination message): its StatefulSet's status, which triggers
    // reconciles, does not change while it crash-loops.
    let unready = observed.pods().iter().any(|p| status::unready(p));
    let requeue = orchestrated
        .requeue
        .into_iter()
        .chain(unready.then_some(UNREADY_REQUEUE))
        .fold(ctx.resync, std::cmp::min);
    status::update(
        obj,
        ctx,
        &observed,
        invalid.as_ref(),
        &applied,
        orchestrated,
    )
    .await?;
    Ok(Outcome {
        action: Action::requeue(requeue),
        invalid: invalid.is_some(),
    })
}

/// The condition of `type_`, if set.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}
