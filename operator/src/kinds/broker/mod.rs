//! `Broker`: Apache Kafka in KRaft mode, as one StatefulSet of brokers and,
//! with dedicated controllers, one of controllers.

pub mod build;
pub mod identity;
pub mod kafka;
pub mod live;
pub mod validate;

#[cfg(test)]
mod tests;

use kube::ResourceExt;
use tessera_api::broker::ControllerQuorum;
use tessera_api::{Broker, BrokerStatus, CommonSpec, CommonStatus, Invalid};

use crate::reconcile::child::{BuildContext, Desired};
use crate::reconcile::{Component, Managed, Observed, Orchestrated};
use crate::runtime::context::Context;
use crate::runtime::error::Result;
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

    fn validate(&self, ctx: &BuildContext, _: &Observed) -> Result<ValidBroker, Invalid> {
        validate::validate(self, ctx)
    }

    fn build(valid: &ValidBroker, ctx: &BuildContext) -> Desired {
        build::build(valid, ctx)
    }

    async fn orchestrate(
        &self,
        valid: &ValidBroker,
        observed: &Observed,
        _ctx: &Context,
    ) -> Result<Orchestrated<Live>> {
        Ok(Orchestrated::settled(live::observe(valid, observed).await))
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
        BrokerStatus {
            common,
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

/// The ordinal of a StatefulSet pod's name.
fn ordinal(pod: &str) -> Option<i32> {
    pod.rsplit_once('-').and_then(|(_, o)| o.parse().ok())
}
