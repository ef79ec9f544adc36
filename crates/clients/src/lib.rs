//! Engine protocol clients shared by `tessera-sidecar`, `tessera-adapter` and
//! `tessera-ambassador`.
//!
//! Codecs are sans-IO (they work on byte buffers) so that the proxy can frame
//! traffic without copying and the clients can wrap them with timeouts.
#![forbid(unsafe_code)]

pub mod memcached;
pub mod resp;
