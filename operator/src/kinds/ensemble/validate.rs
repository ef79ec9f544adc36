//! `validate`: an Ensemble as `build` needs it, with every default
//! resolved. The spec is destructured without `..`, so that a field added
//! to the API is a compile error here until it is used or refused.

use kube::ResourceExt;
use tessera_api::validate::SpecCheck;
use tessera_api::{Ensemble, EnsembleEngine, EnsembleSpec, Invalid};

use crate::kinds::shared::{CommonSettings, PodSettings};
use crate::reconcile::Observed;
use crate::reconcile::child::BuildContext;

/// A validated Ensemble: what `build` reads, and nothing else.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidEnsemble {
    pub name: String,
    pub namespace: String,
    pub engine: EnsembleEngine,
    pub replicas: i32,
    /// How many members the StatefulSet runs now. Only `orchestrate` moves
    /// it toward `replicas`, one membership change at a time (see
    /// [`super::scale`]), so `build` repeats what it finds; `replicas` when
    /// there is no StatefulSet yet.
    pub statefulset_replicas: i32,
    /// `spec.image`, or the engine's image for `spec.version` (or the
    /// engine's default version) through the operator's image mapping.
    pub image: String,
    /// `spec.config`, already checked for keys the operator owns.
    pub config: std::collections::BTreeMap<String, String>,
    pub pod: PodSettings,
    /// `storage.deleteClaimsOnDelete`: also the claims of members removed
    /// by a scale-down.
    pub delete_claims: bool,
}

pub fn validate(
    ens: &Ensemble,
    ctx: &BuildContext,
    observed: &Observed,
) -> Result<ValidEnsemble, Invalid> {
    ens.spec.check()?;
    let EnsembleSpec {
        engine,
        replicas,
        common,
    } = &ens.spec;
    let CommonSettings {
        version: _,
        image,
        config,
        pod,
    } = CommonSettings::resolve(common, engine.contract(), engine.default_version(), ctx)?;
    Ok(ValidEnsemble {
        name: ens.name_any(),
        namespace: ens.namespace().unwrap_or_default(),
        engine: *engine,
        replicas: *replicas,
        statefulset_replicas: statefulset_replicas(observed).unwrap_or(*replicas),
        image,
        config,
        pod,
        delete_claims: common.storage.delete_claims_on_delete,
    })
}

/// `spec.replicas` of the StatefulSet in the caches, if there is one.
pub fn statefulset_replicas(observed: &Observed) -> Option<i32> {
    observed
        .components
        .iter()
        .flat_map(|c| &c.statefulsets)
        .find_map(|s| s.spec.as_ref()?.replicas)
}
