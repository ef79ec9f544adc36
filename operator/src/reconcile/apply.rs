//! `apply`: server-side apply of the desired children with one field
//! manager, owner references, and deletion of owned children that are no
//! longer desired. Children whose live copy already matches are skipped, so
//! that a steady state writes nothing.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::info;

use super::Managed;
use super::child::{Child, ChildKind, Desired, fnv1a};
use super::matches::is_subset;
use crate::kinds::shared::MANAGER;
use crate::runtime::context::Context;
use crate::runtime::error::{Error, Result};

/// Annotation with the hash of the desired object last applied. A change
/// of the desired object changes the hash; a change of the live object by
/// someone else is caught by the subset comparison.
pub const APPLIED_HASH: &str = "tessera.dev/applied-hash";

/// What `apply` changed, for Events and status.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// "Kind/name" of every child applied.
    pub applied: Vec<String>,
    /// "Kind/name" of every orphan deleted.
    pub deleted: Vec<String>,
}

pub async fn apply<K: Managed>(owner: &K, desired: Desired, ctx: &Context) -> Result<Report> {
    let ns = owner
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let mut owner_ref = owner
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    // blockOwnerDeletion would need `update` on <kind>/finalizers wherever
    // OwnerReferencesPermissionEnforcement is on; nothing here relies on
    // foreground deletion waiting for the children.
    owner_ref.block_owner_deletion = None;
    let mut report = Report::default();

    let keep: BTreeSet<(ChildKind, String)> = desired
        .children
        .iter()
        .map(|c| (c.kind(), c.name().to_string()))
        .collect();
    let mut children = desired.children;
    children.sort_by_key(|c| c.kind());
    for mut child in children {
        child.meta_mut().namespace = Some(ns.clone());
        child.meta_mut().owner_references = Some(vec![owner_ref.clone()]);
        let hash = fnv1a(serde_json::to_string(&child)?.as_bytes());
        child
            .meta_mut()
            .annotations
            .get_or_insert_with(Default::default)
            .insert(APPLIED_HASH.into(), hash);
        let s = &ctx.stores;
        let kind = K::METRIC_KIND;
        let changed = match &child {
            Child::StatefulSet(o) => apply_one(o, &s.statefulsets, ctx, kind).await?,
            Child::Service(o) => apply_one(o, &s.services, ctx, kind).await?,
            Child::ConfigMap(o) => apply_one(o, &s.configmaps, ctx, kind).await?,
            Child::PodDisruptionBudget(o) => apply_one(o, &s.pdbs, ctx, kind).await?,
        };
        if changed {
            report
                .applied
                .push(format!("{}/{}", child.kind().as_str(), child.name()));
        }
    }

    // Orphans: children we own (controller reference to this uid) that are
    // no longer desired, e.g. after a rename or a disabled feature.
    let uid = owner.uid().unwrap_or_default();
    let s = &ctx.stores;
    let kind = K::METRIC_KIND;
    let mut deleted = Vec::new();
    deleted.extend(
        delete_orphans(
            &s.statefulsets,
            ChildKind::StatefulSet,
            &ns,
            &uid,
            &keep,
            ctx,
            kind,
        )
        .await?,
    );
    deleted.extend(
        delete_orphans(&s.services, ChildKind::Service, &ns, &uid, &keep, ctx, kind).await?,
    );
    deleted.extend(
        delete_orphans(
            &s.configmaps,
            ChildKind::ConfigMap,
            &ns,
            &uid,
            &keep,
            ctx,
            kind,
        )
        .await?,
    );
    deleted.extend(
        delete_orphans(
            &s.pdbs,
            ChildKind::PodDisruptionBudget,
            &ns,
            &uid,
            &keep,
            ctx,
            kind,
        )
        .await?,
    );
    report.deleted = deleted;
    if !report.applied.is_empty() || !report.deleted.is_empty() {
        info!(owner = %owner.name_any(), namespace = %ns, applied = ?report.applied, deleted = ?report.deleted, "children changed");
    }
    Ok(report)
}

/// Applies one child unless its live copy already matches. Returns whether
/// it wrote.
async fn apply_one<C>(desired: &C, store: &Store<C>, ctx: &Context, kind: &str) -> Result<bool>
where
    C: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let name = desired.name_any();
    let ns = desired.namespace().unwrap_or_default();
    if let Some(live) = store.get(&ObjectRef::new(&name).within(&ns)) {
        let same_hash =
            live.annotations().get(APPLIED_HASH) == desired.annotations().get(APPLIED_HASH);
        if same_hash
            && is_subset(
                &serde_json::to_value(desired)?,
                &serde_json::to_value(&*live)?,
            )
        {
            return Ok(false);
        }
    }
    let api: Api<C> = Api::namespaced(ctx.client.clone(), &ns);
    let params = PatchParams::apply(MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(desired)).await?;
    ctx.metrics.write(kind, "patch", &C::plural(&()));
    Ok(true)
}

async fn delete_orphans<C>(
    store: &Store<C>,
    child_kind: ChildKind,
    ns: &str,
    owner_uid: &str,
    keep: &BTreeSet<(ChildKind, String)>,
    ctx: &Context,
    kind: &str,
) -> Result<Vec<String>>
where
    C: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let orphans: Vec<String> = store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(ns))
        .filter(|o| {
            o.owner_references()
                .iter()
                .any(|r| r.controller == Some(true) && r.uid == owner_uid)
        })
        .map(|o| o.name_any())
        .filter(|name| !keep.contains(&(child_kind, name.clone())))
        .collect();
    let api: Api<C> = Api::namespaced(ctx.client.clone(), ns);
    let mut deleted = Vec::new();
    for name in orphans {
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            // Already gone: the cache was behind.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        ctx.metrics.write(kind, "delete", &C::plural(&()));
        deleted.push(format!("{}/{name}", child_kind.as_str()));
    }
    Ok(deleted)
}
