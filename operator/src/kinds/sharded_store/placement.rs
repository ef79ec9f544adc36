//! Which pod of a Redis shard is its primary, and what the others must do.
//! Pure: from what each pod said (`INFO replication`) and the primary
//! recorded in status, so that every rule has a unit test.
//!
//! The rules (docs/shardedstore.md):
//! - a recorded primary that answers as a primary stays, also while its pod
//!   is terminating: Redis then stops taking writes and waits for its
//!   replicas to catch up before it exits (`shutdown-timeout`), so the
//!   shard waits for that handover instead of promoting a replica that
//!   would miss the last writes;
//! - otherwise a primary is chosen only from a complete view: every pod the
//!   shard should have answered, except a recorded primary that is lost (the
//!   failover case): it does not answer and its pod is not Ready either, so
//!   one slow answer from a loaded primary whose probes still pass never
//!   causes a failover; a pod that restarted comes back as a
//!   replica of the placeholder and is a candidate like the others;
//! - the candidate with the highest replication offset wins (ties: one that
//!   already is a primary, then the recorded one, then the lowest ordinal),
//!   so a pod that lost its data never becomes the copy the others follow;
//! - every other pod that answers must replicate from the primary's stable
//!   DNS name; an old primary that returns is sent there too (fenced).

/// What a pod said about its replication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub role: Role,
    /// `master_repl_offset`: how much of a replication stream it holds.
    pub offset: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica {
        host: String,
        port: i32,
        /// `master_link_status:up`.
        linked: bool,
    },
}

/// One pod of the shard as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    pub name: String,
    pub ordinal: i32,
    /// Its stable DNS name, which replicas follow.
    pub host: String,
    /// None: no pod, no IP yet, or it did not answer.
    pub answer: Option<Answer>,
    /// The kubelet reports the pod Ready (the sidecar's check passes) and it
    /// is not terminating: a second opinion before a primary that did not
    /// answer is called lost.
    pub ready: bool,
    /// The pod is being deleted. Only a recorded primary is asked then (its
    /// `answer`); any other terminating pod has none.
    pub terminating: bool,
}

/// A change to send to one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `REPLICAOF NO ONE`: keeps its data and takes writes.
    Promote { pod: String, offset: i64 },
    /// `REPLICAOF <host> <port>`.
    Follow { pod: String, host: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The shard's primary once `steps` are done; None while waiting.
    pub primary: Option<String>,
    pub steps: Vec<Step>,
    /// Why the shard waits: no primary can be chosen yet (`primary` is
    /// None), or its primary is handing over before it exits.
    pub waiting: Option<String>,
}

/// `pods` holds every pod the shard should have, answered or not, in
/// ordinal order; `port` is the engine's port.
pub fn plan(pods: &[PodView], recorded: Option<&str>, port: i32) -> Plan {
    let answer = |name: &str| {
        pods.iter()
            .find(|p| p.name == name)
            .and_then(|p| p.answer.as_ref())
    };
    let mut steps = Vec::new();
    let primary = match recorded {
        Some(r)
            if answer(r).is_some_and(|a| a.role == Role::Primary)
                && pods.iter().any(|p| p.name == r && p.terminating) =>
        {
            return Plan {
                primary: Some(r.to_string()),
                steps: Vec::new(),
                waiting: Some(format!(
                    "primary {r} is shutting down: it takes no more writes and waits for its \
                     replicas to catch up; a replica is promoted once it has exited"
                )),
            };
        }
        Some(r) if answer(r).is_some_and(|a| a.role == Role::Primary) => r.to_string(),
        Some(r) if answer(r).is_none() && pods.iter().any(|p| p.name == r && p.ready) => {
            return waiting(format!(
                "primary {r} did not answer but its pod is still Ready; failing over only once it is not"
            ));
        }
        _ => {
            let lost = recorded.filter(|r| answer(r).is_none());
            let missing: Vec<&str> = pods
                .iter()
                .filter(|p| p.answer.is_none() && Some(p.name.as_str()) != lost)
                .map(|p| p.name.as_str())
                .collect();
            if !missing.is_empty() {
                return waiting(format!(
                    "waiting for {} to answer before choosing a primary from a complete view",
                    missing.join(", ")
                ));
            }
            let best = pods
                .iter()
                .filter_map(|p| p.answer.as_ref().map(|a| (p, a)))
                .max_by_key(|(p, a)| {
                    (
                        a.offset,
                        a.role == Role::Primary,
                        Some(p.name.as_str()) == recorded,
                        std::cmp::Reverse(p.ordinal),
                    )
                });
            let Some((best, a)) = best else {
                return waiting(match lost {
                    Some(l) => format!("primary {l} is lost and no other pod answers"),
                    None => "no pod answers".to_string(),
                });
            };
            if a.role != Role::Primary {
                steps.push(Step::Promote {
                    pod: best.name.clone(),
                    offset: a.offset,
                });
            }
            best.name.clone()
        }
    };
    let host = pods
        .iter()
        .find(|p| p.name == primary)
        .map(|p| p.host.clone())
        .unwrap_or_default();
    for p in pods.iter().filter(|p| p.name != primary) {
        let Some(a) = &p.answer else { continue };
        let follows =
            matches!(&a.role, Role::Replica { host: h, port: pt, .. } if *h == host && *pt == port);
        if !follows {
            steps.push(Step::Follow {
                pod: p.name.clone(),
                host: host.clone(),
            });
        }
    }
    Plan {
        primary: Some(primary),
        steps,
        waiting: None,
    }
}

fn waiting(why: String) -> Plan {
    Plan {
        primary: None,
        steps: Vec::new(),
        waiting: Some(why),
    }
}
