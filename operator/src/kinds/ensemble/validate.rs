//! `validate`: an Ensemble as `build` needs it, with every default
//! resolved. The spec is destructured without `..`, so that a field added
//! to the API is a compile error here until it is used or refused.

use kube::ResourceExt;
use tessera_api::common::Monitoring;
use tessera_api::validate::SpecCheck;
use tessera_api::{CommonSpec, Ensemble, EnsembleEngine, EnsembleSpec, Invalid};

use crate::kinds::shared::{ClaimSettings, PodSettings, refuse_pod_monitor};
use crate::reconcile::child::BuildContext;

/// A validated Ensemble: what `build` reads, and nothing else.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidEnsemble {
    pub name: String,
    pub namespace: String,
    pub engine: EnsembleEngine,
    pub replicas: i32,
    /// `spec.image`, or the engine's image for `spec.version` (or the
    /// engine's default version) through the operator's image mapping.
    pub image: String,
    /// `spec.config`, already checked for keys the operator owns.
    pub config: std::collections::BTreeMap<String, String>,
    pub pod: PodSettings,
}

pub fn validate(ens: &Ensemble, ctx: &BuildContext) -> Result<ValidEnsemble, Invalid> {
    ens.spec.check()?;
    let EnsembleSpec {
        engine,
        replicas,
        common,
    } = &ens.spec;
    let CommonSpec {
        version,
        image,
        resources,
        storage,
        config,
        pod_template,
        monitoring,
        // The runtime reads these: it skips `apply` while paused, and the
        // finalizer follows `storage.deleteClaimsOnDelete`.
        paused: _,
    } = common;
    let Monitoring {
        enabled: adapter,
        pod_monitor,
    } = monitoring;
    refuse_pod_monitor(pod_monitor.as_ref())?;
    let version = version
        .clone()
        .unwrap_or_else(|| engine.default_version().to_string());
    let image = image
        .clone()
        .unwrap_or_else(|| ctx.engine_images.resolve(engine.contract(), &version));
    Ok(ValidEnsemble {
        name: ens.name_any(),
        namespace: ens.namespace().unwrap_or_default(),
        engine: *engine,
        replicas: *replicas,
        image,
        config: config.clone(),
        pod: PodSettings {
            resources: resources.clone(),
            storage: ClaimSettings::from_spec(storage),
            template: pod_template.clone(),
            adapter: *adapter,
        },
    })
}
