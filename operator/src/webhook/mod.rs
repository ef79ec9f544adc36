//! Sidecar injection into pods Tessera did not create: a mutating
//! admission webhook served by the operator over HTTPS (docs/injection.md).
//!
//! | Module | What |
//! |---|---|
//! | `spec` | the `tessera.dev/inject*` annotations, parsed, with clear errors |
//! | `patch` | the JSON patch: the operator's sidecar and adapter, native or not; idempotent |
//! | `nodes` | the kubelet versions, for native sidecars |
//! | `tls` | the CA and serving certificate, rotation decisions, hot swap |
//! | `config` | the MutatingWebhookConfiguration the leader applies |

pub mod config;
pub mod nodes;
pub mod patch;
pub mod spec;
pub mod tls;
