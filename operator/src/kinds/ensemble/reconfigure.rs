//! The engine calls and API writes of each scale step that
//! [`super::scale::plan`] chooses: `reconfig` through ZooKeeper's super
//! user, etcd's member API, the membership ConfigMap and the StatefulSet's
//! `replicas`. Each is idempotent, so that a step repeated by an operator
//! restarted halfway does no harm.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, PersistentVolumeClaim, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use tessera_api::EnsembleEngine;
use tessera_clients::etcd;
use tessera_clients::zookeeper::session::Session;
use tracing::info;

use super::build::{DATA_VOLUME, Members};
use super::members::{Live, peer_url_ordinal};
use super::membership::{self, ClusterState};
use super::scale::Step;
use super::validate::ValidEnsemble;
use super::zookeeper;
use crate::reconcile::Orchestrated;
use crate::reconcile::orchestrate::set_replicas;
use crate::runtime::context::Context;
use crate::runtime::error::{Error, Result};

/// A membership change waits for the engine to commit it.
const ENGINE_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Come back soon: the next step waits on a pod or the engine.
const SCALE_REQUEUE: Duration = Duration::from_secs(2);
/// A stopped scale needs a person.
const STUCK_REQUEUE: Duration = Duration::from_secs(30);

/// Takes `step`, and says so in `out` (progress, Events, requeue).
pub async fn take(
    valid: &ValidEnsemble,
    step: Step,
    pods: &[Pod],
    out: &mut Orchestrated<Live>,
    ctx: &Context,
) -> Result<()> {
    let members = |replicas: i32| Members {
        name: &valid.name,
        namespace: &valid.namespace,
        replicas,
    };
    let pod_name = |o: i32| membership::pod_name(&valid.name, o);
    let step_recorded = step.recorded();
    if let Some((reason, ordinal)) = step_recorded {
        // Before the call: an operator that dies between the engine's
        // change and its Event leaves this line as the only record.
        info!(
            ensemble = %valid.name,
            namespace = %valid.namespace,
            reason,
            member = %pod_name(ordinal),
            "taking a membership step"
        );
    }
    let (progress, note) = match step {
        Step::Settled => return Ok(()),
        Step::Wait(note) => {
            out.progress = Some(note);
            out.requeue = Some(SCALE_REQUEUE);
            return Ok(());
        }
        Step::Stuck { progress, degraded } => {
            out.progress = Some(progress);
            out.degraded = Some(degraded);
            out.requeue = Some(STUCK_REQUEUE);
            return Ok(());
        }
        Step::Grow { to, progress } => {
            write_members(valid, to, ctx).await?;
            set_replicas(ctx, &valid.namespace, &valid.name, to, "ensemble").await?;
            let note = format!(
                "Scaled the StatefulSet to {to} pods (up to {})",
                pod_name(to - 1)
            );
            (progress, note)
        }
        Step::Join { ordinal, progress } => {
            let leader = etcd_leader(pods, &out.live)?;
            let peer = membership::etcd_peer_url(&members(ordinal + 1), ordinal);
            if etcd_id(&leader, ordinal).await?.is_none() {
                // A claim left by an earlier member of this ordinal holds
                // the data of a removed member, which etcd refuses to start.
                delete_claim(valid, ordinal, ctx).await?;
                leader
                    .member_add(std::slice::from_ref(&peer), true)
                    .await
                    .map_err(Error::membership("etcd"))?;
            }
            write_members(valid, ordinal + 1, ctx).await?;
            set_replicas(ctx, &valid.namespace, &valid.name, ordinal + 1, "ensemble").await?;
            let note = format!("Added {} ({peer}) as a learner", pod_name(ordinal));
            (progress, note)
        }
        Step::Add { ordinal, progress } => {
            let server = membership::zookeeper_server(&members(ordinal + 1), ordinal);
            let mut session = zookeeper_admin(valid, pods, &out.live, ctx).await?;
            session
                .reconfig(Some(&server), None, None)
                .await
                .map_err(Error::membership("zookeeper"))?;
            let note = format!("Added {} as a voting member by reconfig", pod_name(ordinal));
            (progress, note)
        }
        Step::Promote { ordinal, progress } => {
            let leader = etcd_leader(pods, &out.live)?;
            if let Some(id) = etcd_id(&leader, ordinal).await? {
                leader
                    .member_promote(id)
                    .await
                    .map_err(Error::membership("etcd"))?;
            }
            let note = format!("Promoted learner {} to a voting member", pod_name(ordinal));
            (progress, note)
        }
        Step::Remove { ordinal, progress } => {
            match valid.engine {
                EnsembleEngine::Zookeeper => {
                    let mut session = zookeeper_admin(valid, pods, &out.live, ctx).await?;
                    session
                        .reconfig(None, Some(&(ordinal + 1).to_string()), None)
                        .await
                        .map_err(Error::membership("zookeeper"))?;
                }
                EnsembleEngine::Etcd => {
                    let leader = etcd_leader(pods, &out.live)?;
                    if let Some(id) = etcd_id(&leader, ordinal).await? {
                        leader
                            .member_remove(id)
                            .await
                            .map_err(Error::membership("etcd"))?;
                    }
                }
            }
            let note = format!("Removed {} from the ensemble's members", pod_name(ordinal));
            (progress, note)
        }
        Step::Shrink { ordinal, progress } => {
            write_members(valid, ordinal, ctx).await?;
            // The claim is deleted before the StatefulSet shrinks: it goes
            // once its pod has (the claim-protection finalizer holds it
            // until then), and an operator stopped between the two calls
            // repeats this step (the StatefulSet is still too large), where
            // the other order would leave the claim behind for good.
            let claim = if valid.delete_claims {
                delete_claim(valid, ordinal, ctx).await?;
                "its claim is deleted (storage.deleteClaimsOnDelete)"
            } else {
                "its claim is kept"
            };
            set_replicas(ctx, &valid.namespace, &valid.name, ordinal, "ensemble").await?;
            let note = format!(
                "Scaled the StatefulSet to {ordinal}: {} is no member any more; {claim}",
                pod_name(ordinal)
            );
            (progress, note)
        }
    };
    let Some((reason, ordinal)) = step_recorded else {
        return Ok(());
    };
    out.events.push(Event {
        type_: EventType::Normal,
        reason: reason.into(),
        note: Some(note),
        action: "Scale".into(),
        // The member's pod (by name: it may not exist yet), so that the
        // Recorder does not fold the steps of two members into one series.
        secondary: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod_name(ordinal)),
            namespace: Some(valid.namespace.clone()),
            ..ObjectReference::default()
        }),
    });
    out.progress = Some(progress);
    out.requeue = Some(SCALE_REQUEUE);
    Ok(())
}

/// Once an etcd cluster has a leader, members that start with an empty
/// data directory must join it, never bootstrap a second cluster: the
/// membership ConfigMap says `existing` from then on.
pub async fn settle_cluster_state(valid: &ValidEnsemble, ctx: &Context) -> Result<()> {
    let name = membership::configmap_name(&valid.name);
    let cached = ctx
        .stores
        .configmaps
        .get(&ObjectRef::new(&name).within(&valid.namespace));
    let state = cached.as_ref().and_then(|c| {
        c.data
            .as_ref()?
            .get(membership::ETCD_INITIAL_CLUSTER_STATE)
            .cloned()
    });
    if state.as_deref() == Some(ClusterState::New.as_str()) {
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &valid.namespace);
        let patch = json!({"data": {membership::ETCD_INITIAL_CLUSTER_STATE: ClusterState::Existing.as_str()}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        ctx.metrics.write("ensemble", "patch", "configmaps");
    }
    Ok(())
}

/// The membership ConfigMap lists `replicas` members of a running
/// ensemble: what a member that starts now must know.
async fn write_members(valid: &ValidEnsemble, replicas: i32, ctx: &Context) -> Result<()> {
    let members = Members {
        name: &valid.name,
        namespace: &valid.namespace,
        replicas,
    };
    let data = membership::data(valid.engine, &members, ClusterState::Existing);
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &valid.namespace);
    api.patch(
        &membership::configmap_name(&valid.name),
        &PatchParams::default(),
        &Patch::Merge(&json!({ "data": data })),
    )
    .await?;
    ctx.metrics.write("ensemble", "patch", "configmaps");
    Ok(())
}

/// Deletes the data claim of member `ordinal`, if one is left.
async fn delete_claim(valid: &ValidEnsemble, ordinal: i32, ctx: &Context) -> Result<()> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &valid.namespace);
    let claim = format!(
        "{DATA_VOLUME}-{}",
        membership::pod_name(&valid.name, ordinal)
    );
    match api.delete(&claim, &DeleteParams::default()).await {
        Ok(_) => {
            ctx.metrics
                .write("ensemble", "delete", "persistentvolumeclaims");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn leader_ip<'a>(live: &Live, pods: &'a [Pod]) -> Result<&'a str> {
    let leader = live.leader().ok_or_else(|| Error::Membership {
        engine: "ensemble",
        message: "no leader to send the change to".into(),
    })?;
    pods.iter()
        .find(|p| p.name_any() == leader)
        .and_then(|p| p.status.as_ref()?.pod_ip.as_deref())
        .ok_or(Error::MissingField("the leader pod's IP"))
}

fn etcd_leader(pods: &[Pod], live: &Live) -> Result<etcd::Client> {
    let ip = leader_ip(live, pods)?;
    let url = format!("http://{ip}:{}", super::etcd::CLIENT_PORT);
    etcd::Client::new(&url, ENGINE_CALL_TIMEOUT, None).map_err(Error::membership("etcd"))
}

/// The member ID of `ordinal` in etcd's member list, by peer URL.
async fn etcd_id(client: &etcd::Client, ordinal: i32) -> Result<Option<u64>> {
    let list = client
        .member_list()
        .await
        .map_err(Error::membership("etcd"))?;
    Ok(list
        .iter()
        .find(|m| m.peer_urls.first().and_then(|u| peer_url_ordinal(u)) == Some(ordinal))
        .map(|m| m.id))
}

/// A session with the leader, authenticated as ZooKeeper's super user
/// with the password of the Ensemble's admin Secret.
async fn zookeeper_admin(
    valid: &ValidEnsemble,
    pods: &[Pod],
    live: &Live,
    ctx: &Context,
) -> Result<Session> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &valid.namespace);
    let secret_name = zookeeper::admin_secret_name(&valid.name);
    let secret = secrets.get(&secret_name).await?;
    ctx.metrics.read("ensemble", "get", "secrets");
    let password = secret
        .data
        .as_ref()
        .and_then(|d| d.get(zookeeper::ADMIN_PASSWORD_KEY))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .ok_or(Error::MissingField("the admin Secret's password"))?;
    let addr = format!("{}:{}", leader_ip(live, pods)?, zookeeper::CLIENT_PORT);
    let mut session = Session::connect(&addr, ENGINE_CALL_TIMEOUT)
        .await
        .map_err(Error::membership("zookeeper"))?;
    let auth = format!("{}:{password}", zookeeper::SUPER_USER);
    session
        .add_auth("digest", auth.as_bytes())
        .await
        .map_err(Error::membership("zookeeper"))?;
    Ok(session)
}
