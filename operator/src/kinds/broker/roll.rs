//! Safe rolls: which pod to restart next, if any, so that a pod template
//! change (the StatefulSets roll `OnDelete`) reaches every pod without
//! losing the controller quorum or taking a partition below
//! `min.insync.replicas`. Pure, for unit tests; `orchestrate` acts on it.
//!
//! Order (as Strimzi's `KafkaRoller`): controllers first, the active
//! controller last among them, then brokers; one pod at a time, and only
//! when every pod of the Broker is present and ready, so that the last
//! restarted member has rejoined before the next goes.

use std::collections::BTreeMap;

use tessera_clients::kafka::Partition;

use crate::reconcile::Note;

/// What the roll needs to know of one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub pod: String,
    pub node_id: i32,
    /// A voter of the controller quorum (dedicated or combined).
    pub controller: bool,
    /// Hosts partitions (broker or combined).
    pub broker: bool,
    pub ready: bool,
    /// Runs an older pod template than its StatefulSet's.
    pub outdated: bool,
}

/// The next step of a roll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Every pod runs the current template.
    Done,
    /// Something must happen first; the note says what.
    Wait(Note),
    /// Restart (delete) this pod.
    Restart { pod: String, note: Note },
}

const REASON: &str = "RollingUpdate";

/// `min.insync.replicas` of each topic: its own setting where the cluster
/// reported it, else the cluster-wide value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MinInsync {
    pub cluster: usize,
    pub topics: BTreeMap<String, usize>,
}

impl MinInsync {
    pub fn of(&self, topic: &str) -> usize {
        self.topics.get(topic).copied().unwrap_or(self.cluster)
    }
}

impl From<usize> for MinInsync {
    fn from(cluster: usize) -> MinInsync {
        MinInsync {
            cluster,
            topics: BTreeMap::new(),
        }
    }
}

/// `members` are the pods that exist, `missing` the pods the StatefulSets
/// want but that do not exist (yet), `unobserved` the StatefulSets whose
/// controller has not seen their latest spec (their update revision, and so
/// which pods are outdated, is not known yet). `partitions` is every
/// partition of the cluster as Metadata reported it (None when no broker
/// answered).
pub fn next_step(
    members: &[Member],
    missing: &[String],
    unobserved: &[String],
    leader: Option<i32>,
    partitions: Option<&[(String, Partition)]>,
    min_insync: impl Into<MinInsync>,
) -> Step {
    let min_insync = min_insync.into();
    if let Some(sts) = unobserved.first() {
        // Acting now could restart brokers before controllers, or nothing.
        return Step::Wait(Note::new(
            REASON,
            format!("waiting for the StatefulSet controller to observe {sts}"),
        ));
    }
    let outdated: Vec<&Member> = members.iter().filter(|m| m.outdated).collect();
    if outdated.is_empty() {
        return Step::Done;
    }
    let remaining = format!("{} pods to restart", outdated.len());
    if let Some(pod) = missing.first() {
        return Step::Wait(Note::new(
            REASON,
            format!("waiting for {pod} to be created; {remaining}"),
        ));
    }
    if let Some(m) = members.iter().find(|m| !m.ready) {
        return Step::Wait(Note::new(
            REASON,
            format!("waiting for {} to be ready; {remaining}", m.pod),
        ));
    }
    let next = outdated
        .iter()
        .min_by_key(|m| (!m.controller, Some(m.node_id) == leader, m.node_id))
        .expect("not empty");
    if next.controller && leader.is_none() {
        return Step::Wait(Note::new(
            REASON,
            format!(
                "waiting for an active controller before restarting {}; {remaining}",
                next.pod
            ),
        ));
    }
    if next.broker {
        let Some(partitions) = partitions else {
            return Step::Wait(Note::new(
                REASON,
                format!(
                    "no broker answered Metadata: cannot check that restarting {} keeps \
                     every partition at min.insync.replicas; {remaining}",
                    next.pod
                ),
            ));
        };
        if let Some((topic, p)) = partitions
            .iter()
            .find(|(t, p)| would_fall_below(p, next.node_id, min_insync.of(t)))
        {
            return Step::Wait(Note::new(
                REASON,
                format!(
                    "restarting {} would take {topic}-{} below min.insync.replicas={} \
                     ({} of {} replicas in sync); {remaining}",
                    next.pod,
                    p.index,
                    min_insync.of(topic),
                    p.isr.len(),
                    p.replicas.len()
                ),
            ));
        }
    }
    Step::Restart {
        pod: next.pod.clone(),
        note: Note::new(REASON, format!("restarting {}; {remaining}", next.pod)),
    }
}

/// Whether restarting `node` takes partition `p` below `min_insync` in-sync
/// replicas (Strimzi's `KafkaAvailability`): a partition of the node
/// already below the minimum, or at the minimum with the node in sync
/// while it has more replicas than the minimum (with exactly the minimum,
/// any restart drops it, and waiting would never end).
pub fn would_fall_below(p: &Partition, node: i32, min_insync: usize) -> bool {
    if !p.replicas.contains(&node) {
        return false;
    }
    p.isr.len() < min_insync
        || (p.isr.len() == min_insync && p.isr.contains(&node) && p.replicas.len() > min_insync)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(pod: &str, node_id: i32, controller: bool, outdated: bool) -> Member {
        Member {
            pod: pod.into(),
            node_id,
            controller,
            broker: !controller,
            ready: true,
            outdated,
        }
    }

    fn partition(index: i32, replicas: &[i32], isr: &[i32]) -> (String, Partition) {
        (
            "orders".into(),
            Partition {
                index,
                error_code: 0,
                leader: isr.first().copied().unwrap_or(-1),
                replicas: replicas.to_vec(),
                isr: isr.to_vec(),
                offline_replicas: Vec::new(),
            },
        )
    }

    fn cluster(outdated: bool) -> Vec<Member> {
        vec![
            member("k-broker-0", 0, false, outdated),
            member("k-broker-1", 1, false, outdated),
            member("k-broker-2", 2, false, outdated),
            member("k-controller-0", 1000, true, outdated),
            member("k-controller-1", 1001, true, outdated),
            member("k-controller-2", 1002, true, outdated),
        ]
    }

    fn restart(step: Step) -> String {
        match step {
            Step::Restart { pod, .. } => pod,
            other => panic!("expected a restart, got {other:?}"),
        }
    }

    fn wait(step: Step) -> String {
        match step {
            Step::Wait(note) => note.message,
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    const HEALTHY: fn() -> Vec<(String, Partition)> = || {
        vec![
            partition(0, &[0, 1, 2], &[0, 1, 2]),
            partition(1, &[1, 2, 0], &[1, 2, 0]),
        ]
    };

    #[test]
    fn nothing_happens_before_the_statefulsets_are_observed() {
        let m = wait(next_step(
            &cluster(false),
            &[],
            &["k-controller".into()],
            Some(1000),
            None,
            2,
        ));
        assert!(m.contains("observe k-controller"), "{m}");
    }

    #[test]
    fn nothing_to_do_when_every_pod_is_current() {
        assert_eq!(
            next_step(&cluster(false), &[], &[], Some(1000), None, 2),
            Step::Done
        );
    }

    #[test]
    fn controllers_first_the_active_one_last_then_brokers_by_id() {
        let parts = HEALTHY();
        let mut members = cluster(true);
        let mut order = Vec::new();
        for _ in 0..6 {
            let pod = restart(next_step(&members, &[], &[], Some(1001), Some(&parts), 2));
            members.iter_mut().find(|m| m.pod == pod).unwrap().outdated = false;
            order.push(pod);
        }
        assert_eq!(
            order,
            [
                "k-controller-0",
                "k-controller-2",
                "k-controller-1",
                "k-broker-0",
                "k-broker-1",
                "k-broker-2"
            ]
        );
        assert_eq!(
            next_step(&members, &[], &[], Some(1001), Some(&parts), 2),
            Step::Done
        );
    }

    #[test]
    fn one_at_a_time_the_restarted_pod_comes_back_first() {
        let parts = HEALTHY();
        let mut members = cluster(true);
        members[3].ready = false;
        assert!(
            wait(next_step(&members, &[], &[], Some(1001), Some(&parts), 2))
                .contains("k-controller-0 to be ready")
        );
        let m = wait(next_step(
            &cluster(true),
            &["k-broker-1".into()],
            &[],
            Some(1001),
            Some(&parts),
            2,
        ));
        assert!(m.contains("k-broker-1 to be created"), "{m}");
    }

    #[test]
    fn no_controller_restarts_without_an_active_controller() {
        let m = wait(next_step(
            &cluster(true),
            &[],
            &[],
            None,
            Some(&HEALTHY()),
            2,
        ));
        assert!(m.contains("active controller"), "{m}");
    }

    #[test]
    fn a_broker_waits_while_a_partition_it_hosts_would_drop_below_min_insync() {
        let mut members = cluster(false);
        members[1].outdated = true; // k-broker-1, node 1
        // Node 1 in sync, ISR at the minimum: restarting it drops to 1.
        let parts = vec![partition(0, &[0, 1, 2], &[0, 1])];
        let m = wait(next_step(&members, &[], &[], Some(1000), Some(&parts), 2));
        assert!(
            m.contains("k-broker-1 would take orders-0 below min.insync.replicas=2 (2 of 3"),
            "{m}"
        );
        // Already below the minimum, even without node 1 in sync.
        let parts = vec![partition(0, &[0, 1, 2], &[0])];
        wait(next_step(&members, &[], &[], Some(1000), Some(&parts), 2));
        // Without a Metadata answer, no broker restarts.
        wait(next_step(&members, &[], &[], Some(1000), None, 2));
        // A partition the broker does not host does not matter.
        let parts = vec![partition(0, &[0, 2, 3], &[0, 2])];
        assert_eq!(
            restart(next_step(&members, &[], &[], Some(1000), Some(&parts), 2)),
            "k-broker-1"
        );
        // Replicas == min.insync: any restart drops it; do not wait forever.
        let parts = vec![partition(0, &[0, 1], &[0, 1])];
        assert_eq!(
            restart(next_step(&members, &[], &[], Some(1000), Some(&parts), 2)),
            "k-broker-1"
        );
    }

    #[test]
    fn a_topics_own_min_insync_counts_over_the_clusters() {
        let mut members = cluster(false);
        members[1].outdated = true; // k-broker-1, node 1
        let parts = vec![partition(0, &[0, 1, 2], &[0, 1])];
        // Cluster-wide 1: two in sync are plenty.
        assert_eq!(
            restart(next_step(&members, &[], &[], Some(1000), Some(&parts), 1)),
            "k-broker-1"
        );
        // The topic asks for 2: restarting node 1 would leave 1.
        let min = MinInsync {
            cluster: 1,
            topics: BTreeMap::from([("orders".to_string(), 2)]),
        };
        let m = wait(next_step(&members, &[], &[], Some(1000), Some(&parts), min));
        assert!(m.contains("below min.insync.replicas=2"), "{m}");
    }
}
