//! `update_status`: conditions, replica counts and the selector, written
//! only when they differ from what the object already reports.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use tessera_api::conditions::{DEGRADED, PROGRESSING, READY};
use tessera_api::{CommonStatus, Invalid};
use tracing::warn;

use super::apply::Report;
use super::observed::ObservedComponent;
use super::{Managed, Note, Observed, Orchestrated, condition};
use crate::kinds::shared::MANAGER;
use crate::runtime::context::Context;
use crate::runtime::error::{Error, Result};

/// One component's counts; pure, for unit tests.
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentFacts {
    /// "members", "brokers": the word in the messages.
    pub noun: &'static str,
    pub desired: i32,
    pub replicas: i32,
    pub ready: i32,
    /// Pods on the StatefulSet's latest revision (`updatedReplicas`).
    pub updated: i32,
    /// A StatefulSet exists, its controller has seen its latest spec, and
    /// that spec asks for `desired` replicas.
    pub rolled_out: bool,
    /// Pods that exist but are not Ready, by name: the conditions name them.
    pub not_ready: Vec<String>,
    /// Not-ready pods whose container stopped with a termination message
    /// ("pod (container): message"): what a start script reports when it
    /// refuses to go on (a Kafka volume of another cluster).
    pub failing: Vec<String>,
}

impl ComponentFacts {
    pub fn observe(c: &ObservedComponent) -> ComponentFacts {
        let unready: Vec<&Arc<Pod>> = c.pods.iter().filter(|p| unready(p)).collect();
        let mut f = ComponentFacts {
            noun: c.component.noun,
            desired: c.component.desired,
            replicas: 0,
            ready: 0,
            updated: 0,
            rolled_out: !c.statefulsets.is_empty(),
            not_ready: unready.iter().map(|p| p.name_any()).collect(),
            failing: unready
                .iter()
                .flat_map(|p| termination_messages(p))
                .collect(),
        };
        let mut spec_replicas = 0;
        for sts in &c.statefulsets {
            let status = sts.status.clone().unwrap_or_default();
            f.replicas += status.replicas;
            f.ready += status.ready_replicas.unwrap_or(0);
            f.updated += status.updated_replicas.unwrap_or(0);
            spec_replicas += sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            f.rolled_out &= status.observed_generation >= sts.metadata.generation;
        }
        f.rolled_out &= spec_replicas == f.desired;
        f
    }

    fn all_ready(&self) -> bool {
        self.rolled_out && self.ready == self.desired
    }

    /// Every pod runs the latest pod template.
    fn all_updated(&self) -> bool {
        self.updated >= self.desired
    }
}

/// What the conditions are derived from; pure, for unit tests.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    pub generation: Option<i64>,
    pub components: Vec<ComponentFacts>,
    pub paused: bool,
    pub invalid: Option<&'a Invalid>,
    /// Engine-level work under way, from `orchestrate`.
    pub progress: Option<&'a Note>,
    /// Engine-level work stuck, from `orchestrate`.
    pub degraded: Option<&'a Note>,
}

impl Facts<'_> {
    pub fn observe<'a>(
        generation: Option<i64>,
        paused: bool,
        invalid: Option<&'a Invalid>,
        observed: &Observed,
    ) -> Facts<'a> {
        Facts {
            generation,
            components: observed
                .components
                .iter()
                .map(ComponentFacts::observe)
                .collect(),
            paused,
            invalid,
            progress: None,
            degraded: None,
        }
    }

    pub fn replicas(&self) -> i32 {
        self.components.iter().map(|c| c.replicas).sum()
    }

    pub fn ready(&self) -> i32 {
        self.components.iter().map(|c| c.ready).sum()
    }

    fn all_ready(&self) -> bool {
        self.components.iter().all(ComponentFacts::all_ready)
            && self.components.iter().map(|c| c.desired).sum::<i32>() > 0
    }

    fn all_updated(&self) -> bool {
        self.components.iter().all(ComponentFacts::all_updated)
    }

    /// "3/3 members ready", or per component "3/3 controllers ready, 4/5
    /// brokers ready", then the pods that are not ready.
    fn message(&self) -> String {
        let mut m = self
            .components
            .iter()
            .map(|c| format!("{}/{} {} ready", c.ready, c.desired, c.noun))
            .collect::<Vec<_>>()
            .join(", ");
        let not_ready: Vec<&str> = self
            .components
            .iter()
            .flat_map(|c| c.not_ready.iter().map(String::as_str))
            .collect();
        if !not_ready.is_empty() {
            m.push_str(&format!("; not ready: {}", not_ready.join(", ")));
        }
        let outdated: Vec<String> = self
            .components
            .iter()
            .filter(|c| !c.all_updated())
            .map(|c| format!("{}/{} {} updated", c.updated, c.desired, c.noun))
            .collect();
        if !outdated.is_empty() {
            m.push_str(&format!("; {}", outdated.join(", ")));
        }
        m
    }
}

/// The last termination message of each container of `pod` that has one,
/// as "pod (container): message", shortened.
fn termination_messages(pod: &Pod) -> Vec<String> {
    const MAX: usize = 400;
    let name = pod.name_any();
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    statuses
        .into_iter()
        .flatten()
        .filter_map(|cs| {
            let terminated = |s: Option<&k8s_openapi::api::core::v1::ContainerState>| {
                s?.terminated.as_ref()?.message.clone()
            };
            let message =
                terminated(cs.state.as_ref()).or_else(|| terminated(cs.last_state.as_ref()))?;
            let message = message.trim();
            if message.is_empty() {
                return None;
            }
            let short: String = message.chars().take(MAX).collect();
            let more = if message.chars().count() > MAX {
                "..."
            } else {
                ""
            };
            Some(format!("{name} ({}): {short}{more}", cs.name))
        })
        .collect()
}

/// A pod that stays (not being deleted) and is not Ready.
pub fn unready(pod: &Pod) -> bool {
    !terminating(pod) && !pod_ready(pod)
}

/// A pod that stays (not being deleted) and is Ready.
pub fn serving(pod: &Pod) -> bool {
    !terminating(pod) && pod_ready(pod)
}

/// A pod being deleted.
pub fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Whether the kubelet reports the pod Ready (its readiness probes pass).
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The three conditions, keeping `lastTransitionTime` of those whose status
/// did not change.
pub fn conditions(old: &[Condition], facts: &Facts, now: Timestamp) -> Vec<Condition> {
    let members = facts.message();
    let all_ready = facts.all_ready();
    // Ready claims the desired spec: every member ready on the latest pod
    // template, with no engine-level work left. While a roll replaces old
    // members, the resource serves but is not yet what the spec asks for.
    let ready = if !all_ready {
        ("False", "MembersNotReady", members.clone())
    } else if !facts.all_updated() {
        ("False", "MembersOutdated", members.clone())
    } else if let Some(p) = facts.progress {
        ("False", p.reason, format!("{members}; {}", p.message))
    } else {
        ("True", "AllMembersReady", members.clone())
    };
    let stable = all_ready && facts.all_updated() && facts.progress.is_none();
    let progressing = if facts.invalid.is_some() {
        (
            "False",
            "InvalidSpec",
            "Waiting for a valid spec".to_string(),
        )
    } else if facts.paused {
        (
            "False",
            "Paused",
            "spec.paused is true: the operator does not change the children".to_string(),
        )
    } else if let Some(p) = facts.progress {
        ("True", p.reason, p.message.clone())
    } else if stable {
        ("False", "Stable", members.clone())
    } else {
        ("True", "Reconciling", members.clone())
    };
    let failing: Vec<&String> = facts.components.iter().flat_map(|c| &c.failing).collect();
    let degraded = match (facts.invalid, facts.degraded, failing.first()) {
        (Some(e), _, _) => ("True", e.reason(), e.to_string()),
        (None, Some(d), _) => ("True", d.reason, d.message.clone()),
        (None, None, Some(first)) => {
            let more = match failing.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            ("True", "MemberFailing", format!("{first}{more}"))
        }
        (None, None, None) => ("False", "AsExpected", "The spec is valid".to_string()),
    };
    [
        (READY, ready),
        (PROGRESSING, progressing),
        (DEGRADED, degraded),
    ]
    .into_iter()
    .map(|(type_, (status, reason, message))| {
        let last = condition(old, type_)
            .filter(|c| c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: facts.generation,
            last_transition_time: last,
        }
    })
    .collect()
}

pub async fn update<K: Managed>(
    obj: &K,
    ctx: &Context,
    observed: &Observed,
    invalid: Option<&Invalid>,
    applied: &Report,
    orchestrated: Orchestrated<K::Live>,
) -> Result<()> {
    let mut facts = Facts::observe(
        obj.meta().generation,
        obj.common().paused,
        invalid,
        observed,
    );
    facts.progress = orchestrated.progress.as_ref();
    facts.degraded = orchestrated.degraded.as_ref();
    let old_status = obj.status();
    let old_conditions: &[Condition] = old_status
        .map(|s| K::common_status(s).conditions.as_slice())
        .unwrap_or_default();
    let common = CommonStatus {
        observed_generation: obj.meta().generation,
        conditions: conditions(old_conditions, &facts, Timestamp::now()),
        replicas: facts.replicas(),
        ready_replicas: facts.ready(),
        // The scale subresource's: the first component's pods.
        selector: observed
            .components
            .first()
            .map(|c| c.component.identity.selector_string()),
    };
    let new_conditions = common.conditions.clone();
    let status = obj.make_status(common, observed, &orchestrated.live);

    if old_status != Some(&status) {
        let ns = obj
            .namespace()
            .ok_or(Error::MissingField("metadata.namespace"))?;
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
        let body = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        api.patch_status(
            &obj.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
        ctx.metrics.write(K::METRIC_KIND, "patch", "status");
    }

    for event in transitions(old_conditions, &new_conditions, applied)
        .into_iter()
        .chain(orchestrated.events)
    {
        publish(obj, ctx, event).await;
    }
    Ok(())
}

/// The user-visible transitions worth an Event.
pub fn transitions(old: &[Condition], new: &[Condition], applied: &Report) -> Vec<Event> {
    let mut events = Vec::new();
    let changed = |type_: &str| -> Option<(Option<&Condition>, &Condition)> {
        let n = condition(new, type_)?;
        let o = condition(old, type_);
        let same = o.is_some_and(|o| o.status == n.status && o.reason == n.reason);
        (!same).then_some((o, n))
    };
    let event = |type_: EventType, reason: &str, note: String, action: &str| Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Some((old, new)) = changed(DEGRADED) {
        if new.status == "True" {
            events.push(event(
                EventType::Warning,
                &new.reason,
                new.message.clone(),
                "Validate",
            ));
        } else if old.is_some_and(|o| o.status == "True") {
            events.push(event(
                EventType::Normal,
                "SpecValid",
                new.message.clone(),
                "Validate",
            ));
        }
    }
    if let Some((old, new)) = changed(PROGRESSING) {
        if new.reason == "Paused" {
            events.push(event(
                EventType::Normal,
                "Paused",
                new.message.clone(),
                "Reconcile",
            ));
        } else if old.is_some_and(|o| o.reason == "Paused") {
            events.push(event(
                EventType::Normal,
                "Resumed",
                "spec.paused is false".into(),
                "Reconcile",
            ));
        }
    }
    if let Some((old, new)) = changed(READY) {
        if new.status == "True" {
            events.push(event(
                EventType::Normal,
                "Ready",
                new.message.clone(),
                "Observe",
            ));
        } else if old.is_some_and(|o| o.status == "True") {
            events.push(event(
                EventType::Warning,
                "NotReady",
                new.message.clone(),
                "Observe",
            ));
        }
    }
    if !applied.applied.is_empty() {
        let note = format!("Applied {}", applied.applied.join(", "));
        events.push(event(EventType::Normal, "Applied", note, "Apply"));
    }
    if !applied.deleted.is_empty() {
        let note = format!(
            "Deleted {} that are no longer desired",
            applied.deleted.join(", ")
        );
        events.push(event(EventType::Normal, "DeletedOrphans", note, "Apply"));
    }
    events
}

/// Events are best effort: a failure is logged, never fails the reconcile.
pub async fn publish<K: Managed>(obj: &K, ctx: &Context, event: Event) {
    let reference = obj.object_ref(&());
    match ctx.recorder.publish(&event, &reference).await {
        Ok(()) => ctx.metrics.write(K::METRIC_KIND, "create", "events"),
        Err(e) => {
            warn!(name = %obj.name_any(), reason = %event.reason, error = %e, "cannot publish event")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    fn component(noun: &'static str, ready: i32, pod: &str) -> ComponentFacts {
        ComponentFacts {
            noun,
            desired: 3,
            replicas: 3,
            ready,
            updated: 3,
            rolled_out: true,
            not_ready: (ready..3).map(|i| format!("{pod}-{i}")).collect(),
            failing: vec![],
        }
    }

    #[test]
    fn a_member_that_stopped_with_a_message_is_degraded_and_quoted() {
        use k8s_openapi::api::core::v1::{
            ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
        };
        let terminated = |message: &str| ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 1,
                message: Some(message.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("k-broker-2".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(vec![
                    ContainerStatus {
                        name: "kafka".into(),
                        last_state: Some(terminated("The volume was left untouched: x")),
                        ..Default::default()
                    },
                    ContainerStatus {
                        name: "sidecar".into(),
                        last_state: Some(terminated("  ")),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            termination_messages(&pod),
            ["k-broker-2 (kafka): The volume was left untouched: x"]
        );
        let mut f = facts(2, None, false);
        f.components[0].failing = termination_messages(&pod);
        let cs = conditions(&[], &f, Timestamp::now());
        assert_eq!(get(&cs, DEGRADED), ("True", "MemberFailing"));
        let message = &condition(&cs, DEGRADED).unwrap().message;
        assert_eq!(
            message,
            "k-broker-2 (kafka): The volume was left untouched: x"
        );
        // What orchestrate says comes first.
        let note = Note::new("MemberNotReady", "zk-1 is stuck");
        f.degraded = Some(&note);
        let cs = conditions(&[], &f, Timestamp::now());
        assert_eq!(get(&cs, DEGRADED), ("True", "MemberNotReady"));
    }

    fn facts(ready: i32, invalid: Option<&Invalid>, paused: bool) -> Facts<'_> {
        Facts {
            generation: Some(4),
            components: vec![component("members", ready, "zk")],
            paused,
            invalid,
            progress: None,
            degraded: None,
        }
    }

    fn get<'a>(cs: &'a [Condition], t: &str) -> (&'a str, &'a str) {
        let c = condition(cs, t).expect(t);
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn all_members_ready() {
        let cs = conditions(&[], &facts(3, None, false), Timestamp::now());
        assert_eq!(get(&cs, READY), ("True", "AllMembersReady"));
        assert_eq!(get(&cs, PROGRESSING), ("False", "Stable"));
        assert_eq!(get(&cs, DEGRADED), ("False", "AsExpected"));
        assert!(cs.iter().all(|c| c.observed_generation == Some(4)));
    }

    #[test]
    fn a_member_that_is_not_ready_is_named() {
        let cs = conditions(&[], &facts(2, None, false), Timestamp::now());
        let ready = condition(&cs, READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "MembersNotReady")
        );
        assert_eq!(ready.message, "2/3 members ready; not ready: zk-2");
        let all = conditions(&[], &facts(3, None, false), Timestamp::now());
        assert_eq!(condition(&all, READY).unwrap().message, "3/3 members ready");
    }

    #[test]
    fn components_are_counted_and_named_separately() {
        let mut f = facts(3, None, false);
        f.components = vec![
            component("controllers", 3, "kafka-controller"),
            component("brokers", 2, "kafka-broker"),
        ];
        let cs = conditions(&[], &f, Timestamp::now());
        let ready = condition(&cs, READY).unwrap();
        assert_eq!(ready.status, "False", "one component is short");
        assert_eq!(
            ready.message,
            "3/3 controllers ready, 2/3 brokers ready; not ready: kafka-broker-2"
        );
        assert_eq!((f.replicas(), f.ready()), (6, 5));
        f.components[1].ready = 3;
        f.components[1].not_ready.clear();
        let cs = conditions(&cs, &f, Timestamp::now());
        assert_eq!(get(&cs, READY), ("True", "AllMembersReady"));
        // A component not rolled out yet keeps the whole resource not Ready,
        // even when the counts add up.
        f.components[0].rolled_out = false;
        let cs = conditions(&cs, &f, Timestamp::now());
        assert_eq!(get(&cs, READY).0, "False");
    }

    #[test]
    fn invalid_spec_is_degraded_and_names_the_key() {
        let e = Invalid::OwnedConfigKey {
            key: "dataDir".into(),
            engine: "zookeeper",
        };
        let cs = conditions(&[], &facts(0, Some(&e), false), Timestamp::now());
        assert_eq!(get(&cs, DEGRADED), ("True", "OwnedConfigKey"));
        assert!(
            condition(&cs, DEGRADED)
                .unwrap()
                .message
                .contains("\"dataDir\"")
        );
        assert_eq!(get(&cs, PROGRESSING), ("False", "InvalidSpec"));
        let events = transitions(&[], &cs, &Report::default());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].type_, EventType::Warning);
        assert_eq!(events[0].reason, "OwnedConfigKey");
        // The same state again: no new Event, so no Event storm on resync.
        assert!(transitions(&cs, &cs, &Report::default()).is_empty());
    }

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let t0 = Timestamp::now();
        let later = t0 + SignedDuration::from_secs(60);
        let first = conditions(&[], &facts(1, None, false), t0);
        let same = conditions(&first, &facts(2, None, false), later);
        assert_eq!(condition(&same, READY).unwrap().last_transition_time.0, t0);
        let ready = conditions(&same, &facts(3, None, false), later);
        assert_eq!(
            condition(&ready, READY).unwrap().last_transition_time.0,
            later
        );
        let events = transitions(&same, &ready, &Report::default());
        assert!(events.iter().any(|e| e.reason == "Ready"));
    }

    #[test]
    fn old_members_or_engine_work_keep_ready_from_claiming_the_spec() {
        let mut f = facts(3, None, false);
        f.components[0].updated = 1;
        let cs = conditions(&[], &f, Timestamp::now());
        assert_eq!(get(&cs, READY), ("False", "MembersOutdated"));
        assert_eq!(get(&cs, PROGRESSING), ("True", "Reconciling"));
        assert_eq!(
            condition(&cs, READY).unwrap().message,
            "3/3 members ready; 1/3 members updated"
        );

        let roll = Note::new("RollingUpdate", "replacing member zk-1");
        f.components[0].updated = 2;
        f.progress = Some(&roll);
        let cs = conditions(&cs, &f, Timestamp::now());
        assert_eq!(get(&cs, PROGRESSING), ("True", "RollingUpdate"));
        assert_eq!(
            condition(&cs, PROGRESSING).unwrap().message,
            "replacing member zk-1"
        );

        // All pods updated but the engine still has work (a member to add).
        f.components[0].updated = 3;
        let cs = conditions(&cs, &f, Timestamp::now());
        assert_eq!(get(&cs, READY), ("False", "RollingUpdate"));

        let stuck = Note::new("MemberNotBack", "zk-1 not ready after 5m");
        f.progress = None;
        f.degraded = Some(&stuck);
        let cs = conditions(&cs, &f, Timestamp::now());
        assert_eq!(get(&cs, DEGRADED), ("True", "MemberNotBack"));
        assert_eq!(get(&cs, READY), ("True", "AllMembersReady"));
    }

    #[test]
    fn paused_reports_and_announces_itself() {
        let running = conditions(&[], &facts(3, None, false), Timestamp::now());
        let paused = conditions(&running, &facts(3, None, true), Timestamp::now());
        assert_eq!(get(&paused, PROGRESSING), ("False", "Paused"));
        let reasons: Vec<String> = transitions(&running, &paused, &Report::default())
            .into_iter()
            .map(|e| e.reason)
            .collect();
        assert_eq!(reasons, ["Paused"]);
    }
}
