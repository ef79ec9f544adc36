//! The one finalizer: deleting PersistentVolumeClaims with the resource when
//! `storage.deleteClaimsOnDelete` is true. Without it nothing blocks
//! deletion, and garbage collection removes the children while the claims
//! (and the data) stay: the safe default.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use tracing::info;

use super::Managed;
use super::status::publish;
use crate::runtime::context::Context;
use crate::runtime::error::{Error, Result};

pub const FINALIZER: &str = "tessera.dev/delete-claims";

fn has_finalizer<K: Managed>(obj: &K) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds or removes the finalizer to match `deleteClaimsOnDelete`.
pub async fn ensure<K: Managed>(obj: &K, ctx: &Context) -> Result<()> {
    let wanted = obj.common().storage.delete_claims_on_delete;
    if wanted == has_finalizer(obj) {
        return Ok(());
    }
    let mut finalizers: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if wanted {
        finalizers.push(FINALIZER.into());
    }
    set_finalizers(obj, ctx, finalizers).await
}

/// The object is being deleted: delete its claims, then let it go.
pub async fn cleanup<K: Managed>(obj: &K, ctx: &Context) -> Result<()> {
    if !has_finalizer(obj) {
        return Ok(());
    }
    let ns = obj
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    // Each component's claims carry its own selector: a kind with
    // controllers and brokers has two sets of claims.
    let mut claims = Vec::new();
    for component in obj.components() {
        let selector = component.identity.selector_string();
        let list = api.list(&ListParams::default().labels(&selector)).await?;
        ctx.metrics
            .read(K::METRIC_KIND, "list", "persistentvolumeclaims");
        claims.extend(list.items);
    }
    let mut names = Vec::new();
    for claim in claims {
        if claim.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = claim.name_any();
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        ctx.metrics
            .write(K::METRIC_KIND, "delete", "persistentvolumeclaims");
        names.push(name);
    }
    if !names.is_empty() {
        info!(owner = %obj.name_any(), namespace = %ns, claims = ?names, "deleted claims");
        let note = format!("Deleted PersistentVolumeClaims {}", names.join(", "));
        let event = Event {
            type_: EventType::Normal,
            reason: "DeletedClaims".into(),
            note: Some(note),
            action: "Delete".into(),
            secondary: None,
        };
        publish(obj, ctx, event).await;
    }
    let rest = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(obj, ctx, rest).await
}

/// A merge patch guarded by resourceVersion, so that a concurrent change of
/// the finalizer list by someone else is not lost (it fails with 409 and the
/// reconcile retries on fresh data).
async fn set_finalizers<K: Managed>(obj: &K, ctx: &Context, finalizers: Vec<String>) -> Result<()> {
    let ns = obj
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": obj.resource_version(),
        }
    });
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {}
        // Gone already: nothing left to finalize.
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    ctx.metrics
        .write(K::METRIC_KIND, "patch", K::plural(&()).as_ref());
    Ok(())
}
