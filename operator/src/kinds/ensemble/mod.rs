//! `Ensemble`: ZooKeeper or etcd as one StatefulSet.

pub mod build;
pub mod etcd;
pub mod zookeeper;

#[cfg(test)]
mod tests;

use kube::ResourceExt;
use tessera_api::ensemble::EnsembleMember;
use tessera_api::validate::SpecCheck;
use tessera_api::{CommonSpec, CommonStatus, Ensemble, EnsembleStatus, Invalid};

use crate::kinds::shared::Identity;
use crate::reconcile::child::{BuildContext, Desired};
use crate::reconcile::status::pod_ready;
use crate::reconcile::{Managed, Observed};

impl Managed for Ensemble {
    type Status = EnsembleStatus;
    const METRIC_KIND: &'static str = "ensemble";

    fn common(&self) -> &CommonSpec {
        &self.spec.common
    }

    fn identity(&self) -> Identity<'_> {
        build::identity(self)
    }

    fn desired_replicas(&self) -> i32 {
        self.spec.replicas
    }

    fn validate(&self) -> Result<(), Invalid> {
        self.spec.check()
    }

    fn build(&self, ctx: &BuildContext) -> Desired {
        build::build(self, ctx)
    }

    fn status(&self) -> Option<&EnsembleStatus> {
        self.status.as_ref()
    }

    fn common_status(status: &EnsembleStatus) -> &CommonStatus {
        &status.common
    }

    fn make_status(&self, common: CommonStatus, observed: &Observed) -> EnsembleStatus {
        let members = observed
            .pods
            .iter()
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
