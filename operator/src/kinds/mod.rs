//! One module per kind: its `validate`, `build` and the status it reports.
//!
//! Adding a kind: a module here implementing `reconcile::Managed`, and its
//! line in [`KINDS`]. The runtime gives it a controller per watched
//! namespace over the shared child watches.

pub mod broker;
#[cfg(test)]
pub mod canary;
pub mod ensemble;
pub mod sharded_store;
pub mod shared;

use crate::runtime::registry::{Kind, kind};

/// Every kind the operator reconciles.
pub const KINDS: &[Kind] = &[
    kind::<tessera_api::Ensemble>(),
    kind::<tessera_api::ShardedStore>(),
    kind::<tessera_api::Broker>(),
];
