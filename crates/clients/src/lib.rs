//! Engine protocol clients shared by `tessera-sidecar`, `tessera-adapter` and
//! `tessera-ambassador`.
//!
//! Codecs are sans-IO (they work on byte buffers) so that the proxy can frame
//! traffic without copying and the clients can wrap them with timeouts.
//! Every client call has a deadline and a bounded read: garbage, a half-closed
//! socket or a huge reply becomes an [`Error`], never a panic or unbounded
//! memory.
#![forbid(unsafe_code)]

mod conn;
mod error;

pub mod etcd;
pub mod kafka;
pub mod memcached;
pub mod promtext;
pub mod redis;
pub mod resp;
pub mod target;
pub mod zookeeper;

pub use error::{Error, Result};
