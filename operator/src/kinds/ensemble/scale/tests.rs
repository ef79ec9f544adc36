use std::collections::BTreeSet;

use super::*;
use crate::kinds::ensemble::members::Answer;

const BOUND: Duration = Duration::from_secs(300);

fn pod(ordinal: i32, ready: bool) -> PodFacts {
    PodFacts {
        name: format!("e-{ordinal}"),
        ordinal,
        revision: Some("r".into()),
        ready,
        terminating: false,
        age: Duration::from_secs(10),
    }
}

fn answer(role: Role) -> Option<Answer> {
    Some(Answer {
        role: Some(role),
        synced_followers: Some(8),
        applied: Some(100),
        committed: Some(100),
        ..Answer::default()
    })
}

/// Members `0..voters` vote (`e-0` leads), the others answer as `rest`.
fn live(pods: i32, voters: i32, rest: Role) -> Live {
    Live {
        members: (0..pods)
            .map(|o| {
                let role = match o {
                    0 => Role::Leader,
                    o if o < voters => Role::Follower,
                    _ => rest,
                };
                (format!("e-{o}"), answer(role))
            })
            .collect(),
    }
}

fn membership(voters: &[i32], learners: &[i32]) -> Membership {
    Membership {
        voters: voters.iter().copied().collect(),
        learners: learners.iter().copied().collect::<BTreeSet<_>>(),
    }
}

fn step(
    engine: EnsembleEngine,
    desired: i32,
    statefulset: i32,
    pods: &[PodFacts],
    live: &Live,
    m: Option<&Membership>,
) -> Step {
    plan(&Input {
        engine,
        desired,
        statefulset,
        listed: statefulset,
        pods,
        live,
        membership: m,
        bound: BOUND,
    })
}

fn pods(n: i32) -> Vec<PodFacts> {
    (0..n).map(|o| pod(o, true)).collect()
}

#[test]
fn nothing_to_do_when_the_members_are_the_spec() {
    let m = membership(&[0, 1, 2], &[]);
    let l = live(3, 3, Role::Follower);
    for engine in [EnsembleEngine::Zookeeper, EnsembleEngine::Etcd] {
        assert_eq!(step(engine, 3, 3, &pods(3), &l, Some(&m)), Step::Settled);
        // Without an answer from the engine, a spec that asks nothing
        // waits for nothing.
        assert_eq!(step(engine, 3, 3, &pods(3), &l, None), Step::Settled);
    }
    let Step::Wait(n) = step(EnsembleEngine::Etcd, 5, 3, &pods(3), &l, None) else {
        panic!("a scale without the member list must wait")
    };
    assert!(n.message.contains("report the members"), "{}", n.message);
}

#[test]
fn zookeeper_grows_then_adds_synced_servers_one_at_a_time() {
    let zk = EnsembleEngine::Zookeeper;
    let m = membership(&[0, 1, 2], &[]);
    let l = live(3, 3, Role::Follower);
    assert!(matches!(
        step(zk, 5, 3, &pods(3), &l, Some(&m)),
        Step::Grow { to: 5, .. }
    ));
    // New servers not synced yet: wait, naming the lowest.
    let mut p = pods(5);
    p[3].ready = false;
    let l = live(5, 3, Role::Learner);
    let Step::Wait(n) = step(zk, 5, 5, &p, &l, Some(&m)) else {
        panic!("must wait for e-3")
    };
    assert!(n.message.contains("e-3 to start and sync"), "{}", n.message);
    // Synced (a non-voting follower): added, lowest first.
    assert!(matches!(
        step(zk, 5, 5, &pods(5), &l, Some(&m)),
        Step::Add { ordinal: 3, .. }
    ));
    let m4 = membership(&[0, 1, 2, 3], &[]);
    let l = live(5, 4, Role::Learner);
    assert!(matches!(
        step(zk, 5, 5, &pods(5), &l, Some(&m4)),
        Step::Add { ordinal: 4, .. }
    ));
}

#[test]
fn a_new_member_not_ready_in_time_stops_the_scale() {
    let m = membership(&[0, 1, 2], &[]);
    let mut p = pods(5);
    p[3].ready = false;
    p[3].age = BOUND + Duration::from_secs(1);
    let l = live(5, 3, Role::Learner);
    let Step::Stuck { degraded, .. } = step(EnsembleEngine::Zookeeper, 5, 5, &p, &l, Some(&m))
    else {
        panic!("must stop")
    };
    assert_eq!(degraded.reason, "MemberNotReady");
    assert!(degraded.message.contains("e-3"), "{}", degraded.message);
}

#[test]
fn etcd_adds_a_learner_before_its_pod_and_promotes_it_once_caught_up() {
    let etcd = EnsembleEngine::Etcd;
    let m = membership(&[0, 1, 2], &[]);
    let l = live(3, 3, Role::Follower);
    assert!(matches!(
        step(etcd, 5, 3, &pods(3), &l, Some(&m)),
        Step::Join { ordinal: 3, .. }
    ));
    // The learner's pod runs but trails the leader: wait.
    let m = membership(&[0, 1, 2], &[3]);
    let mut l = live(4, 3, Role::Learner);
    l.members.get_mut("e-3").unwrap().as_mut().unwrap().applied = Some(1);
    l.members
        .get_mut("e-0")
        .unwrap()
        .as_mut()
        .unwrap()
        .committed = Some(5000);
    let Step::Wait(n) = step(etcd, 5, 4, &pods(4), &l, Some(&m)) else {
        panic!("must wait for the learner")
    };
    assert!(n.message.contains("e-3 to catch up"), "{}", n.message);
    // Caught up: promoted; nothing else is added meanwhile.
    let l = live(4, 3, Role::Learner);
    assert!(matches!(
        step(etcd, 5, 4, &pods(4), &l, Some(&m)),
        Step::Promote { ordinal: 3, .. }
    ));
    // Promoted: the next one joins.
    let m = membership(&[0, 1, 2, 3], &[]);
    let l = live(4, 4, Role::Follower);
    assert!(matches!(
        step(etcd, 5, 4, &pods(4), &l, Some(&m)),
        Step::Join { ordinal: 4, .. }
    ));
    // A learner whose pod is not there yet (the operator stopped after
    // the add): wait for it, add nothing more.
    let m = membership(&[0, 1, 2, 3], &[4]);
    assert!(matches!(
        step(etcd, 5, 5, &pods(4), &l, Some(&m)),
        Step::Wait(_)
    ));
}

#[test]
fn down_removes_the_highest_member_before_its_pod() {
    for engine in [EnsembleEngine::Zookeeper, EnsembleEngine::Etcd] {
        let m = membership(&[0, 1, 2, 3, 4], &[]);
        let l = live(5, 5, Role::Follower);
        assert!(
            matches!(
                step(engine, 3, 5, &pods(5), &l, Some(&m)),
                Step::Remove { ordinal: 4, .. }
            ),
            "{engine:?}"
        );
        // Removed from the engine (the pod may still answer, not as a
        // member): the StatefulSet shrinks by one.
        let m = membership(&[0, 1, 2, 3], &[]);
        let l = live(5, 4, Role::Learner);
        assert!(
            matches!(
                step(engine, 3, 5, &pods(5), &l, Some(&m)),
                Step::Shrink { ordinal: 4, .. }
            ),
            "{engine:?}"
        );
        // The next removal does not wait on the member already removed.
        let l = live(5, 4, Role::Learner);
        assert!(
            matches!(
                step(engine, 3, 4, &pods(5), &l, Some(&m)),
                Step::Remove { ordinal: 3, .. }
            ),
            "{engine:?}"
        );
    }
}

#[test]
fn a_removal_waits_until_the_ensemble_can_lose_a_member() {
    let m = membership(&[0, 1, 2, 3, 4], &[]);
    let mut l = live(5, 5, Role::Follower);
    l.members.insert("e-2".into(), None);
    let Step::Wait(n) = step(EnsembleEngine::Etcd, 3, 5, &pods(5), &l, Some(&m)) else {
        panic!("must wait")
    };
    assert!(n.message.contains("no answer from e-2"), "{}", n.message);
}

#[test]
fn voters_without_a_pod_are_removed_first() {
    let m = membership(&[0, 1, 2, 3, 4], &[]);
    let l = live(3, 3, Role::Follower);
    assert!(matches!(
        step(EnsembleEngine::Zookeeper, 3, 3, &pods(3), &l, Some(&m)),
        Step::Remove { ordinal: 4, .. }
    ));
}

#[test]
fn etcd_reports_a_pod_outside_the_member_list() {
    let m = membership(&[0, 2], &[]);
    let l = live(3, 3, Role::Follower);
    let Step::Wait(n) = step(EnsembleEngine::Etcd, 3, 3, &pods(3), &l, Some(&m)) else {
        panic!("must wait")
    };
    assert!(
        n.message
            .contains("e-1 has a pod but is not in etcd's member list"),
        "{}",
        n.message
    );
}

#[test]
fn pods_of_listed_members_come_back_first() {
    // The StatefulSet scaled down by hand to 1: no quorum, no leader, yet
    // the pods of the five listed members are restored.
    let l = live(1, 1, Role::Follower);
    let mut no_leader = l.clone();
    no_leader
        .members
        .insert("e-0".into(), Some(Answer::default()));
    let s = plan(&Input {
        engine: EnsembleEngine::Zookeeper,
        desired: 5,
        statefulset: 1,
        listed: 5,
        pods: &pods(1),
        live: &no_leader,
        membership: None,
        bound: BOUND,
    });
    assert!(matches!(s, Step::Grow { to: 5, .. }), "{s:?}");
}

#[test]
fn without_any_engine_answer_pods_are_added_but_never_removed() {
    let silent = Live {
        members: (0..3).map(|o| (format!("e-{o}"), None)).collect(),
    };
    let Step::Grow { to, progress } = step(EnsembleEngine::Etcd, 5, 3, &pods(3), &silent, None)
    else {
        panic!("must grow")
    };
    assert_eq!(to, 5);
    assert!(
        progress.message.contains("do not answer"),
        "{}",
        progress.message
    );
    assert!(matches!(
        step(EnsembleEngine::Etcd, 3, 5, &pods(5), &silent, None),
        Step::Wait(_)
    ));
}
