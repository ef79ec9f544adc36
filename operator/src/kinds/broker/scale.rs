//! A guarded broker scale-down: `build` never shrinks the brokers'
//! StatefulSet; [`plan`] removes the highest broker only once it holds no
//! partition replica, and unregisters removed brokers once their pods are
//! gone (Kafka 3.9 keeps a stopped broker registered, fenced, and lists
//! only unfenced ones, so the ids are remembered in status). Scaling up
//! needs nothing: a new broker registers itself. Pure; `orchestrate` acts.

use tessera_clients::kafka::Partition;

use crate::reconcile::Note;

/// The reason of the conditions while a scale-down waits for replicas to
/// move.
pub const BLOCKED: &str = "ScaleDownBlocked";
const REASON: &str = "ScalingDown";

/// What to do about the brokers' count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Settled,
    /// No broker answered: what the highest broker holds is unknown.
    Wait(Note),
    /// The highest broker still holds replicas: the user must move them.
    Blocked(Note),
    /// The highest broker holds nothing: shrink the StatefulSet to `to`.
    Shrink {
        to: i32,
        note: Note,
    },
    /// Unregister these removed brokers (their pods are gone).
    Unregister(Vec<i32>),
}

/// `desired` is `spec.replicas`, `statefulset` the brokers' StatefulSet's
/// size, `pods` the broker ordinals that have a pod, `registered` the ids
/// known to be registered (status and Metadata). A broker's node id is its
/// ordinal.
pub fn plan(
    desired: i32,
    statefulset: i32,
    pods: &[i32],
    registered: &[i32],
    partitions: Option<&[(String, Partition)]>,
) -> Step {
    // Registered, outside the StatefulSet, and its pod gone: a stopped
    // broker that would register again if it still ran.
    let gone: Vec<i32> = registered
        .iter()
        .copied()
        .filter(|id| *id >= statefulset && !pods.contains(id))
        .collect();
    if !gone.is_empty() {
        return Step::Unregister(gone);
    }
    if statefulset <= desired {
        return Step::Settled;
    }
    let highest = statefulset - 1;
    let Some(partitions) = partitions else {
        return Step::Wait(Note::new(
            REASON,
            format!(
                "Waiting for a broker to answer before removing broker {highest}: what it holds is \
                 unknown"
            ),
        ));
    };
    let held: Vec<String> = partitions
        .iter()
        .filter(|(_, p)| p.replicas.contains(&highest))
        .map(|(t, p)| format!("{t}-{}", p.index))
        .collect();
    if !held.is_empty() {
        let shown = held.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        let more = if held.len() > 5 {
            format!(" and {} more", held.len() - 5)
        } else {
            String::new()
        };
        return Step::Blocked(Note::new(
            BLOCKED,
            format!(
                "Scaling down to {desired} brokers waits: broker {highest} still holds {} partition \
                 replica(s) ({shown}{more}); move them to brokers 0-{} (kafka-reassign-partitions) \
                 and the scale-down continues",
                held.len(),
                desired - 1
            ),
        ));
    }
    Step::Shrink {
        to: highest,
        note: Note::new(
            REASON,
            format!(
                "Removing broker {highest}: it holds no partition replica ({statefulset} to {desired} brokers)"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(index: i32, replicas: &[i32]) -> (String, Partition) {
        (
            "t".into(),
            Partition {
                index,
                error_code: 0,
                leader: replicas[0],
                replicas: replicas.to_vec(),
                isr: replicas.to_vec(),
                offline_replicas: vec![],
            },
        )
    }

    #[test]
    fn nothing_to_do_at_the_spec_or_above_it() {
        let parts = [partition(0, &[0, 1, 2])];
        assert_eq!(
            plan(3, 3, &[0, 1, 2], &[0, 1, 2], Some(&parts)),
            Step::Settled
        );
        // Up: the StatefulSet grows through build; a new broker registers.
        assert_eq!(
            plan(4, 3, &[0, 1, 2], &[0, 1, 2], Some(&parts)),
            Step::Settled
        );
    }

    #[test]
    fn a_broker_holding_replicas_blocks_the_scale_down_naming_them() {
        let parts = [
            partition(0, &[3, 0, 1]),
            partition(1, &[0, 1, 2]),
            partition(2, &[1, 3, 2]),
        ];
        let Step::Blocked(note) = plan(3, 4, &[0, 1, 2, 3], &[0, 1, 2, 3], Some(&parts)) else {
            panic!("must block")
        };
        assert_eq!(note.reason, BLOCKED);
        assert!(
            note.message
                .contains("broker 3 still holds 2 partition replica(s) (t-0, t-2)"),
            "{}",
            note.message
        );
        assert!(note.message.contains("brokers 0-2"), "{}", note.message);
        // Unknown holdings: wait, never shrink blind.
        assert!(matches!(
            plan(3, 4, &[0, 1, 2, 3], &[], None),
            Step::Wait(_)
        ));
    }

    #[test]
    fn an_empty_broker_goes_then_is_unregistered_once_its_pod_is_gone() {
        let parts = [partition(0, &[0, 1, 2])];
        assert!(matches!(
            plan(3, 4, &[0, 1, 2, 3], &[0, 1, 2, 3], Some(&parts)),
            Step::Shrink { to: 3, .. }
        ));
        // Shrunk, the pod still stopping: nothing yet.
        assert_eq!(
            plan(3, 3, &[0, 1, 2, 3], &[0, 1, 2, 3], Some(&parts)),
            Step::Settled
        );
        // The pod gone: unregister it (also when no broker lists it).
        assert_eq!(
            plan(3, 3, &[0, 1, 2], &[0, 1, 2, 3], None),
            Step::Unregister(vec![3])
        );
    }

    #[test]
    fn long_lists_are_shortened() {
        let parts: Vec<_> = (0..8).map(|i| partition(i, &[1, 2, 3])).collect();
        let Step::Blocked(note) = plan(3, 4, &[0, 1, 2, 3], &[], Some(&parts)) else {
            panic!("must block")
        };
        assert!(note.message.contains("t-4 and 3 more"), "{}", note.message);
    }
}
