//! `ShardedStore`: Redis (Valkey-compatible) or memcached split into
//! shards, one StatefulSet per shard; Redis primaries are placed, and
//! failed over, by `orchestrate`.

pub mod build;
pub mod memcached;
pub mod orchestrate;
pub mod placement;
pub mod redis;
pub mod roll;
pub mod validate;

#[cfg(test)]
mod tests;

use kube::ResourceExt;
use tessera_api::{CommonSpec, CommonStatus, Invalid, ShardedStore, ShardedStoreStatus};

use crate::reconcile::child::{BuildContext, Desired};
use crate::reconcile::status::pod_ready;
use crate::reconcile::{Component, Managed, Observed, Orchestrated, RefKind, Reference};
use crate::runtime::context::Context;
use crate::runtime::error::Result;
use orchestrate::ShardMap;
use validate::ValidStore;

const METRIC_KIND: &str = "shardedstore";

impl Managed for ShardedStore {
    type Status = ShardedStoreStatus;
    type Valid = ValidStore;
    type Live = ShardMap;
    const METRIC_KIND: &'static str = METRIC_KIND;
    const REFERENCES: &'static [RefKind] = &[RefKind::Secret];

    fn common(&self) -> &CommonSpec {
        &self.spec.common
    }

    /// One component per shard: each its own StatefulSet, selector and pods.
    fn components(&self) -> Vec<Component> {
        let name = self.name_any();
        let members = 1 + self.spec.replicas_per_shard.max(0);
        (0..self.spec.shards.max(0))
            .map(|index| Component {
                identity: build::identity(self.spec.engine, &name, index),
                desired: members,
                noun: "members",
            })
            .collect()
    }

    fn references(&self) -> Vec<Reference> {
        validate::auth_reference(&self.spec).into_iter().collect()
    }

    fn validate(&self, ctx: &BuildContext, observed: &Observed) -> Result<ValidStore, Invalid> {
        validate::validate(self, ctx, observed)
    }

    fn build(valid: &ValidStore, ctx: &BuildContext) -> Desired {
        build::build(valid, ctx)
    }

    async fn orchestrate(
        &self,
        valid: &ValidStore,
        observed: &Observed,
        ctx: &Context,
    ) -> Result<Orchestrated<ShardMap>> {
        orchestrate::orchestrate(self, valid, observed, ctx).await
    }

    fn status(&self) -> Option<&ShardedStoreStatus> {
        self.status.as_ref()
    }

    fn common_status(status: &ShardedStoreStatus) -> &CommonStatus {
        &status.common
    }

    fn make_status(
        &self,
        common: CommonStatus,
        observed: &Observed,
        live: &ShardMap,
    ) -> ShardedStoreStatus {
        // Paused or invalid: nothing was asked of the engines, and the last
        // shard map is still the truth the ambassador routes by (and the
        // record of each shard's primary that a failover starts from).
        let shards = if live.shards.is_empty() {
            self.status
                .as_ref()
                .map(|s| s.shards.clone())
                .unwrap_or_default()
        } else {
            live.shards.clone()
        };
        let pods = observed.pods();
        let ready_shards = shards
            .iter()
            .filter(|s| {
                s.address.is_some()
                    && s.primary.as_ref().is_some_and(|p| {
                        pods.iter()
                            .any(|pod| &pod.name_any() == p && pod_ready(pod))
                    })
            })
            .count() as i32;
        ShardedStoreStatus {
            common,
            shards,
            ready_shards,
        }
    }
}
