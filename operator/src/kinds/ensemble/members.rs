//! What the engines say about their members: each member's role, and
//! whether the ensemble could lose one member right now.
//!
//! The operator asks every member directly, by pod IP, with the shared
//! protocol clients: ZooKeeper's `srvr` and the leader's `mntr`, etcd's
//! `/metrics`. A member that does not answer within [`PROBE_TIMEOUT`] is
//! unknown; nothing here is an error, because an unreachable engine is a
//! fact to report, not a reason to fail the reconcile.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use tessera_api::EnsembleEngine;
use tessera_clients::zookeeper::{self, Mode, Srvr};
use tessera_clients::{etcd, promtext};

/// Per member; members are asked concurrently, so a pass waits this long
/// at most even when every engine is unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How far (in raft entries) an etcd member's applied index may trail the
/// leader's committed index and still count as caught up. The two are read
/// a few milliseconds apart under a live write load, so equality is too
/// strict; a member this close catches up from the leader's log, not from a
/// snapshot.
pub const ETCD_MAX_LAG: u64 = 1000;

/// A member's role, as its engine reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Observer,
    /// An etcd member that receives the log but does not vote yet.
    Learner,
    /// A ZooKeeper server that runs alone: in an ensemble of more than one
    /// member, it has lost its peers' configuration.
    Standalone,
}

impl Role {
    /// The name in `status.members[].role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Observer => "observer",
            Role::Learner => "learner",
            Role::Standalone => "standalone",
        }
    }
}

/// What one member's engine answered. `None` fields were not reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// `None`: the engine answers but serves no role (ZooKeeper "not
    /// currently serving requests", an etcd member without a leader).
    pub role: Option<Role>,
    /// ZooKeeper leader only: followers in sync with it (`zk_synced_followers`).
    pub synced_followers: Option<u64>,
    /// Leader only: voting members in the ensemble's current configuration
    /// (ZooKeeper's `zk_quorum_size`, etcd's member list less learners),
    /// which may include members that have no pod any more.
    pub voters: Option<u64>,
    /// Leader only: the ordinals of the voting members in its
    /// configuration (ZooKeeper's `conf`: `server.N` participants are
    /// ordinal N-1; etcd's member list, by peer URL).
    pub voting_ordinals: Option<BTreeSet<i32>>,
    /// etcd leader only: the ordinals of the learners in its member list.
    pub learner_ordinals: Option<BTreeSet<i32>>,
    /// etcd: raft entries this member has applied.
    pub applied: Option<u64>,
    /// etcd: raft entries this member knows to be committed.
    pub committed: Option<u64>,
}

/// Every member's answer, by pod name; `None` when it did not answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    pub members: BTreeMap<String, Option<Answer>>,
}

impl Live {
    /// The role of a member, when its engine said.
    pub fn role(&self, pod: &str) -> Option<Role> {
        self.members.get(pod)?.as_ref()?.role
    }

    /// The member that leads, when exactly one says it does.
    pub fn leader(&self) -> Option<&str> {
        let mut leaders = self
            .members
            .iter()
            .filter(|(_, a)| a.as_ref().and_then(|a| a.role) == Some(Role::Leader))
            .map(|(n, _)| n.as_str());
        let first = leaders.next();
        if leaders.next().is_some() {
            // Two leaders is a stale answer from a deposed one: claim none.
            return None;
        }
        first
    }

    /// A ZooKeeper follower that the leader's configuration does not list
    /// as a participant receives the log but does not vote (a pod added by
    /// a scale-up without a reconfig): it is a learner, not a follower.
    fn mark_non_voting(&mut self) {
        let voting = self
            .leader()
            .and_then(|l| self.members.get(l)?.as_ref()?.voting_ordinals.clone());
        let Some(voting) = voting else {
            return;
        };
        for (name, answer) in &mut self.members {
            let Some(a) = answer.as_mut() else { continue };
            let ordinal = super::orchestrate::ordinal(name);
            if a.role == Some(Role::Follower) && !ordinal.is_some_and(|o| voting.contains(&o)) {
                a.role = Some(Role::Learner);
            }
        }
    }

    /// The engine's members by ordinal, as the leader reports them.
    pub fn membership(&self) -> Option<super::scale::Membership> {
        let leader = self.members.get(self.leader()?)?.as_ref()?;
        Some(super::scale::Membership {
            voters: leader.voting_ordinals.clone()?,
            learners: leader.learner_ordinals.clone().unwrap_or_default(),
        })
    }

    /// The voting members the leader counts, when it said.
    pub fn voters(&self) -> Option<u64> {
        self.members.get(self.leader()?)?.as_ref()?.voters
    }

    /// How many members answered at all.
    pub fn answered(&self) -> usize {
        self.members.values().filter(|a| a.is_some()).count()
    }

    /// Whether the ensemble can lose any one of its members without losing
    /// quorum or data: every member answers and serves, there is one
    /// leader, and every other member has caught up with it. `Err` says,
    /// for users, what is missing.
    pub fn can_lose_one(&self, engine: EnsembleEngine) -> Result<(), String> {
        let silent: Vec<&str> = self
            .members
            .iter()
            .filter(|(_, a)| a.is_none())
            .map(|(n, _)| n.as_str())
            .collect();
        if !silent.is_empty() {
            return Err(format!("no answer from {}", silent.join(", ")));
        }
        let answers = || {
            self.members
                .iter()
                .filter_map(|(n, a)| Some((n, a.as_ref()?)))
        };
        let idle: Vec<&str> = answers()
            .filter(|(_, a)| {
                !matches!(a.role, Some(Role::Leader | Role::Follower | Role::Observer))
            })
            .map(|(n, _)| n.as_str())
            .collect();
        if !idle.is_empty() {
            return Err(format!(
                "{} not serving as leader or follower",
                idle.join(", ")
            ));
        }
        let Some(leader) = self.leader() else {
            return Err("no single leader".into());
        };
        let leader_answer = self.members[leader].as_ref().cloned().unwrap_or_default();
        match engine {
            EnsembleEngine::Zookeeper => {
                let followers = answers()
                    .filter(|(_, a)| a.role == Some(Role::Follower))
                    .count() as u64;
                let synced = leader_answer.synced_followers.unwrap_or(0);
                if synced < followers {
                    return Err(format!(
                        "leader {leader} has {synced} of {followers} followers in sync"
                    ));
                }
                majority_after_one(leader_answer.voters, followers + 1, synced + 1)?;
            }
            EnsembleEngine::Etcd => {
                let Some(committed) = leader_answer.committed else {
                    return Err(format!("leader {leader} did not report its commit index"));
                };
                let behind: Vec<String> = answers()
                    .filter(|(_, a)| {
                        a.applied
                            .is_none_or(|applied| committed.saturating_sub(applied) > ETCD_MAX_LAG)
                    })
                    .map(|(n, a)| match a.applied {
                        Some(applied) => format!("{n} ({} entries behind)", committed - applied),
                        None => format!("{n} (applied index unknown)"),
                    })
                    .collect();
                if !behind.is_empty() {
                    return Err(format!(
                        "not caught up with the leader: {}",
                        behind.join(", ")
                    ));
                }
                let voting = answers()
                    .filter(|(_, a)| matches!(a.role, Some(Role::Leader | Role::Follower)))
                    .count() as u64;
                majority_after_one(leader_answer.voters, voting, voting)?;
            }
        }
        Ok(())
    }
}

/// The members `up` (in sync with the leader, the leader included), less
/// the one to restart, must still be a majority of the voters the engine
/// knows (`voters`, or the `seen` members when it did not say): after a
/// scale-down, its configuration can still count members whose pods are
/// gone, and restarting one more would lose the quorum.
fn majority_after_one(voters: Option<u64>, seen: u64, up: u64) -> Result<(), String> {
    let voters = voters.unwrap_or(seen);
    let majority = voters / 2 + 1;
    if up.saturating_sub(1) < majority {
        return Err(format!(
            "{voters} voting members need {majority} up after losing one, and {up} are up"
        ));
    }
    Ok(())
}

/// Asks every pod's engine, concurrently. Pods without an IP yet, or being
/// deleted, count as not answering.
pub async fn observe(engine: EnsembleEngine, pods: &[&Arc<Pod>]) -> Live {
    let asks = pods.iter().map(|p| async move {
        let ip = p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|_| p.metadata.deletion_timestamp.is_none());
        let answer = match ip {
            Some(ip) => ask(engine, &ip).await,
            None => None,
        };
        (p.name_any(), answer)
    });
    let mut live = Live {
        members: futures::future::join_all(asks).await.into_iter().collect(),
    };
    live.mark_non_voting();
    live
}

async fn ask(engine: EnsembleEngine, ip: &str) -> Option<Answer> {
    match engine {
        EnsembleEngine::Zookeeper => ask_zookeeper(ip).await,
        EnsembleEngine::Etcd => ask_etcd(ip).await,
    }
}

async fn ask_zookeeper(ip: &str) -> Option<Answer> {
    let addr = format!("{ip}:{}", super::zookeeper::CLIENT_PORT);
    let srvr = zookeeper::four_letter(&addr, "srvr", PROBE_TIMEOUT)
        .await
        .ok()?;
    let srvr = Srvr::parse(&srvr).ok()?;
    let mut answer = Answer {
        role: zookeeper_role(srvr.mode),
        ..Answer::default()
    };
    if srvr.mode == Mode::Leader {
        // Only the leader knows which followers are in sync with it.
        if let Ok(m) = zookeeper::four_letter(&addr, "mntr", PROBE_TIMEOUT).await {
            answer.synced_followers = mntr_value(&m, "zk_synced_followers");
            answer.voters = mntr_value(&m, "zk_quorum_size");
        }
        if let Ok(c) = zookeeper::four_letter(&addr, "conf", PROBE_TIMEOUT).await {
            answer.voting_ordinals = Some(voting_ordinals(&c));
        }
    }
    Some(answer)
}

/// The ordinals of the participants in a `conf` reply: `server.N=host:
/// peer:election[:participant|:observer];client`, N being ordinal + 1.
pub fn voting_ordinals(conf: &str) -> BTreeSet<i32> {
    conf.lines()
        .filter_map(|l| {
            let (key, value) = l.split_once('=')?;
            let id: i32 = key.trim().strip_prefix("server.")?.parse().ok()?;
            let addresses = value.split(';').next().unwrap_or_default();
            (!addresses.ends_with(":observer")).then_some(id - 1)
        })
        .collect()
}

fn zookeeper_role(mode: Mode) -> Option<Role> {
    match mode {
        Mode::Leader => Some(Role::Leader),
        Mode::Follower => Some(Role::Follower),
        Mode::Observer => Some(Role::Observer),
        Mode::Standalone => Some(Role::Standalone),
        Mode::NotServing | Mode::Other => None,
    }
}

/// A count from a leader's `mntr`: `zk_synced_followers` (voting
/// followers only: observers are `zk_synced_non_voting_followers`) or
/// `zk_quorum_size`.
pub fn mntr_value(mntr: &str, key: &str) -> Option<u64> {
    zookeeper::parse_mntr(mntr)
        .into_iter()
        .find(|l| l.key == key)
        .and_then(|l| l.value.parse().ok())
}

async fn ask_etcd(ip: &str) -> Option<Answer> {
    let url = format!("http://{ip}:{}", super::etcd::CLIENT_PORT);
    let client = etcd::Client::new(&url, PROBE_TIMEOUT, None).ok()?;
    let metrics = client.metrics().await.ok()?;
    let mut answer = etcd_answer(&metrics);
    if answer.role == Some(Role::Leader)
        && let Ok(list) = client.member_list().await
    {
        answer.voters = Some(list.iter().filter(|m| !m.is_learner).count() as u64);
        let (voting, learners) = etcd_ordinals(&list);
        answer.voting_ordinals = Some(voting);
        answer.learner_ordinals = Some(learners);
    }
    Some(answer)
}

/// The ordinals of the voting members and of the learners in etcd's
/// member list, from each member's first peer URL (`http://<pod>.
/// <headless>...`): an added member has no name until it starts, but has
/// its peer URL from the start. Members of no pod of ours are left out.
pub fn etcd_ordinals(members: &[etcd::Member]) -> (BTreeSet<i32>, BTreeSet<i32>) {
    let mut voting = BTreeSet::new();
    let mut learners = BTreeSet::new();
    for m in members {
        let Some(ordinal) = m.peer_urls.first().and_then(|u| peer_url_ordinal(u)) else {
            continue;
        };
        if m.is_learner {
            learners.insert(ordinal);
        } else {
            voting.insert(ordinal);
        }
    }
    (voting, learners)
}

/// `http://e-3.e-headless.ns.svc:2380` is ordinal 3.
pub fn peer_url_ordinal(url: &str) -> Option<i32> {
    let host = url.split("://").nth(1)?.split(['.', ':', '/']).next()?;
    super::orchestrate::ordinal(host)
}

/// A member's role and raft progress from its `/metrics`.
pub fn etcd_answer(metrics: &str) -> Answer {
    let samples = promtext::parse(metrics);
    let value = |name: &str| samples.iter().find(|s| s.name == name).map(|s| s.value);
    let flag = |name: &str| value(name) == Some(1.0);
    let role = if flag("etcd_server_is_learner") {
        Some(Role::Learner)
    } else if flag("etcd_server_is_leader") {
        Some(Role::Leader)
    } else if flag("etcd_server_has_leader") {
        Some(Role::Follower)
    } else {
        None
    };
    // Counters are exposed as floats; raft indexes fit f64's 53 bits.
    let index = |name: &str| value(name).filter(|v| *v >= 0.0).map(|v| v as u64);
    Answer {
        role,
        applied: index("etcd_server_proposals_applied_total"),
        committed: index("etcd_server_proposals_committed_total"),
        ..Answer::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etcd(applied: u64, committed: u64, leader: bool) -> Option<Answer> {
        Some(Answer {
            role: Some(if leader { Role::Leader } else { Role::Follower }),
            applied: Some(applied),
            committed: Some(committed),
            ..Answer::default()
        })
    }

    fn live(members: Vec<Option<Answer>>) -> Live {
        Live {
            members: members
                .into_iter()
                .enumerate()
                .map(|(i, a)| (format!("etcd-{i}"), a))
                .collect(),
        }
    }

    #[test]
    fn etcd_roles_and_progress_come_from_its_metrics() {
        let m = "# HELP etcd_server_is_leader x\n# TYPE etcd_server_is_leader gauge\n\
                 etcd_server_is_leader 1\netcd_server_has_leader 1\netcd_server_is_learner 0\n\
                 etcd_server_proposals_applied_total 41\netcd_server_proposals_committed_total 42\n";
        let a = etcd_answer(m);
        assert_eq!(a.role, Some(Role::Leader));
        assert_eq!((a.applied, a.committed), (Some(41), Some(42)));
        let follower = etcd_answer("etcd_server_is_leader 0\netcd_server_has_leader 1\n");
        assert_eq!(follower.role, Some(Role::Follower));
        assert_eq!(follower.applied, None);
        let learner = etcd_answer("etcd_server_is_learner 1\netcd_server_has_leader 1\n");
        assert_eq!(learner.role, Some(Role::Learner));
        let lost = etcd_answer("etcd_server_is_leader 0\netcd_server_has_leader 0\n");
        assert_eq!(lost.role, None);
        assert_eq!(etcd_answer("garbage{\n").role, None);
    }

    #[test]
    fn zookeeper_counts_from_the_leaders_mntr() {
        let mntr = "zk_server_state\tleader\nzk_synced_followers\t2\nzk_quorum_size\t3\n";
        assert_eq!(mntr_value(mntr, "zk_synced_followers"), Some(2));
        assert_eq!(mntr_value(mntr, "zk_quorum_size"), Some(3));
        assert_eq!(
            mntr_value("zk_server_state\tfollower\n", "zk_synced_followers"),
            None
        );
        assert_eq!(
            mntr_value("zk_synced_followers\tmany\n", "zk_synced_followers"),
            None
        );
    }

    fn zk(role: Role, synced: Option<u64>, voters: Option<u64>) -> Option<Answer> {
        Some(Answer {
            role: Some(role),
            synced_followers: synced,
            voters,
            ..Answer::default()
        })
    }

    #[test]
    fn zookeeper_can_lose_one_only_with_a_majority_of_its_voters_left() {
        let three = live(vec![
            zk(Role::Leader, Some(2), Some(3)),
            zk(Role::Follower, None, None),
            zk(Role::Follower, None, None),
        ]);
        assert_eq!(three.can_lose_one(EnsembleEngine::Zookeeper), Ok(()));
        // Scaled down from 5 to 3 pods while the configuration still counts
        // 5 voters: restarting one more would leave 2 of 5.
        let shrunk = live(vec![
            zk(Role::Leader, Some(2), Some(5)),
            zk(Role::Follower, None, None),
            zk(Role::Follower, None, None),
        ]);
        assert_eq!(
            shrunk.can_lose_one(EnsembleEngine::Zookeeper).unwrap_err(),
            "5 voting members need 3 up after losing one, and 3 are up"
        );
        // Without zk_quorum_size, the members seen are the voters.
        let unknown = live(vec![
            zk(Role::Leader, Some(2), None),
            zk(Role::Follower, None, None),
            zk(Role::Follower, None, None),
        ]);
        assert_eq!(unknown.can_lose_one(EnsembleEngine::Zookeeper), Ok(()));
    }

    #[test]
    fn one_leader_or_none() {
        let l = live(vec![etcd(1, 1, true), etcd(1, 1, false), None]);
        assert_eq!(l.leader(), Some("etcd-0"));
        assert_eq!(l.role("etcd-2"), None);
        assert_eq!(l.answered(), 2);
        let two = live(vec![etcd(1, 1, true), etcd(1, 1, true)]);
        assert_eq!(two.leader(), None);
        assert_eq!(
            two.can_lose_one(EnsembleEngine::Etcd).unwrap_err(),
            "no single leader"
        );
    }

    #[test]
    fn zookeeper_followers_outside_the_leaders_configuration_are_learners() {
        let conf = "clientPort=2181\nserver.1=zk-0.h:2888:3888:participant;0.0.0.0:2181\n\
                    server.2=zk-1.h:2888:3888:participant;0.0.0.0:2181\n\
                    server.3=zk-2.h:2888:3888;2181\nserver.9=x:1:2:observer;2181\nversion=100000000\n";
        assert_eq!(voting_ordinals(conf), BTreeSet::from([0, 1, 2]));
        let mut leader = zk(Role::Leader, Some(4), Some(3)).unwrap();
        leader.voting_ordinals = Some(BTreeSet::from([0, 1, 2]));
        let mut l = Live {
            members: (0..5)
                .map(|i| {
                    let a = if i == 2 {
                        Some(leader.clone())
                    } else {
                        zk(Role::Follower, None, None)
                    };
                    (format!("zk-{i}"), a)
                })
                .collect(),
        };
        l.mark_non_voting();
        let roles: Vec<_> = (0..5).map(|i| l.role(&format!("zk-{i}"))).collect();
        assert_eq!(
            roles,
            [
                Some(Role::Follower),
                Some(Role::Follower),
                Some(Role::Leader),
                Some(Role::Learner),
                Some(Role::Learner)
            ]
        );
        assert_eq!(l.voters(), Some(3));
        assert!(
            l.can_lose_one(EnsembleEngine::Zookeeper)
                .unwrap_err()
                .contains("zk-3, zk-4 not serving")
        );
    }

    #[test]
    fn etcd_members_by_ordinal_from_their_peer_urls() {
        let member = |id: u64, url: &str, learner: bool| etcd::Member {
            id,
            peer_urls: vec![url.into()],
            is_learner: learner,
            ..etcd::Member::default()
        };
        let list = [
            member(1, "http://e-0.e-headless.ns.svc:2380", false),
            member(2, "http://e-3.e-headless.ns.svc:2380", true),
            member(3, "http://10.0.0.1:2380", false),
        ];
        assert_eq!(
            etcd_ordinals(&list),
            (BTreeSet::from([0]), BTreeSet::from([3]))
        );
        assert_eq!(peer_url_ordinal("http://e-12.h.ns.svc:2380"), Some(12));
        assert_eq!(peer_url_ordinal("e-1"), None);
        // Five members configured, three pods left: restarting one would
        // leave two of five.
        let mut shrunk = live(vec![etcd(9, 9, true), etcd(9, 9, false), etcd(9, 9, false)]);
        if let Some(Some(leader)) = shrunk.members.get_mut("etcd-0") {
            leader.voters = Some(5);
        }
        assert_eq!(
            shrunk.can_lose_one(EnsembleEngine::Etcd).unwrap_err(),
            "5 voting members need 3 up after losing one, and 3 are up"
        );
    }

    #[test]
    fn etcd_can_lose_one_only_with_every_member_caught_up() {
        let ok = live(vec![
            etcd(5000, 5000, true),
            etcd(4990, 4995, false),
            etcd(4100, 4200, false),
        ]);
        assert_eq!(ok.can_lose_one(EnsembleEngine::Etcd), Ok(()));
        let behind = live(vec![
            etcd(5000, 5000, true),
            etcd(5000, 5000, false),
            etcd(3000, 5000, false),
        ]);
        assert_eq!(
            behind.can_lose_one(EnsembleEngine::Etcd).unwrap_err(),
            "not caught up with the leader: etcd-2 (2000 entries behind)"
        );
        let learner = live(vec![
            etcd(5, 5, true),
            etcd(5, 5, false),
            Some(Answer {
                role: Some(Role::Learner),
                ..Answer::default()
            }),
        ]);
        assert!(
            learner
                .can_lose_one(EnsembleEngine::Etcd)
                .unwrap_err()
                .contains("etcd-2 not serving")
        );
        let mut no_index = live(vec![etcd(5, 5, true), etcd(5, 5, false)]);
        no_index
            .members
            .get_mut("etcd-0")
            .unwrap()
            .as_mut()
            .unwrap()
            .committed = None;
        assert!(
            no_index
                .can_lose_one(EnsembleEngine::Etcd)
                .unwrap_err()
                .contains("commit index")
        );
    }
}
