//! Rolling a pod template change (config, version, image, password,
//! resources) through a ShardedStore: the shared roll
//! (`crate::reconcile::roll`) applied shard by shard, one pod at a time
//! across the whole store, replicas first and each shard's primary last.
//!
//! A Redis primary is never deleted while it holds the role: it first hands
//! the role to its most up-to-date replica with `FAILOVER TO`, which pauses
//! writes on the primary until that replica has caught up, so no
//! acknowledged write is lost; it is then an outdated replica like the
//! others. A shard without replicas (and every memcached shard) has no one
//! to hand over to: its pod is deleted, and the shard is unavailable until
//! the new pod is ready. Pure: every rule has a unit test.

use std::time::Duration;

use crate::reconcile::Note;
use crate::reconcile::roll::{self, Plan, PodFacts};

/// What the roll needs to know about one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: i32,
    /// Pods the shard should have (primary plus replicas).
    pub desired: i32,
    /// The shard's StatefulSet `updateRevision`, when its status is current.
    pub update_revision: Option<String>,
    pub pods: Vec<PodFacts>,
    /// The shard's primary, when placement settled on one (Redis).
    pub primary: Option<String>,
    /// Replicas linked to the primary, by name, with their replication
    /// offset: the candidates for a switchover.
    pub linked: Vec<(String, i64)>,
    /// Whether the shard can lose a pod now (Redis: a primary, every
    /// replica linked, nothing being placed). None for memcached, whose
    /// shards have no state to keep in step.
    pub gate: Option<Result<(), String>>,
}

/// The store's next roll step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Settled,
    Wait(Note),
    Stuck {
        progress: Note,
        degraded: Note,
    },
    /// Delete this pod; the StatefulSet recreates it on the new revision.
    Delete {
        pod: String,
        progress: Note,
    },
    /// Send `FAILOVER TO <to>` to the primary `from`.
    Switchover {
        shard: i32,
        from: String,
        to: String,
        progress: Note,
    },
}

/// The next step for the whole store. Shards roll in order, and a pod is
/// replaced only while every other pod of the store is present and ready,
/// so that at most one pod of the store is ever away.
pub fn plan(shards: &[Shard], bound: Duration) -> Step {
    for shard in shards {
        let group = format!("shard-{}", shard.index);
        let role = |pod: &str| -> Option<&'static str> {
            match &shard.primary {
                Some(p) if p == pod => Some("primary"),
                Some(_) => Some("replica"),
                None if shard.desired == 1 => Some("the shard's only pod"),
                None => None,
            }
        };
        let step = roll::plan(&roll::Input {
            desired: shard.desired,
            update_revision: shard.update_revision.as_deref(),
            pods: &shard.pods,
            gate: Some(shard.gate.clone().unwrap_or(Ok(()))),
            last: shard.primary.as_deref(),
            role: &role,
            group: &group,
            bound,
        });
        let (pod, progress) = match step {
            Plan::Settled => continue,
            Plan::Wait(note) => return Step::Wait(note),
            Plan::Stuck { progress, degraded } => return Step::Stuck { progress, degraded },
            Plan::Replace { pod, progress } => (pod, progress),
        };
        if let Some(away) = away_elsewhere(shards, shard.index) {
            return Step::Wait(Note::new(
                progress.reason,
                format!("Waiting for {away} to be ready before replacing {pod}"),
            ));
        }
        if shard.primary.as_deref() == Some(pod.as_str())
            && let Some((to, _)) = shard.linked.iter().max_by_key(|(name, offset)| {
                // The most up-to-date, then the lowest ordinal.
                let ordinal = shard
                    .pods
                    .iter()
                    .find(|p| &p.name == name)
                    .map(|p| p.ordinal);
                (*offset, std::cmp::Reverse(ordinal))
            })
        {
            return Step::Switchover {
                shard: shard.index,
                from: pod.clone(),
                to: to.clone(),
                progress: Note::new(
                    progress.reason,
                    format!(
                        "Handing the primary role of shard-{} from {pod} to {to} before replacing {pod}",
                        shard.index
                    ),
                ),
            };
        }
        return Step::Delete { pod, progress };
    }
    Step::Settled
}

/// The first pod of another shard that is missing, terminating or not
/// ready.
fn away_elsewhere(shards: &[Shard], except: i32) -> Option<String> {
    shards.iter().filter(|s| s.index != except).find_map(|s| {
        let present = |o: i32| s.pods.iter().any(|p| p.ordinal == o);
        (0..s.desired)
            .find(|o| !present(*o))
            .map(|o| format!("ordinal {o} of shard-{}", s.index))
            .or_else(|| {
                s.pods
                    .iter()
                    .filter(|p| p.ordinal < s.desired)
                    .find(|p| p.terminating || !p.ready)
                    .map(|p| p.name.clone())
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: &str = "new";
    const BOUND: Duration = Duration::from_secs(300);

    fn pod(shard: i32, ordinal: i32, revision: &str) -> PodFacts {
        PodFacts {
            name: format!("cache-{shard}-{ordinal}"),
            ordinal,
            revision: Some(revision.into()),
            ready: true,
            terminating: false,
            age: Duration::from_secs(60),
        }
    }

    /// A placed shard of a primary (ordinal `primary`) and replicas, all
    /// on `revisions[i]`.
    fn shard(index: i32, primary: i32, revisions: &[&str]) -> Shard {
        let pods: Vec<PodFacts> = revisions
            .iter()
            .enumerate()
            .map(|(o, r)| pod(index, o as i32, r))
            .collect();
        let primary_name = format!("cache-{index}-{primary}");
        Shard {
            index,
            desired: revisions.len() as i32,
            update_revision: Some(NEW.into()),
            linked: pods
                .iter()
                .filter(|p| p.name != primary_name)
                .map(|p| (p.name.clone(), 100 + i64::from(p.ordinal)))
                .collect(),
            pods,
            primary: Some(primary_name),
            gate: Some(Ok(())),
        }
    }

    #[test]
    fn replicas_go_first_then_the_primary_hands_over_to_the_most_up_to_date_one() {
        let s = [shard(0, 0, &["old", "old", "old"])];
        match plan(&s, BOUND) {
            Step::Delete { pod, progress } => {
                assert_eq!(pod, "cache-0-2");
                assert_eq!(
                    progress.message,
                    "Replacing member cache-0-2 (replica), 0/3 members updated"
                );
            }
            other => panic!("{other:?}"),
        }
        let s = [shard(0, 0, &["old", NEW, NEW])];
        match plan(&s, BOUND) {
            Step::Switchover {
                shard, from, to, ..
            } => assert_eq!(
                (shard, from.as_str(), to.as_str()),
                (0, "cache-0-0", "cache-0-2")
            ),
            other => panic!("{other:?}"),
        }
        // After the switchover the old primary is a replica: deleted.
        let s = [shard(0, 2, &["old", NEW, NEW])];
        assert!(matches!(plan(&s, BOUND), Step::Delete { pod, .. } if pod == "cache-0-0"));
    }

    #[test]
    fn a_shard_without_replicas_has_its_only_pod_deleted() {
        let s = [shard(0, 0, &["old"])];
        match plan(&s, BOUND) {
            Step::Delete { pod, progress } => {
                assert_eq!(pod, "cache-0-0");
                assert!(progress.message.contains("(primary)"), "{progress:?}");
            }
            other => panic!("{other:?}"),
        }
        // memcached: no primary, no gate.
        let mut m = shard(0, 0, &["old"]);
        m.primary = None;
        m.gate = None;
        m.linked.clear();
        match plan(&[m], BOUND) {
            Step::Delete { pod, progress } => {
                assert_eq!(pod, "cache-0-0");
                assert!(
                    progress.message.contains("the shard's only pod"),
                    "{progress:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_pod_of_the_store_at_a_time() {
        // Shard 0 is done but its new replica is not ready yet: shard 1
        // waits for it.
        let mut s0 = shard(0, 0, &[NEW, NEW]);
        s0.pods[1].ready = false;
        let s1 = shard(1, 0, &["old", "old"]);
        match plan(&[s0.clone(), s1.clone()], BOUND) {
            Step::Wait(n) => {
                assert_eq!(n.reason, "RollingUpdate");
                assert_eq!(
                    n.message,
                    "Waiting for cache-0-1 to be ready before replacing cache-1-1"
                );
            }
            other => panic!("{other:?}"),
        }
        s0.pods.pop();
        match plan(&[s0, s1], BOUND) {
            Step::Wait(n) => assert!(n.message.contains("ordinal 1 of shard-0"), "{n:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_shard_that_cannot_lose_a_pod_waits_and_a_stuck_pod_stops_the_roll() {
        let mut s = shard(0, 0, &["old", "old"]);
        s.gate = Some(Err("replica cache-0-1 is not linked".into()));
        match plan(&[s], BOUND) {
            Step::Wait(n) => assert!(
                n.message
                    .starts_with("Waiting until shard-0 can lose a member: replica cache-0-1"),
                "{n:?}"
            ),
            other => panic!("{other:?}"),
        }
        let mut s = shard(0, 0, &["old", NEW]);
        s.pods[1].ready = false;
        s.pods[1].age = BOUND * 2;
        assert!(matches!(plan(&[s], BOUND), Step::Stuck { .. }));
    }

    #[test]
    fn a_current_store_is_settled() {
        let s = [shard(0, 1, &[NEW, NEW]), shard(1, 0, &[NEW])];
        assert_eq!(plan(&s, BOUND), Step::Settled);
    }
}
