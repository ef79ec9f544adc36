//! `orchestrate` for a ShardedStore: ask every Redis pod about its
//! replication, apply the shard's [`placement::plan`], report the shard
//! map, and take the roll's next step ([`super::roll`]). memcached shards
//! have one pod each: the map only names it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Event, EventType};
use tessera_api::sharded_store::{ShardReplica, ShardStatus};
use tessera_api::{ShardedStore, StoreEngine};
use tessera_clients::redis::{Client, Options};
use tracing::{info, warn};

use super::build::{pod_host, pod_name, ring_name, statefulset_name};
use super::placement::{self, Answer, PodView, Role, Step};
use super::validate::ValidStore;
use super::{memcached, redis, roll};
use crate::kinds::shared;
use crate::reconcile::roll::{
    MEMBER_READY_BOUND, ROLL_REQUEUE, STUCK_REQUEUE, pod_facts, replace_member, update_revision,
};
use crate::reconcile::status::{serving, terminating};
use crate::reconcile::{Note, Observed, Orchestrated};
use crate::runtime::context::Context;
use crate::runtime::error::Result;

/// What the engines said: the shard map for status. Empty when nothing was
/// observed (paused, invalid): status then keeps the last map.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShardMap {
    pub shards: Vec<ShardStatus>,
}

/// How long one pod may take to answer: short, because a pod that does not
/// answer within it counts as lost for a failover.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(1);
/// A Redis store is checked this often, so that a lost primary is noticed
/// even when no Kubernetes object changes.
const REDIS_RECHECK: Duration = Duration::from_secs(3);

pub async fn orchestrate(
    store: &ShardedStore,
    valid: &ValidStore,
    observed: &Observed,
    ctx: &Context,
) -> Result<Orchestrated<ShardMap>> {
    let (mut out, placement) = match valid.engine {
        StoreEngine::Memcached => (
            Orchestrated::settled(memcached_map(valid, observed)),
            Placement::default(),
        ),
        StoreEngine::Redis => redis_shards(store, valid, observed, ctx).await?,
    };
    rolling(valid, observed, &placement, &mut out, ctx).await?;
    Ok(out)
}

/// What the roll needs from the Redis placement: each shard's gate, and
/// the connection options (with the password) the placement used, so that
/// a switchover does not read the Secret a second time.
#[derive(Default)]
struct Placement {
    shards: BTreeMap<i32, ShardGate>,
    opts: Options,
}

/// What the roll needs from a shard's placement: its primary, its replicas
/// linked to it (with offsets), and whether it can lose a pod now.
#[derive(Clone, Debug)]
struct ShardGate {
    primary: Option<String>,
    linked: Vec<(String, i64)>,
    gate: Result<(), String>,
}

/// How long a primary may pause writes while its replica catches up in a
/// switchover before Redis gives up (and resumes as the primary).
const SWITCHOVER_TIMEOUT_MS: &str = "10000";

/// The roll's next step, when the caches show an outdated pod. The step
/// is decided from the API server's view (the caches may lag by a watch
/// event, and a pod deleted a moment ago could still look ready there).
async fn rolling(
    valid: &ValidStore,
    observed: &Observed,
    placement: &Placement,
    out: &mut Orchestrated<ShardMap>,
    ctx: &Context,
) -> Result<()> {
    let outdated_in_cache = observed.components.iter().any(|c| {
        let revision = c.statefulsets.first().and_then(|s| update_revision(s));
        c.pods
            .iter()
            .filter(|p| !terminating(p))
            .any(|p| crate::reconcile::roll::revision(p) != revision.as_deref())
    });
    if !outdated_in_cache {
        return Ok(());
    }
    let ns = valid.namespace.as_str();
    let selector = format!(
        "{}={},{}={}",
        shared::LABEL_NAME,
        valid.engine.as_str(),
        shared::LABEL_INSTANCE,
        valid.name
    );
    let lp = ListParams::default().labels(&selector);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let stses = sts_api.list(&lp).await?;
    ctx.metrics.read(super::METRIC_KIND, "list", "statefulsets");
    let pods = pod_api.list(&lp).await?;
    ctx.metrics.read(super::METRIC_KIND, "list", "pods");
    let now = Timestamp::now();
    let shards: Vec<roll::Shard> = (0..valid.shards)
        .map(|index| {
            let sts = statefulset_name(&valid.name, index);
            let g = placement.shards.get(&index);
            roll::Shard {
                index,
                desired: valid.members,
                update_revision: stses
                    .items
                    .iter()
                    .find(|s| s.name_any() == sts)
                    .and_then(update_revision),
                pods: pods
                    .items
                    .iter()
                    .filter(|p| p.name_any().rsplit_once('-').map(|(s, _)| s) == Some(sts.as_str()))
                    .map(|p| pod_facts(p, now))
                    .collect(),
                primary: g.and_then(|g| g.primary.clone()),
                linked: g.map(|g| g.linked.clone()).unwrap_or_default(),
                // memcached has no gate. A Redis shard the placement did not
                // look at (the password could not be read) waits: its
                // primary is unknown, so it could not be handed over.
                gate: match valid.engine {
                    StoreEngine::Memcached => None,
                    StoreEngine::Redis => Some(g.map_or_else(
                        || Err("the operator could not ask its pods (see Degraded)".to_string()),
                        |g| g.gate.clone(),
                    )),
                },
            }
        })
        .collect();
    let (progress, requeue) = match roll::plan(&shards, MEMBER_READY_BOUND) {
        roll::Step::Settled => return Ok(()),
        roll::Step::Wait(note) => (note, ROLL_REQUEUE),
        roll::Step::Stuck { progress, degraded } => {
            out.degraded.get_or_insert(degraded);
            (progress, STUCK_REQUEUE)
        }
        roll::Step::Delete { pod, progress } => {
            let why =
                format!("Deleted {pod} so that it restarts on its StatefulSet's latest revision");
            let event =
                replace_member(&pod_api, &pods.items, &pod, why, super::METRIC_KIND, ctx).await?;
            out.events.push(event);
            (progress, ROLL_REQUEUE)
        }
        roll::Step::Switchover {
            shard,
            from,
            to,
            progress,
        } => {
            let ip = |name: &str| {
                pods.items
                    .iter()
                    .find(|p| p.name_any() == name)
                    .and_then(|p| pod_ip(p))
                    .map(String::from)
            };
            if let (Some(from_ip), Some(to_ip)) = (ip(&from), ip(&to)) {
                let opts = placement.opts.clone();
                let port = redis::PORT.to_string();
                // Redis names its replicas by the address they connect
                // from: the pod IP.
                let args = [
                    "FAILOVER",
                    "TO",
                    &to_ip,
                    &port,
                    "TIMEOUT",
                    SWITCHOVER_TIMEOUT_MS,
                ];
                match send(&from_ip, opts, &args).await {
                    Ok(()) => {
                        info!(store = %valid.name, shard, from = %from, to = %to, "switchover");
                        out.events.push(Event {
                            type_: EventType::Normal,
                            reason: "Switchover".into(),
                            note: Some(format!(
                                "{}: {from} hands the primary role to {to} (FAILOVER) before it is replaced",
                                ring_name(shard)
                            )),
                            action: "RollingUpdate".into(),
                            secondary: None,
                        });
                    }
                    // Already under way, or refused: the next pass sees
                    // the roles as they are and decides again.
                    Err(e) => {
                        warn!(store = %valid.name, shard, from = %from, error = %e, "switchover not started")
                    }
                }
            }
            (progress, ROLL_REQUEUE)
        }
    };
    if out.degraded.is_none() || out.progress.is_none() {
        out.progress = Some(progress);
    }
    out.requeue = Some(out.requeue.map_or(requeue, |r| r.min(requeue)));
    Ok(())
}

/// How often a Redis store is checked while a deleted primary hands over:
/// the replica is promoted soon after the old primary exits.
const HANDOVER_RECHECK: Duration = Duration::from_secs(1);

/// The pods of shard `index`, by name, from the caches, terminating ones
/// included.
fn shard_pods(observed: &Observed, index: i32) -> BTreeMap<String, &Pod> {
    let shard = ring_name(index);
    observed
        .components
        .iter()
        .find(|c| c.component.identity.component == shard)
        .map(|c| c.pods.iter().map(|p| (p.name_any(), p.as_ref())).collect())
        .unwrap_or_default()
}

fn pod_ip(pod: &Pod) -> Option<&str> {
    let status = pod.status.as_ref()?;
    (status.phase.as_deref() == Some("Running"))
        .then_some(())
        .and(status.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
}

fn address(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn memcached_map(valid: &ValidStore, observed: &Observed) -> ShardMap {
    let shards = (0..valid.shards)
        .map(|index| {
            let pods = shard_pods(observed, index);
            let name = pod_name(&valid.name, index, 0);
            let pod = pods.get(&name).filter(|p| !terminating(p));
            ShardStatus {
                index,
                name: ring_name(index),
                primary: pod.map(|_| name.clone()),
                address: pod
                    .and_then(|p| pod_ip(p))
                    .map(|ip| address(ip, memcached::PORT)),
                ready_replicas: 0,
                replicas: vec![],
            }
        })
        .collect();
    ShardMap { shards }
}

/// The Redis password from the store's Secret, read when needed and never
/// logged. A missing Secret or key is reported, not retried in a loop.
async fn password(
    valid: &ValidStore,
    ctx: &Context,
) -> Result<std::result::Result<Option<String>, Note>> {
    let Some(auth) = &valid.auth else {
        return Ok(Ok(None));
    };
    let value = ctx
        .secret_value(
            &valid.namespace,
            &auth.secret,
            &auth.key,
            super::METRIC_KIND,
        )
        .await?
        .map(|v| v.trim_end_matches(['\r', '\n']).to_string());
    Ok(match value {
        Some(v) => Ok(Some(v)),
        None => Err(Note::new(
            "AuthSecretKeyMissing",
            format!(
                "Secret {:?} has no key {:?}: the operator cannot authenticate to Redis to place primaries",
                auth.secret, auth.key
            ),
        )),
    })
}

/// `INFO replication` of one pod, or None when it does not answer.
async fn ask(ip: String, opts: Options) -> Option<Answer> {
    let mut c = Client::connect(&address(&ip, redis::PORT), opts)
        .await
        .ok()?;
    let info = c.info(Some("replication")).await.ok()?;
    let offset = info
        .get("master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let role = match info.get("role")? {
        "master" => Role::Primary,
        "slave" => Role::Replica {
            host: info.get("master_host").unwrap_or_default().to_string(),
            port: info
                .get("master_port")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            linked: info.get("master_link_status") == Some("up"),
        },
        _ => return None,
    };
    Some(Answer { role, offset })
}

async fn send(ip: &str, opts: Options, args: &[&str]) -> tessera_clients::Result<()> {
    let mut c = Client::connect(&address(ip, redis::PORT), opts).await?;
    c.command(args).await.map(drop)
}

async fn redis_shards(
    store: &ShardedStore,
    valid: &ValidStore,
    observed: &Observed,
    ctx: &Context,
) -> Result<(Orchestrated<ShardMap>, Placement)> {
    let opts = match password(valid, ctx).await? {
        Ok(password) => Options {
            timeout: ENGINE_TIMEOUT,
            password,
            ..Options::default()
        },
        Err(note) => {
            let out = Orchestrated {
                degraded: Some(note),
                requeue: Some(REDIS_RECHECK),
                ..Orchestrated::default()
            };
            return Ok((out, Placement::default()));
        }
    };
    let recorded: BTreeMap<i32, String> = store
        .status
        .iter()
        .flat_map(|s| &s.shards)
        .filter_map(|s| s.primary.clone().map(|p| (s.index, p)))
        .collect();

    let mut out = Orchestrated::<ShardMap> {
        requeue: Some(REDIS_RECHECK),
        ..Orchestrated::default()
    };
    let port = redis::PORT.to_string();
    let mut waiting = Vec::new();
    let mut without_primary = Vec::new();
    let mut gates = BTreeMap::new();
    for index in 0..valid.shards {
        let pods = shard_pods(observed, index);
        let names: Vec<String> = (0..valid.members)
            .map(|o| pod_name(&valid.name, index, o))
            .collect();
        let rec = recorded.get(&index).map(String::as_str);
        let answers = futures::future::join_all(names.iter().map(|n| {
            // Of the terminating pods only a recorded primary is asked: it
            // may still be handing over to its replicas.
            let ip = pods
                .get(n)
                .filter(|p| !terminating(p) || rec == Some(n.as_str()))
                .and_then(|p| pod_ip(p))
                .map(String::from);
            let opts = opts.clone();
            async move {
                match ip {
                    Some(ip) => ask(ip, opts).await,
                    None => None,
                }
            }
        }))
        .await;
        let views: Vec<PodView> = names
            .iter()
            .zip(answers)
            .enumerate()
            .map(|(ordinal, (n, answer))| PodView {
                name: n.clone(),
                ordinal: ordinal as i32,
                host: pod_host(&valid.name, &valid.namespace, n),
                answer,
                ready: pods.get(n).is_some_and(|p| serving(p)),
                terminating: pods.get(n).is_some_and(|p| terminating(p)),
            })
            .collect();
        let plan = placement::plan(&views, rec, redis::PORT);
        if let Some(why) = &plan.waiting {
            waiting.push(format!("{}: {why}", ring_name(index)));
            if plan.primary.is_some() {
                out.requeue = Some(HANDOVER_RECHECK);
            }
        }
        let mut failed = false;
        for step in &plan.steps {
            let (pod, args, event) = match step {
                Step::Promote { pod, offset } => (
                    pod,
                    vec!["REPLICAOF", "NO", "ONE"],
                    promoted_event(index, pod, *offset, rec),
                ),
                Step::Follow { pod, host } => {
                    let was_primary = views.iter().any(|v| {
                        &v.name == pod && v.answer.as_ref().is_some_and(|a| a.role == Role::Primary)
                    });
                    (
                        pod,
                        vec!["REPLICAOF", host.as_str(), port.as_str()],
                        was_primary.then(|| fenced_event(index, pod, host)),
                    )
                }
            };
            let Some(ip) = pods.get(pod).and_then(|p| pod_ip(p)) else {
                continue;
            };
            match send(ip, opts.clone(), &args).await {
                Ok(()) => {
                    info!(store = %valid.name, shard = index, pod = %pod, step = ?step, "placed");
                    out.events.extend(event);
                }
                Err(e) => {
                    // A promotion that failed leaves the shard without a
                    // primary: the next pass decides again from a fresh view.
                    warn!(store = %valid.name, shard = index, pod = %pod, error = %e, "placement step failed");
                    failed |= matches!(step, Step::Promote { .. });
                }
            }
        }
        let primary = plan.primary.filter(|_| !failed);
        if primary.is_none() {
            without_primary.push(ring_name(index));
        }
        // Until a new primary is chosen the recorded one stays: it is what
        // the next pass (or a restarted operator) fails over from.
        let shown = primary.clone().or_else(|| rec.map(String::from));
        let status = shard_status(
            index,
            shown.as_deref(),
            &views,
            &pods,
            !plan.steps.is_empty(),
        );
        let unlinked: Vec<&str> = status
            .replicas
            .iter()
            .filter(|r| !r.linked)
            .map(|r| r.name.as_str())
            .collect();
        let gate = match (&primary, &plan.waiting) {
            (_, Some(why)) => Err(why.clone()),
            (None, None) => Err("no primary".to_string()),
            _ if !plan.steps.is_empty() => Err("its pods are being placed".to_string()),
            _ if !unlinked.is_empty() => {
                Err(format!("{} not linked to the primary", unlinked.join(", ")))
            }
            _ => Ok(()),
        };
        let linked = views
            .iter()
            .filter(|v| status.replicas.iter().any(|r| r.linked && r.name == v.name))
            .filter_map(|v| Some((v.name.clone(), v.answer.as_ref()?.offset)))
            .collect();
        gates.insert(
            index,
            ShardGate {
                primary,
                linked,
                gate,
            },
        );
        out.live.shards.push(status);
    }
    if !without_primary.is_empty() {
        out.degraded = Some(Note::new(
            "ShardWithoutPrimary",
            format!(
                "no writable primary in {}: {}",
                without_primary.join(", "),
                waiting.join("; ")
            ),
        ));
        out.progress = Some(Note::new("PlacingPrimaries", waiting.join("; ")));
    } else if !waiting.is_empty() {
        out.progress = Some(Note::new("PrimaryHandover", waiting.join("; ")));
    } else if out
        .live
        .shards
        .iter()
        .any(|s| s.replicas.iter().any(|r| !r.linked))
    {
        out.progress = Some(Note::new(
            "ReplicasSyncing",
            "replicas are connecting to their shard's primary",
        ));
    }
    Ok((
        out,
        Placement {
            shards: gates,
            opts,
        },
    ))
}

/// One shard's entry in status. `moved`: steps were just sent, so the
/// answers describe the state before them; replicas are reported unlinked
/// until the next pass sees them follow.
fn shard_status(
    index: i32,
    primary: Option<&str>,
    views: &[PodView],
    pods: &BTreeMap<String, &Pod>,
    moved: bool,
) -> ShardStatus {
    let primary_view = primary.and_then(|p| views.iter().find(|v| v.name == p));
    let primary_offset = primary_view
        .and_then(|v| v.answer.as_ref())
        .map(|a| a.offset);
    let replicas: Vec<ShardReplica> = views
        .iter()
        .filter(|v| Some(v.name.as_str()) != primary)
        .map(|v| {
            let linked = !moved
                && v.answer.as_ref().is_some_and(|a| {
                    matches!(&a.role, Role::Replica { host, linked: true, .. }
                        if primary_view.is_some_and(|p| &p.host == host))
                });
            let offset = v.answer.as_ref().map(|a| a.offset);
            ShardReplica {
                name: v.name.clone(),
                linked,
                lag_kib: offset
                    .zip(primary_offset)
                    .filter(|_| linked)
                    .map(|(o, p)| lag_kib(p, o)),
            }
        })
        .collect();
    ShardStatus {
        index,
        name: ring_name(index),
        primary: primary.map(String::from),
        address: primary
            .and_then(|p| pods.get(p))
            .and_then(|p| pod_ip(p))
            .map(|ip| address(ip, redis::PORT)),
        ready_replicas: replicas
            .iter()
            .filter(|r| pods.get(&r.name).is_some_and(|p| serving(p)))
            .count() as i32,
        replicas,
    }
}

/// Replication lag in whole KiB. Offsets move with every write and with
/// Redis's own pings to replicas; raw offsets in status would rewrite it
/// on almost every pass.
pub fn lag_kib(primary: i64, replica: i64) -> i64 {
    (primary - replica).max(0) / 1024
}

fn promoted_event(index: i32, pod: &str, offset: i64, lost: Option<&str>) -> Option<Event> {
    let note = match lost {
        Some(old) if old != pod => format!(
            "{}: promoted {pod} (replication offset {offset}) in place of {old}, which did not answer as a primary",
            ring_name(index)
        ),
        _ => format!(
            "{}: promoted {pod} (replication offset {offset}) after every pod of the shard answered",
            ring_name(index)
        ),
    };
    Some(Event {
        type_: if lost.is_some() {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: if lost.is_some() {
            "FailedOver".into()
        } else {
            "PrimaryPlaced".into()
        },
        note: Some(note),
        action: "Promote".into(),
        secondary: None,
    })
}

fn fenced_event(index: i32, pod: &str, host: &str) -> Event {
    Event {
        type_: EventType::Warning,
        reason: "PrimaryFenced".into(),
        note: Some(format!(
            "{}: {pod} answered as a second primary; it now replicates from {host}",
            ring_name(index)
        )),
        action: "Fence".into(),
        secondary: None,
    }
}
