//! Scaling an Ensemble through the engine's own membership, one change at
//! a time, never below a quorum.
//!
//! `build` keeps the StatefulSet at the size it has; [`plan`] moves it
//! toward `spec.replicas`:
//!
//! - **ZooKeeper, up**: the membership ConfigMap lists the new members and
//!   the StatefulSet grows; each new server starts with the current
//!   ensemble and itself in its dynamic configuration, syncs with the
//!   leader as a non-voting follower, and is then added by `reconfig`, one
//!   at a time, lowest ordinal first.
//! - **etcd, up**: the next member is added as a learner (`member add
//!   --learner`) before its pod exists; the membership ConfigMap tells it
//!   to join the existing cluster; it is promoted once it has caught up
//!   with the leader. Then the next one.
//! - **Down, both**: the highest member is removed from the engine's
//!   membership first (`reconfig -remove`, `member remove`), and only then
//!   does the StatefulSet shrink by one. Its claim is kept (see
//!   `docs/ensemble-lifecycle.md`).
//!
//! Like the roll, [`plan`] decides from what it observes now (the
//! StatefulSet, the pods, the engine's member list), so that an operator
//! restarted between two steps takes the next one, and each step is
//! idempotent: a member added twice is found in the list the second time.

use std::collections::BTreeSet;
use std::time::Duration;

use tessera_api::EnsembleEngine;

use super::members::{Live, Role};
use super::roll::PodFacts;
use crate::reconcile::Note;

/// The reason of `Progressing` while membership changes.
pub const REASON: &str = "Scaling";

/// The engine's members, by ordinal, as its leader reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// Voting members (ZooKeeper participants, etcd voting members).
    pub voters: BTreeSet<i32>,
    /// Members that receive the log but do not vote yet: etcd learners
    /// (ZooKeeper servers outside the configuration are not members).
    pub learners: BTreeSet<i32>,
}

impl Membership {
    pub fn contains(&self, ordinal: i32) -> bool {
        self.voters.contains(&ordinal) || self.learners.contains(&ordinal)
    }
}

/// Everything [`plan`] decides from.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub engine: EnsembleEngine,
    /// `spec.replicas`.
    pub desired: i32,
    /// The StatefulSet's `spec.replicas`, from the API server.
    pub statefulset: i32,
    /// The members the membership ConfigMap lists: the pods that may run.
    pub listed: i32,
    pub pods: &'a [PodFacts],
    pub live: &'a Live,
    /// `None` when no leader reported its members.
    pub membership: Option<&'a Membership>,
    /// How long a new member may take to be ready before the scale stops.
    pub bound: Duration,
}

/// The next membership step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The engine's members are exactly ordinals `0..desired`, all voting.
    Settled,
    /// Something must happen first; the note says what.
    Wait(Note),
    /// A new member did not become ready in time: the scale stops.
    Stuck { progress: Note, degraded: Note },
    /// List `to` members in the membership ConfigMap, then grow the
    /// StatefulSet to `to`: ZooKeeper's new servers, or the pods of members
    /// already listed.
    Grow { to: i32, progress: Note },
    /// etcd: add `ordinal` as a learner unless it is a member already,
    /// list `ordinal + 1` members in the ConfigMap, and grow the
    /// StatefulSet to `ordinal + 1`.
    Join { ordinal: i32, progress: Note },
    /// ZooKeeper: `reconfig -add` the running, synced server `ordinal`.
    Add { ordinal: i32, progress: Note },
    /// etcd: promote the caught-up learner `ordinal`.
    Promote { ordinal: i32, progress: Note },
    /// Remove `ordinal` from the engine's membership.
    Remove { ordinal: i32, progress: Note },
    /// `ordinal` is no member any more: list `ordinal` members in the
    /// ConfigMap and shrink the StatefulSet to `ordinal`.
    Shrink { ordinal: i32, progress: Note },
}

impl Step {
    /// The reason of the Event that taking this step records, and the
    /// ordinal of the member it is about; `None` for the steps that change
    /// nothing.
    pub fn recorded(&self) -> Option<(&'static str, i32)> {
        match self {
            Step::Settled | Step::Wait(_) | Step::Stuck { .. } => None,
            Step::Grow { to, .. } => Some(("MembersStarting", to - 1)),
            Step::Join { ordinal, .. } | Step::Add { ordinal, .. } => {
                Some(("MemberAdded", *ordinal))
            }
            Step::Promote { ordinal, .. } => Some(("MemberPromoted", *ordinal)),
            Step::Remove { ordinal, .. } => Some(("MemberRemoved", *ordinal)),
            Step::Shrink { ordinal, .. } => Some(("MemberDeleted", *ordinal)),
        }
    }
}

/// The next step. Pure.
pub fn plan(input: &Input) -> Step {
    let Input {
        engine,
        desired,
        statefulset,
        listed,
        pods,
        live,
        membership,
        bound,
    } = input;
    let (desired, n) = (*desired, *statefulset);
    let wanted: BTreeSet<i32> = (0..desired).collect();
    let count = |m: &Membership| format!("{} voting members, {desired} wanted", m.voters.len());

    // Pods of listed members are members (or were, and their data is on
    // their claims): a StatefulSet smaller than the list (scaled down by
    // hand, or an operator stopped between the list and the StatefulSet)
    // grows back first, whatever the engine says; without them there may
    // be no quorum to ask.
    if n < *listed {
        return Step::Grow {
            to: *listed,
            progress: Note::new(
                REASON,
                format!("Restoring the pods of the {listed} listed members ({n} run)"),
            ),
        };
    }
    let Some(m) = membership else {
        if n == desired {
            // Nothing asked; the roles in status say what the engine does.
            return Step::Settled;
        }
        if live.answered() == 0 && desired > n {
            // No engine answers the operator (a NetworkPolicy, or pods that
            // do not really run, like kwok's): the pods can still be added,
            // and a new member joins as the engine allows; removing one
            // needs the engine's member list.
            return Step::Grow {
                to: desired,
                progress: Note::new(
                    REASON,
                    format!(
                        "Starting members {n} to {}; the engines do not answer the operator, so \
                         membership is left to them",
                        desired - 1
                    ),
                ),
            };
        }
        return Step::Wait(Note::new(
            REASON,
            format!(
                "Waiting for the leader to report the members before scaling from {n} to {desired}"
            ),
        ));
    };
    if m.voters == wanted && m.learners.is_empty() && n == desired {
        return Step::Settled;
    }
    let name = |o: i32| {
        pods.iter()
            .find(|p| p.ordinal == o)
            .map_or_else(|| format!("ordinal {o}"), |p| p.name.clone())
    };

    // Voters without a pod (a StatefulSet shrunk behind the engine's back)
    // go first: they count toward the quorum and never answer.
    if let Some(&gone) = m.voters.iter().rev().find(|o| **o >= n.max(desired)) {
        return Step::Remove {
            ordinal: gone,
            progress: Note::new(
                REASON,
                format!("Removing member {} (no pod), {}", name(gone), count(m)),
            ),
        };
    }

    if desired < n {
        let highest = n - 1;
        if m.contains(highest) {
            if m.voters.contains(&highest)
                && let Err(why) = voters_only(live, m).can_lose_one(*engine)
            {
                return Step::Wait(Note::new(
                    REASON,
                    format!(
                        "Waiting until the ensemble can lose a member before removing {}: {why} ({})",
                        name(highest),
                        count(m)
                    ),
                ));
            }
            return Step::Remove {
                ordinal: highest,
                progress: Note::new(
                    REASON,
                    format!(
                        "Removing member {} to scale to {desired}, {}",
                        name(highest),
                        count(m)
                    ),
                ),
            };
        }
        return Step::Shrink {
            ordinal: highest,
            progress: Note::new(
                REASON,
                format!(
                    "Member {} removed; deleting its pod, {}",
                    name(highest),
                    count(m)
                ),
            ),
        };
    }

    // Up (or back to the spec's members): every voter must answer first.
    if live.leader().is_none() {
        return Step::Wait(Note::new(
            REASON,
            format!("Waiting for a leader before adding members ({})", count(m)),
        ));
    }
    match engine {
        EnsembleEngine::Zookeeper => {
            if n < desired {
                return Step::Grow {
                    to: desired,
                    progress: Note::new(
                        REASON,
                        format!("Starting members {n} to {} ({})", desired - 1, count(m)),
                    ),
                };
            }
            let Some(next) = (0..desired).find(|o| !m.voters.contains(o)) else {
                return Step::Settled;
            };
            let pod = pods.iter().find(|p| p.ordinal == next);
            let synced = pod.is_some_and(|p| p.ready && !p.terminating)
                && live.role(&name(next)) == Some(Role::Learner);
            if synced {
                return Step::Add {
                    ordinal: next,
                    progress: Note::new(
                        REASON,
                        format!("Adding member {} by reconfig ({})", name(next), count(m)),
                    ),
                };
            }
            waiting_for(
                pod,
                &name(next),
                "to start and sync with the leader",
                &count(m),
                *bound,
            )
        }
        EnsembleEngine::Etcd => {
            // A learner is promoted before anything else is added.
            if let Some(&learner) = m.learners.iter().next() {
                let pod = pods.iter().find(|p| p.ordinal == learner);
                let caught_up = pod.is_some_and(|p| p.ready && !p.terminating)
                    && caught_up(live, &name(learner));
                if caught_up {
                    return Step::Promote {
                        ordinal: learner,
                        progress: Note::new(
                            REASON,
                            format!("Promoting learner {} ({})", name(learner), count(m)),
                        ),
                    };
                }
                return waiting_for(
                    pod,
                    &name(learner),
                    "to catch up with the leader",
                    &count(m),
                    *bound,
                );
            }
            if let Some(missing) = (0..n).find(|o| !m.voters.contains(o)) {
                return Step::Wait(Note::new(
                    REASON,
                    format!(
                        "{} has a pod but is not in etcd's member list; remove its pod and claim \
                         to let it join again ({})",
                        name(missing),
                        count(m)
                    ),
                ));
            }
            if n < desired {
                return Step::Join {
                    ordinal: n,
                    progress: Note::new(
                        REASON,
                        format!("Adding member {} as a learner ({})", name(n), count(m)),
                    ),
                };
            }
            Step::Settled
        }
    }
}

/// The answers of the voting members only: a member already removed, or
/// not yet added, neither serves nor counts toward the quorum.
fn voters_only(live: &Live, m: &Membership) -> Live {
    Live {
        members: live
            .members
            .iter()
            .filter(|(pod, _)| {
                super::orchestrate::ordinal(pod).is_some_and(|o| m.voters.contains(&o))
            })
            .map(|(pod, a)| (pod.clone(), a.clone()))
            .collect(),
    }
}

/// An etcd learner has applied (nearly) everything its leader committed.
fn caught_up(live: &Live, pod: &str) -> bool {
    let Some(leader) = live.leader() else {
        return false;
    };
    let committed = live.members.get(leader).and_then(|a| a.as_ref()?.committed);
    let applied = live.members.get(pod).and_then(|a| a.as_ref()?.applied);
    match (committed, applied) {
        (Some(c), Some(a)) => c.saturating_sub(a) <= super::members::ETCD_MAX_LAG,
        _ => false,
    }
}

fn waiting_for(
    pod: Option<&PodFacts>,
    name: &str,
    what: &str,
    count: &str,
    bound: Duration,
) -> Step {
    if let Some(p) = pod.filter(|p| !p.ready && p.age > bound) {
        let why = format!(
            "new member {} has not been ready for {}s; scaling stops until it is ready or the \
             spec changes",
            p.name,
            bound.as_secs()
        );
        return Step::Stuck {
            progress: Note::new(REASON, format!("Stopped: {why} ({count})")),
            degraded: Note::new("MemberNotReady", why),
        };
    }
    Step::Wait(Note::new(
        REASON,
        format!("Waiting for {name} {what} ({count})"),
    ))
}

#[cfg(test)]
mod tests;
