//! The Tessera operator: a shared reconcile runtime and one module per kind.
#![forbid(unsafe_code)]

pub mod cli;
pub mod images;
pub mod kinds;
pub mod reconcile;
pub mod runtime;
pub mod webhook;
