//! `orchestrate`: the engine-aware step after `apply`.
//!
//! `apply` makes the children match the spec; some changes need more than
//! that to take effect safely: pods replaced one at a time once the engine
//! can lose a member, membership changed through the engine, a primary
//! promoted. A kind does that work in [`super::Managed::orchestrate`] and
//! reports it here, so that status and Events say what is happening.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::Event;

use crate::runtime::context::Context;
use crate::runtime::error::Result;

/// A condition's reason and message, as a kind reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// CamelCase, e.g. "RollingUpdate".
    pub reason: &'static str,
    /// For users: names the member and what the operator waits for.
    pub message: String,
}

impl Note {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Note {
        Note {
            reason,
            message: message.into(),
        }
    }
}

/// What one `orchestrate` pass found and did. (Not `Debug`: kube's `Event`
/// is not.)
#[derive(Default)]
pub struct Orchestrated<L> {
    /// What the engines said (member roles, a shard map): `make_status`
    /// reads it.
    pub live: L,
    /// Engine-level work under way: `Progressing=True` with this reason,
    /// and `Ready` does not claim the desired spec meanwhile.
    pub progress: Option<Note>,
    /// Work that cannot go on without help (a member that did not come
    /// back): `Degraded=True` with this reason.
    pub degraded: Option<Note>,
    /// What was done this pass (a member replaced), one Event each.
    pub events: Vec<Event>,
    /// Come back sooner than the resync period, to take the next step.
    pub requeue: Option<Duration>,
}

impl<L: Default> Orchestrated<L> {
    /// Nothing to do beyond `apply`.
    pub fn settled(live: L) -> Orchestrated<L> {
        Orchestrated {
            live,
            ..Orchestrated::default()
        }
    }
}

/// Sets a StatefulSet's `replicas` (a merge patch). For the steps that
/// move a size `build` keeps as it finds it (a scale through the engine),
/// so that `apply` leaves it there.
pub async fn set_replicas(
    ctx: &Context,
    namespace: &str,
    name: &str,
    replicas: i32,
    kind: &str,
) -> Result<()> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({"spec": {"replicas": replicas}})),
    )
    .await?;
    ctx.metrics.write(kind, "patch", "statefulsets");
    Ok(())
}

/// Deletes one member's pod so that its StatefulSet (OnDelete) recreates it
/// on the new revision. Only that incarnation: the uid precondition keeps a
/// decision made on a cached pod from deleting the pod that replaced it.
pub async fn delete_pod(api: &Api<Pod>, pod: &Pod) -> Result<()> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(()),
        // Already gone or replaced: the next pass sees the new pod.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
