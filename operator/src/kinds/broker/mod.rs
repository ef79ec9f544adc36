//! `Broker`: Apache Kafka in KRaft mode, as one StatefulSet of brokers and,
//! with dedicated controllers, one of controllers.

pub mod build;
pub mod identity;
pub mod kafka;
pub mod live;
pub mod roll;
pub mod scale;
pub mod validate;

#[cfg(test)]
mod tests;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tessera_api::broker::ControllerQuorum;
use tessera_api::{Broker, BrokerStatus, CommonSpec, CommonStatus, Invalid};

use crate::reconcile::child::{BuildContext, Desired};
use crate::reconcile::orchestrate::{delete_pod, set_replicas};
use crate::reconcile::status::serving;
use crate::reconcile::{Component, Managed, Note, Observed, Orchestrated};
use crate::runtime::context::Context;
use crate::runtime::error::{Error, Result};
use live::Live;
use validate::{Quorum, ValidBroker};

impl Managed for Broker {
    type Status = BrokerStatus;
    type Valid = ValidBroker;
    type Live = Live;
    const METRIC_KIND: &'static str = "broker";

    fn common(&self) -> &CommonSpec {
        &self.spec.common
    }

    fn components(&self) -> Vec<Component> {
        let name = self.name_any();
        let mut out = vec![Component {
            identity: build::identity(&name, build::BROKER_COMPONENT),
            desired: self.spec.replicas,
            noun: "brokers",
        }];
        if self.spec.controllers.dedicated {
            out.push(Component {
                identity: build::identity(&name, build::CONTROLLER_COMPONENT),
                desired: self.spec.controllers.replicas,
                noun: "controllers",
            });
        }
        out
    }

    fn validate(&self, ctx: &BuildContext, observed: &Observed) -> Result<ValidBroker, Invalid> {
        validate::validate(self, ctx, observed)
    }

    fn build(valid: &ValidBroker, ctx: &BuildContext) -> Desired {
        build::build(valid, ctx)
    }

    /// A pod template change reaches the pods one at a time, in the order
    /// and under the checks of [`roll::next_step`].
    async fn orchestrate(
        &self,
        valid: &ValidBroker,
        observed: &Observed,
        ctx: &Context,
    ) -> Result<Orchestrated<Live>> {
        let live = live::observe(observed).await;
        let (members, missing, unobserved) = members(valid, observed);
        let step = roll::next_step(
            &members,
            &missing,
            &unobserved,
            live.leader_id,
            live.partitions.as_deref(),
            roll::MinInsync {
                cluster: kafka::min_insync(valid),
                topics: live.min_insync.clone(),
            },
        );
        let mut out = Orchestrated::settled(live);
        match step {
            roll::Step::Done => scale_step(self, valid, observed, &mut out, ctx).await?,
            roll::Step::Wait(note) => {
                out.progress = Some(note);
                out.requeue = Some(ROLL_PERIOD);
            }
            roll::Step::Restart { pod, note } => {
                // The step was planned from the caches: delete exactly the
                // pod it saw (by uid), never one that replaced it since.
                let Some(target) = observed.pods().into_iter().find(|p| p.name_any() == pod) else {
                    out.progress = Some(note);
                    out.requeue = Some(ROLL_PERIOD);
                    return Ok(out);
                };
                let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &valid.namespace);
                delete_pod(&pods, target).await?;
                ctx.metrics.write(Self::METRIC_KIND, "delete", "pods");
                out.events.push(Event {
                    type_: EventType::Normal,
                    reason: "RestartedMember".into(),
                    note: Some(format!("{}: the pod template changed", note.message)),
                    action: "Roll".into(),
                    // The pod, with its uid: `kubectl describe pod` shows
                    // it, and the Recorder keeps one series per related
                    // object, so every restarted member keeps its Event
                    // instead of being folded into the first one's count.
                    secondary: Some(target.object_ref(&())),
                });
                out.progress = Some(note);
                out.requeue = Some(ROLL_PERIOD);
            }
        }
        Ok(out)
    }

    fn status(&self) -> Option<&BrokerStatus> {
        self.status.as_ref()
    }

    fn common_status(status: &BrokerStatus) -> &CommonStatus {
        &status.common
    }

    fn make_status(&self, common: CommonStatus, observed: &Observed, live: &Live) -> BrokerStatus {
        let ready_in = |component: &str, first: Option<i32>| {
            live::ready_pods(observed, component)
                .filter(|p| first.is_none_or(|n| ordinal(&p.name_any()).is_some_and(|o| o < n)))
                .count() as i32
        };
        let controllers = self.spec.controllers.replicas;
        let ready_controllers = if self.spec.controllers.dedicated {
            ready_in(build::CONTROLLER_COMPONENT, None)
        } else {
            ready_in(build::BROKER_COMPONENT, Some(controllers))
        };
        // The recorded id, or the one `validate` derives: the same value
        // unless the spec is invalid, and then it is not overwritten.
        let recorded = self.status.as_ref().and_then(|s| s.cluster_id.clone());
        let cluster_id = recorded.or_else(|| identity::cluster_id(self).ok().map(|c| c.0));
        let quorum = match self.spec.controllers.dedicated {
            true => Quorum::Dedicated { controllers },
            false => Quorum::Combined { controllers },
        };
        let registered = registered(self, live);
        BrokerStatus {
            common,
            registered_broker_ids: registered,
            cluster_id,
            ready_brokers: ready_in(build::BROKER_COMPONENT, None),
            controller_quorum: Some(ControllerQuorum {
                voters: kafka::voter_list(
                    &self.name_any(),
                    &self.namespace().unwrap_or_default(),
                    quorum,
                ),
                leader_id: live.leader_id,
                ready_controllers,
            }),
        }
    }
}

/// Once nothing rolls: the guarded scale-down of [`scale::plan`].
async fn scale_step(
    broker: &Broker,
    valid: &ValidBroker,
    observed: &Observed,
    out: &mut Orchestrated<Live>,
    ctx: &Context,
) -> Result<()> {
    let registered = registered(broker, &out.live);
    let pods: Vec<i32> = observed
        .components
        .iter()
        .filter(|c| c.component.identity.component == build::BROKER_COMPONENT)
        .flat_map(|c| &c.pods)
        .filter_map(|p| ordinal(&p.name_any()))
        .collect();
    let step = scale::plan(
        valid.replicas,
        valid.broker_statefulset_replicas,
        &pods,
        &registered,
        out.live.partitions.as_deref(),
    );
    match step {
        scale::Step::Settled => {}
        scale::Step::Wait(note) => {
            out.progress = Some(note);
            out.requeue = Some(ROLL_PERIOD);
        }
        scale::Step::Blocked(note) => {
            out.progress = Some(note.clone());
            out.degraded = Some(note);
            out.requeue = Some(BLOCKED_PERIOD);
        }
        scale::Step::Shrink { to, note } => {
            let names = kafka::Names {
                name: &valid.name,
                namespace: &valid.namespace,
            };
            let sts = names.statefulset(build::BROKER_COMPONENT);
            set_replicas(ctx, &valid.namespace, &sts, to, Broker::METRIC_KIND).await?;
            out.events.push(Event {
                type_: EventType::Normal,
                reason: "BrokerRemoved".into(),
                note: Some(note.message.clone()),
                action: "Scale".into(),
                secondary: None,
            });
            out.progress = Some(note);
            out.requeue = Some(ROLL_PERIOD);
        }
        scale::Step::Unregister(ids) => {
            let Some(addr) = live::ready_brokers(observed).into_iter().next() else {
                out.progress = Some(Note::new(
                    "ScalingDown",
                    format!("Waiting for a ready broker to unregister brokers {ids:?}"),
                ));
                out.requeue = Some(ROLL_PERIOD);
                return Ok(());
            };
            let mut client = tessera_clients::kafka::Client::connect(&addr, UNREGISTER_TIMEOUT)
                .await
                .map_err(Error::membership("kafka"))?;
            for id in ids {
                client
                    .unregister_broker(id)
                    .await
                    .map_err(Error::membership("kafka"))?;
                out.live.unregistered.push(id);
                out.events.push(Event {
                    type_: EventType::Normal,
                    reason: "BrokerUnregistered".into(),
                    note: Some(format!(
                        "Unregistered broker {id}: its pod is gone after a scale-down"
                    )),
                    action: "Scale".into(),
                    secondary: None,
                });
            }
        }
    }
    Ok(())
}

/// The brokers known to be registered: the last status's and what the
/// cluster lists now, less those unregistered in this pass; sorted.
fn registered(broker: &Broker, live: &Live) -> Vec<i32> {
    let mut ids: Vec<i32> = broker
        .status
        .as_ref()
        .map(|s| s.registered_broker_ids.clone())
        .unwrap_or_default();
    ids.extend(&live.brokers);
    ids.retain(|id| !live.unregistered.contains(id));
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A blocked scale-down needs a person to move replicas.
const BLOCKED_PERIOD: Duration = Duration::from_secs(10);
/// A bounded wait for the controller's answer.
const UNREGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// How soon a roll looks again: a restarted broker takes seconds to rejoin.
const ROLL_PERIOD: Duration = Duration::from_secs(5);

/// The pod label holding the StatefulSet revision the pod was created from.
const REVISION_LABEL: &str = "controller-revision-hash";

/// Every existing pod as the roll sees it, the pods the StatefulSets want
/// that do not exist, and the StatefulSets whose latest spec their
/// controller has not observed yet.
fn members(b: &ValidBroker, observed: &Observed) -> (Vec<roll::Member>, Vec<String>, Vec<String>) {
    let mut members = Vec::new();
    let mut missing = Vec::new();
    let mut unobserved = Vec::new();
    for c in &observed.components {
        let dedicated_controller = c.component.identity.component == build::CONTROLLER_COMPONENT;
        let base = if dedicated_controller {
            identity::CONTROLLER_ID_BASE
        } else {
            0
        };
        for sts in &c.statefulsets {
            let sts_name = sts.name_any();
            let seen = sts.status.as_ref().and_then(|s| s.observed_generation);
            if seen < sts.metadata.generation {
                unobserved.push(sts_name.clone());
            }
            let revision = sts.status.as_ref().and_then(|s| s.update_revision.clone());
            let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            for ordinal in 0..want {
                let name = format!("{sts_name}-{ordinal}");
                let Some(pod) = c.pods.iter().find(|p| p.name_any() == name) else {
                    missing.push(name);
                    continue;
                };
                let label = pod.labels().get(REVISION_LABEL);
                members.push(roll::Member {
                    pod: name,
                    node_id: base + ordinal,
                    controller: dedicated_controller
                        || matches!(b.quorum, Quorum::Combined { controllers } if ordinal < controllers),
                    broker: !dedicated_controller,
                    ready: serving(pod),
                    outdated: revision.is_some() && label != revision.as_ref(),
                });
            }
        }
    }
    (members, missing, unobserved)
}

/// The ordinal of a StatefulSet pod's name.
fn ordinal(pod: &str) -> Option<i32> {
    pod.rsplit_once('-').and_then(|(_, o)| o.parse().ok())
}
