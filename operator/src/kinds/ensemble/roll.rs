//! Rolling a pod template change through an Ensemble, one member at a
//! time: the shared roll (`crate::reconcile::roll`) with the engines' own
//! verdict (a ZooKeeper leader's synced followers, etcd members caught up)
//! and the leader last.

use std::time::Duration;

use tessera_api::EnsembleEngine;

use super::members::Live;
use crate::reconcile::roll;
pub use crate::reconcile::roll::{MEMBER_READY_BOUND, Plan, PodFacts, REVISION_LABEL};

/// Everything [`plan`] decides from.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub engine: EnsembleEngine,
    pub desired: i32,
    /// The StatefulSet's `updateRevision`, when its status is current
    /// (`observedGeneration` has reached `generation`).
    pub update_revision: Option<&'a str>,
    pub pods: &'a [PodFacts],
    pub live: &'a Live,
    pub bound: Duration,
}

/// The next step of the roll. Pure.
pub fn plan(input: &Input) -> Plan {
    let live = input.live;
    roll::plan(&roll::Input {
        desired: input.desired,
        update_revision: input.update_revision,
        pods: input.pods,
        gate: (live.answered() > 0).then(|| live.can_lose_one(input.engine)),
        last: live.leader(),
        role: &|pod| live.role(pod).map(|r| r.as_str()),
        group: "the ensemble",
        bound: input.bound,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::ensemble::members::{Answer, Role};

    const NEW: &str = "zk-new";
    const BOUND: Duration = Duration::from_secs(300);

    fn pod(ordinal: i32, revision: &str) -> PodFacts {
        PodFacts {
            name: format!("zk-{ordinal}"),
            ordinal,
            revision: Some(revision.into()),
            ready: true,
            terminating: false,
            age: Duration::from_secs(60),
        }
    }

    fn answer(role: Role, synced: Option<u64>) -> Option<Answer> {
        Some(Answer {
            role: Some(role),
            synced_followers: synced,
            ..Answer::default()
        })
    }

    /// A healthy 3-member ZooKeeper ensemble led by `leader`.
    fn led_by(leader: i32) -> Live {
        Live {
            members: (0..3)
                .map(|i| {
                    let a = if i == leader {
                        answer(Role::Leader, Some(2))
                    } else {
                        answer(Role::Follower, None)
                    };
                    (format!("zk-{i}"), a)
                })
                .collect(),
        }
    }

    fn plan_for(pods: &[PodFacts], live: &Live) -> Plan {
        plan(&Input {
            engine: EnsembleEngine::Zookeeper,
            desired: 3,
            update_revision: Some(NEW),
            pods,
            live,
            bound: BOUND,
        })
    }

    fn replaced(p: Plan) -> String {
        match p {
            Plan::Replace { pod, .. } => pod,
            other => panic!("expected a replacement, got {other:?}"),
        }
    }

    fn waiting(p: Plan) -> String {
        match p {
            Plan::Wait(n) => {
                assert_eq!(n.reason, "RollingUpdate");
                n.message
            }
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    #[test]
    fn nothing_to_do_when_every_member_is_current_or_the_revision_is_unknown() {
        let pods = [pod(0, NEW), pod(1, NEW), pod(2, NEW)];
        assert_eq!(plan_for(&pods, &led_by(0)), Plan::Settled);
        let old = [pod(0, "old"), pod(1, "old"), pod(2, "old")];
        let live = led_by(0);
        let unknown = Input {
            engine: EnsembleEngine::Zookeeper,
            desired: 3,
            update_revision: None,
            pods: &old,
            live: &live,
            bound: BOUND,
        };
        assert_eq!(plan(&unknown), Plan::Settled);
    }

    #[test]
    fn followers_go_first_from_the_highest_ordinal_and_the_leader_last() {
        let old = [pod(0, "old"), pod(1, "old"), pod(2, "old")];
        assert_eq!(replaced(plan_for(&old, &led_by(0))), "zk-2");
        assert_eq!(replaced(plan_for(&old, &led_by(2))), "zk-1");
        let leader_left = [pod(0, NEW), pod(1, "old"), pod(2, NEW)];
        match plan_for(&leader_left, &led_by(1)) {
            Plan::Replace { pod, progress } => {
                assert_eq!(pod, "zk-1");
                assert_eq!(
                    progress.message,
                    "Replacing member zk-1 (leader), 2/3 members updated"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_member_away_or_not_ready_blocks_the_next_one() {
        let mut pods = vec![pod(0, "old"), pod(1, "old"), pod(2, NEW)];
        pods[2].ready = false;
        assert_eq!(
            waiting(plan_for(&pods, &led_by(0))),
            "Waiting for zk-2 to be ready before replacing the next member (1/3 members updated)"
        );
        pods[2].ready = true;
        pods[1].terminating = true;
        assert!(waiting(plan_for(&pods, &led_by(0))).contains("zk-1"));
        let missing = [pod(0, "old"), pod(2, NEW)];
        assert!(waiting(plan_for(&missing, &led_by(0))).contains("ordinal 1"));
    }

    #[test]
    fn the_engines_must_be_able_to_lose_a_member() {
        let old = [pod(0, "old"), pod(1, "old"), pod(2, "old")];
        let mut lagging = led_by(0);
        lagging
            .members
            .insert("zk-0".into(), answer(Role::Leader, Some(1)));
        assert!(
            waiting(plan_for(&old, &lagging)).contains("leader zk-0 has 1 of 2 followers in sync")
        );
        let mut silent = led_by(0);
        silent.members.insert("zk-1".into(), None);
        assert!(waiting(plan_for(&old, &silent)).contains("no answer from zk-1"));
        let mut electing = led_by(0);
        electing.members.insert(
            "zk-2".into(),
            Some(Answer {
                role: None,
                ..Answer::default()
            }),
        );
        assert!(waiting(plan_for(&old, &electing)).contains("zk-2 not serving"));
    }

    #[test]
    fn without_any_engine_answer_readiness_decides_and_status_says_so() {
        let old = [pod(0, "old"), pod(1, "old"), pod(2, "old")];
        let dark = Live {
            members: (0..3).map(|i| (format!("zk-{i}"), None)).collect(),
        };
        match plan_for(&old, &dark) {
            Plan::Replace { pod, progress, .. } => {
                assert_eq!(pod, "zk-2");
                assert!(progress.message.contains("roles unknown"), "{progress:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_replaced_member_not_back_in_time_stops_the_roll() {
        let mut pods = vec![pod(0, "old"), pod(1, "old"), pod(2, NEW)];
        pods[2].ready = false;
        pods[2].age = BOUND + Duration::from_secs(1);
        match plan_for(&pods, &led_by(0)) {
            Plan::Stuck { progress, degraded } => {
                assert_eq!(degraded.reason, "MemberNotReady");
                assert!(degraded.message.starts_with("zk-2 runs the new revision"));
                assert!(progress.message.starts_with("Stopped: "));
            }
            other => panic!("{other:?}"),
        }
        // Within the bound it is only waited for.
        pods[2].age = BOUND;
        waiting(plan_for(&pods, &led_by(0)));
    }

    #[test]
    fn a_broken_outdated_member_is_replaced_first_once_the_others_are_up() {
        // zk-2 crash-loops on a revision a later spec replaced.
        let mut pods = vec![pod(0, "old"), pod(1, "old"), pod(2, "broken")];
        pods[2].ready = false;
        pods[2].age = BOUND * 2;
        match plan_for(&pods, &led_by(0)) {
            Plan::Replace { pod, progress, .. } => {
                assert_eq!(pod, "zk-2");
                assert!(progress.message.contains("not ready, on an old revision"));
            }
            other => panic!("{other:?}"),
        }
        // Not while another member is down too: that one is waited for.
        pods[1].ready = false;
        assert!(waiting(plan_for(&pods, &led_by(0))).contains("zk-1, zk-2"));
        // Nor while a member is missing.
        let missing = [pod(0, "old"), {
            let mut p = pod(2, "broken");
            p.ready = false;
            p
        }];
        assert!(waiting(plan_for(&missing, &led_by(0))).contains("ordinal 1"));
    }

    #[test]
    fn pods_beyond_the_desired_count_are_not_rolled() {
        let pods = [pod(0, NEW), pod(1, NEW), pod(2, NEW), pod(3, "old")];
        assert_eq!(plan_for(&pods, &led_by(0)), Plan::Settled);
    }
}
