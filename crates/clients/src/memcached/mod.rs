//! memcached: the text-protocol client (`client`). The proxy framing codec
//! may live next to it as `codec`.

pub mod client;
pub use client::*;
