//! `Ensemble`: ZooKeeper or etcd as one StatefulSet.

pub mod build;
pub mod etcd;
pub mod members;
pub mod membership;
pub mod orchestrate;
pub mod prepare;
pub mod reconfigure;
pub mod roll;
pub mod scale;
pub mod validate;
pub mod zookeeper;

#[cfg(test)]
mod tests;

use kube::ResourceExt;
use tessera_api::ensemble::EnsembleMember;
use tessera_api::{CommonSpec, CommonStatus, Ensemble, EnsembleStatus, Invalid};

use crate::reconcile::child::{BuildContext, Desired};
use crate::reconcile::status::pod_ready;
use crate::reconcile::{Component, Managed, Observed, Orchestrated};
use crate::runtime::context::Context;
use crate::runtime::error::Result;
use members::Live;
use validate::ValidEnsemble;

impl Managed for Ensemble {
    type Status = EnsembleStatus;
    type Valid = ValidEnsemble;
    type Live = Live;
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

    fn validate(&self, ctx: &BuildContext, observed: &Observed) -> Result<ValidEnsemble, Invalid> {
        validate::validate(self, ctx, observed)
    }

    async fn prepare(
        &self,
        valid: &ValidEnsemble,
        observed: &Observed,
        ctx: &Context,
    ) -> Result<()> {
        prepare::prepare(self, valid, observed, ctx).await
    }

    fn build(valid: &ValidEnsemble, ctx: &BuildContext) -> Desired {
        build::build(valid, ctx)
    }

    async fn orchestrate(
        &self,
        valid: &ValidEnsemble,
        observed: &Observed,
        ctx: &Context,
    ) -> Result<Orchestrated<Live>> {
        orchestrate::orchestrate(valid, observed, ctx).await
    }

    fn status(&self) -> Option<&EnsembleStatus> {
        self.status.as_ref()
    }

    fn common_status(status: &EnsembleStatus) -> &CommonStatus {
        &status.common
    }

    fn make_status(
        &self,
        common: CommonStatus,
        observed: &Observed,
        live: &Live,
    ) -> EnsembleStatus {
        let members = observed
            .pods()
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| EnsembleMember {
                name: p.name_any(),
                // From the engine itself; unknown while paused (nothing is
                // asked then) or when the member does not answer.
                role: live.role(&p.name_any()).map(|r| r.as_str().to_string()),
                ready: pod_ready(p),
            })
            .collect();
        EnsembleStatus {
            common,
            members,
            leader: live.leader().map(str::to_string),
        }
    }
}
