//! memcached text protocol: the client (`client`) and the proxy framing
//! codec (`codec`).

pub mod client;
pub mod codec;

pub use client::*;
