//! `Ensemble`: ZooKeeper or etcd as one StatefulSet.

pub mod build;
pub mod etcd;
pub mod validate;
pub mod zookeeper;

#[cfg(test)]
mod tests;

use kube::ResourceExt;
use tessera_api::ensemble::EnsembleMember;
use tessera_api::{CommonSpec, CommonStatus, Ensemble, EnsembleStatus, Invalid};

use crate::reconcile::child::{BuildContext, Desired};
use crate::reconcile::status::pod_ready;
use crate::reconcile::{Component, Managed, Observed};
use validate::ValidEnsemble;

impl Managed for Ensemble {
    type Status = EnsembleStatus;
    type Valid = ValidEnsemble;
    type Live = ();
    const METRIC_KIND: &'static str = "ensemble";

    fn common(&self) -> &CommonSpec {
        &self.spec.common
    }

    fn components(&self) -> Vec<Component> {
        vec![Component {
            identity: build::identity(self.spec.engine, &self.name_any()),
            desired: self.spec.replicas,
            noun: "members",
        }]
    }

    fn validate(&self, ctx: &BuildContext, _: &Observed) -> Result<ValidEnsemble, Invalid> {
        validate::validate(self, ctx)
    }

    fn build(valid: &ValidEnsemble, ctx: &BuildContext) -> Desired {
        build::build(valid, ctx)
    }

    fn status(&self) -> Option<&EnsembleStatus> {
        self.status.as_ref()
    }

    fn common_status(status: &EnsembleStatus) -> &CommonStatus {
        &status.common
    }

    fn make_status(&self, common: CommonStatus, observed: &Observed, _: &()) -> EnsembleStatus {
        let members = observed
            .pods()
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| EnsembleMember {
                name: p.name_any(),
                // Roles come from the sidecar's view of the engine, which a
                // later issue reports; unknown until then.
                role: None,
                ready: pod_ready(p),
            })
            .collect();
        EnsembleStatus {
            common,
            members,
            leader: None,
        }
    }
}
