//! memcached text protocol.

pub mod codec;
