//! One module per kind: its `build` and the status it reports.

pub mod ensemble;
pub mod shared;
