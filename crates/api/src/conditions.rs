//! Condition types and reasons, following the Kubernetes API conventions.

/// All members serve traffic.
pub const READY: &str = "Ready";
/// A change is rolling out.
pub const PROGRESSING: &str = "Progressing";
/// The spec cannot be applied, or members fail.
pub const DEGRADED: &str = "Degraded";
