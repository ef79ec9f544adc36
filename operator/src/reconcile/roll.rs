//! Rolling a pod template change through a group of members (an
//! Ensemble, a shard of a ShardedStore), one member at a time.
//!
//! The StatefulSets' update strategy is `OnDelete`: the StatefulSet
//! controller recreates a deleted pod on the latest revision, and the
//! operator chooses which pod to delete and when. [`plan`] decides from
//! what is observed now (pods, their revisions, readiness, the engines'
//! verdict) and nothing remembered, so that an operator restarted in the
//! middle of a roll resumes it, and it deletes a member only while every
//! member is present, ready and caught up: never two at once. Each kind
//! says what "caught up" means (`Input::gate`) and which member goes last
//! (`Input::last`: a leader, a primary).

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

use crate::reconcile::Note;
use crate::reconcile::orchestrate::delete_pod;
use crate::reconcile::status::{pod_ready, terminating};
use crate::runtime::context::Context;
use crate::runtime::error::{Error, Result};

/// How long a member replaced by the roll may take to be ready again
/// before the roll stops and the resource reports `Degraded`.
pub const MEMBER_READY_BOUND: Duration = Duration::from_secs(300);

/// While a roll goes on, look again this soon: the next member waits for
/// the last one, and a pod's readiness does not always trigger a reconcile
/// promptly enough for a short roll.
pub const ROLL_REQUEUE: Duration = Duration::from_secs(2);
/// A stopped roll needs a person; look again at a calmer pace.
pub const STUCK_REQUEUE: Duration = Duration::from_secs(30);

/// The label the StatefulSet controller puts on each pod: the revision of
/// the pod template it was created from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// What the roll needs to know about one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    pub name: String,
    pub ordinal: i32,
    pub revision: Option<String>,
    pub ready: bool,
    pub terminating: bool,
    /// Since the pod was created.
    pub age: Duration,
}

/// The roll's next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Every member runs the latest revision (or the StatefulSet's status
    /// is not current yet, and nothing can be decided).
    Settled,
    /// Members are outdated but one cannot be replaced safely now.
    Wait(Note),
    /// A replaced member did not come back within the bound: the roll
    /// stops until it does (or the spec changes).
    Stuck { progress: Note, degraded: Note },
    /// Replace this pod (for most, delete it: the StatefulSet controller
    /// recreates it on the latest revision).
    Replace { pod: String, progress: Note },
}

/// Everything [`plan`] decides from.
pub struct Input<'a> {
    pub desired: i32,
    /// The StatefulSet's `updateRevision`, when its status is current
    /// (`observedGeneration` has reached `generation`).
    pub update_revision: Option<&'a str>,
    pub pods: &'a [PodFacts],
    /// The engines' verdict on losing one member now: `Err(why)` waits.
    /// None when no engine answers the operator (a network policy, or pods
    /// that do not really run): readiness is then all there is to go by,
    /// and the progress message says so.
    pub gate: Option<Result<(), String>>,
    /// The member replaced last (a leader, a primary), so that the group
    /// changes leader once.
    pub last: Option<&'a str>,
    /// A member's role as its engine reports it, for messages.
    pub role: &'a dyn Fn(&str) -> Option<&'static str>,
    /// What to call the group in messages ("the ensemble", "shard-0").
    pub group: &'a str,
    pub bound: Duration,
}

const REASON: &str = "RollingUpdate";

/// The next step of the roll. Pure.
pub fn plan(input: &Input) -> Plan {
    let Some(revision) = input.update_revision else {
        return Plan::Settled;
    };
    // Pods beyond `desired` are the StatefulSet's to remove on a scale-down.
    let members: Vec<&PodFacts> = input
        .pods
        .iter()
        .filter(|p| p.ordinal < input.desired)
        .collect();
    let current = |p: &PodFacts| p.revision.as_deref() == Some(revision);
    let outdated: Vec<&PodFacts> = members.iter().copied().filter(|p| !current(p)).collect();
    if outdated.is_empty() {
        return Plan::Settled;
    }
    let updated = members.iter().filter(|p| current(p)).count();
    let count = format!("{updated}/{} members updated", input.desired);

    // A member the roll replaced that is not back in time: stop here.
    if let Some(p) = members
        .iter()
        .find(|p| current(p) && !p.ready && p.age > input.bound)
    {
        let why = format!(
            "{} runs the new revision but has not been ready for {}s; the roll stops until it is \
             ready or the spec changes",
            p.name,
            input.bound.as_secs()
        );
        return Plan::Stuck {
            progress: Note::new(REASON, format!("Stopped: {why} ({count})")),
            degraded: Note::new("MemberNotReady", why),
        };
    }

    // An outdated member that is down anyway (a pod of a broken revision
    // that a later spec fixed) goes first, as soon as every other member
    // is up: deleting it takes nothing from the quorum, and waiting for it
    // to be ready would wait forever.
    let all_present = (0..input.desired).all(|o| members.iter().any(|p| p.ordinal == o));
    let down: Vec<&PodFacts> = members
        .iter()
        .copied()
        .filter(|p| p.terminating || !p.ready)
        .collect();
    if let [broken] = down[..]
        && all_present
        && !broken.terminating
        && !current(broken)
    {
        return Plan::Replace {
            pod: broken.name.clone(),
            progress: Note::new(
                REASON,
                format!(
                    "Replacing member {} (not ready, on an old revision), {count}",
                    broken.name
                ),
            ),
        };
    }

    // Every member present, ready, and not on its way out.
    let missing: Vec<String> = (0..input.desired)
        .filter(|o| !members.iter().any(|p| p.ordinal == *o))
        .map(|o| format!("ordinal {o}"))
        .collect();
    let waiting: Vec<String> = members
        .iter()
        .filter(|p| p.terminating || !p.ready)
        .map(|p| p.name.clone())
        .chain(missing)
        .collect();
    if !waiting.is_empty() {
        return Plan::Wait(Note::new(
            REASON,
            format!(
                "Waiting for {} to be ready before replacing the next member ({count})",
                waiting.join(", ")
            ),
        ));
    }

    // The engines must agree that one member can go. Without their answer
    // the sidecar's readiness probe, which already requires the engine to
    // serve, is what is left.
    if let Some(Err(why)) = &input.gate {
        return Plan::Wait(Note::new(
            REASON,
            format!(
                "Waiting until {} can lose a member: {why} ({count})",
                input.group
            ),
        ));
    }

    // Followers first, from the highest ordinal; the leader last, so that
    // the group elects once.
    let victim = outdated
        .iter()
        .max_by_key(|p| (input.last != Some(p.name.as_str()), p.ordinal))
        .expect("outdated is not empty");
    let role_text = match (input.role)(&victim.name) {
        Some(r) => r,
        None if input.gate.is_some() => "role unknown",
        None => "roles unknown: engines do not answer the operator",
    };
    Plan::Replace {
        pod: victim.name.clone(),
        progress: Note::new(
            REASON,
            format!("Replacing member {} ({role_text}), {count}", victim.name),
        ),
    }
}

/// `updateRevision`, once the StatefulSet controller has seen the latest
/// spec; before that, the revision pods are compared with would be stale.
pub fn update_revision(sts: &StatefulSet) -> Option<String> {
    let status = sts.status.as_ref()?;
    let current = status.observed_generation >= sts.metadata.generation;
    current.then(|| status.update_revision.clone()).flatten()
}

/// The revision of the pod template a pod was created from.
pub fn revision(pod: &Pod) -> Option<&str> {
    pod.labels().get(REVISION_LABEL).map(String::as_str)
}

/// What the roll needs of `pod`, at `now`.
pub fn pod_facts(pod: &Pod, now: Timestamp) -> PodFacts {
    let name = pod.name_any();
    let age = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(now.duration_since(t.0)).ok())
        .unwrap_or_default();
    PodFacts {
        ordinal: ordinal(&name).unwrap_or(i32::MAX),
        revision: revision(pod).map(str::to_string),
        ready: pod_ready(pod),
        terminating: terminating(pod),
        age,
        name,
    }
}

/// The ordinal of a StatefulSet pod: the number after the last dash.
pub fn ordinal(pod: &str) -> Option<i32> {
    pod.rsplit_once('-')?.1.parse().ok()
}

/// Deletes the pod `pod` of `pods` (listed from the API server) for the
/// roll, and returns its `MemberReplaced` Event saying `why`. The pod is
/// the Event's related object, with its uid: it names the member in
/// `kubectl describe`, and the Recorder folds only Events with the same
/// related object into one series, so each replaced member (each pod
/// incarnation) gets an Event of its own.
pub async fn replace_member(
    api: &Api<Pod>,
    pods: &[Pod],
    pod: &str,
    why: String,
    kind: &'static str,
    ctx: &Context,
) -> Result<Event> {
    let target = pods
        .iter()
        .find(|p| p.name_any() == pod)
        .ok_or(Error::MissingField("the pod chosen by the roll"))?;
    delete_pod(api, target).await?;
    ctx.metrics.write(kind, "delete", "pods");
    Ok(Event {
        type_: EventType::Normal,
        reason: "MemberReplaced".into(),
        note: Some(why),
        action: "RollingUpdate".into(),
        secondary: Some(target.object_ref(&())),
    })
}
