//! `orchestrate` for Ensembles: ask the engines for their members' roles,
//! then take the roll's next step (see [`super::roll`]) or, once every
//! member runs the latest revision, the next membership change (see
//! [`super::scale`]).
//!
//! The caches may lag the API server by a watch event: a pod deleted a
//! moment ago can still look ready there. Before it deletes anything, this
//! step therefore reads the StatefulSet and the pods from the API server
//! itself, so that two members are never down at once because of a stale
//! cache. It reads them only while the caches show work to do.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::ObjectRef;
use tessera_api::EnsembleEngine;

use super::members::{self, Live};
use super::roll::{self, Input, Plan, PodFacts};
use super::validate::ValidEnsemble;
use super::{membership, reconfigure, scale};
pub use crate::reconcile::roll::ordinal;
use crate::reconcile::roll::{
    ROLL_REQUEUE, STUCK_REQUEUE, pod_facts, replace_member, revision, update_revision,
};
use crate::reconcile::{Note, Observed, Orchestrated};
use crate::runtime::context::Context;
use crate::runtime::error::{Error, Result};

pub async fn orchestrate(
    valid: &ValidEnsemble,
    observed: &Observed,
    ctx: &Context,
) -> Result<Orchestrated<Live>> {
    let cached: Vec<&Arc<Pod>> = observed.pods();
    let live = members::observe(valid.engine, &cached).await;

    let cached_sts = observed
        .components
        .iter()
        .flat_map(|c| &c.statefulsets)
        .find(|s| s.name_any() == valid.name);
    let Some(cached_sts) = cached_sts else {
        return Ok(Orchestrated::settled(live));
    };
    let cached_revision = update_revision(cached_sts);
    let outdated_in_cache = cached
        .iter()
        .any(|p| revision(p) != cached_revision.as_deref());
    let membership = live.membership();
    let wanted: BTreeSet<i32> = (0..valid.replicas).collect();
    let scale_in_cache = valid.statefulset_replicas != valid.replicas
        || membership
            .as_ref()
            .is_some_and(|m| m.voters != wanted || !m.learners.is_empty());
    if !outdated_in_cache && !scale_in_cache {
        if valid.engine == EnsembleEngine::Etcd && live.leader().is_some() {
            reconfigure::settle_cluster_state(valid, ctx).await?;
        }
        return Ok(Orchestrated::settled(live));
    }

    // Something to do: decide from the API server's view.
    let ns = valid.namespace.as_str();
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let sts = sts_api
        .list(&ListParams::default().fields(&format!("metadata.name={}", valid.name)))
        .await?;
    ctx.metrics.read("ensemble", "list", "statefulsets");
    let Some(sts) = sts.items.into_iter().next() else {
        return Ok(Orchestrated::settled(live));
    };
    let selector = cached_sts
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .ok_or(Error::MissingField("spec.selector.matchLabels"))?
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods = pod_api
        .list(&ListParams::default().labels(&selector))
        .await?;
    ctx.metrics.read("ensemble", "list", "pods");
    let now = Timestamp::now();
    let facts: Vec<PodFacts> = pods.items.iter().map(|p| pod_facts(p, now)).collect();
    let update_revision = update_revision(&sts);
    let sts_replicas = sts
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(valid.statefulset_replicas);

    // The roll covers the members the StatefulSet runs now; a scale waits
    // for it, so that one member at most is ever away.
    let step = roll::plan(&Input {
        engine: valid.engine,
        desired: sts_replicas,
        update_revision: update_revision.as_deref(),
        pods: &facts,
        live: &live,
        bound: roll::MEMBER_READY_BOUND,
    });
    let mut out = Orchestrated::settled(live);
    match step {
        Plan::Settled => {
            let step = scale::plan(&scale::Input {
                engine: valid.engine,
                desired: valid.replicas,
                statefulset: sts_replicas,
                listed: listed(valid, ctx),
                pods: &facts,
                live: &out.live,
                membership: membership.as_ref(),
                bound: roll::MEMBER_READY_BOUND,
            });
            reconfigure::take(valid, step, &pods.items, &mut out, ctx).await?;
        }
        Plan::Wait(progress) => {
            out.progress = Some(scale_waits(progress, sts_replicas, valid.replicas));
            out.requeue = Some(ROLL_REQUEUE);
        }
        Plan::Stuck { progress, degraded } => {
            out.progress = Some(progress);
            out.degraded = Some(degraded);
            out.requeue = Some(STUCK_REQUEUE);
        }
        Plan::Replace { pod, progress } => {
            let role = out.live.role(&pod).map_or("role unknown", |r| r.as_str());
            let why = format!(
                "Deleted {pod} ({role}) so that it restarts on revision {}",
                update_revision.as_deref().unwrap_or("unknown")
            );
            let event = replace_member(&pod_api, &pods.items, &pod, why, "ensemble", ctx).await?;
            out.events.push(event);
            out.progress = Some(scale_waits(progress, sts_replicas, valid.replicas));
            out.requeue = Some(ROLL_REQUEUE);
        }
    }
    Ok(out)
}

/// The members the membership ConfigMap lists, from the cache (none
/// before `prepare` made it).
fn listed(valid: &ValidEnsemble, ctx: &Context) -> i32 {
    let name = membership::configmap_name(&valid.name);
    ctx.stores
        .configmaps
        .get(&ObjectRef::new(&name).within(&valid.namespace))
        .and_then(|c| c.data.as_ref().map(|d| membership::listed(valid.engine, d)))
        .map_or(0, |n| i32::try_from(n).unwrap_or(i32::MAX))
}

/// A roll's note, saying that a scale waits for it.
fn scale_waits(progress: Note, members: i32, desired: i32) -> Note {
    if members == desired {
        return progress;
    }
    Note {
        message: format!(
            "{}; scaling from {members} to {desired} members waits for the roll",
            progress.message
        ),
        ..progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use kube::api::ObjectMeta;

    #[test]
    fn ordinals_are_the_last_dash_number() {
        assert_eq!(ordinal("zk-2"), Some(2));
        assert_eq!(ordinal("my-etcd-10"), Some(10));
        assert_eq!(ordinal("zk"), None);
        assert_eq!(ordinal("zk-x"), None);
    }

    #[test]
    fn a_revision_is_trusted_only_once_the_controller_saw_the_spec() {
        let mut sts = StatefulSet {
            metadata: ObjectMeta {
                generation: Some(3),
                ..ObjectMeta::default()
            },
            status: Some(StatefulSetStatus {
                observed_generation: Some(2),
                update_revision: Some("zk-abc".into()),
                ..StatefulSetStatus::default()
            }),
            ..StatefulSet::default()
        };
        assert_eq!(update_revision(&sts), None);
        sts.status.as_mut().unwrap().observed_generation = Some(3);
        assert_eq!(update_revision(&sts).as_deref(), Some("zk-abc"));
        sts.status = None;
        assert_eq!(update_revision(&sts), None);
    }
}
