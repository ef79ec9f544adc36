//! Errors on the data path. Each variant has a stable metric label.

use std::sync::Arc;

/// Why a request forwarded to a shard did not get its reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("shard {shard} did not answer within {ms} ms")]
    Timeout { shard: Arc<str>, ms: u64 },
    #[error("cannot connect to shard {shard}: {reason}")]
    Connect { shard: Arc<str>, reason: String },
    #[error("connection to shard {shard} lost: {reason}")]
    ConnectionLost { shard: Arc<str>, reason: String },
    #[error("shard {shard} sent a malformed reply: {reason}")]
    Protocol { shard: Arc<str>, reason: String },
    #[error("no live shard to route to")]
    NoLiveShards,
    #[error("shard {shard} was removed from the pool")]
    Removed { shard: Arc<str> },
    #[error("the request was dropped before its shard answered")]
    Dropped,
}

impl UpstreamError {
    /// The `kind` label of `tessera_ambassador_errors_total`.
    pub fn label(&self) -> &'static str {
        match self {
            UpstreamError::Timeout { .. } => "timeout",
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::ConnectionLost { .. } => "connection_lost",
            UpstreamError::Protocol { .. } => "upstream_protocol",
            UpstreamError::NoLiveShards => "no_live_shards",
            UpstreamError::Removed { .. } => "removed",
            UpstreamError::Dropped => "dropped",
        }
    }
}

/// Why a client connection is answered with an error and closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("Protocol error: {0}")]
    Resp(#[from] tessera_clients::resp::DecodeError),
    #[error("{0}")]
    Memcached(#[from] tessera_clients::memcached::codec::Error),
    #[error("Protocol error: expected an array of bulk strings")]
    NotACommand,
    #[error("request larger than {0} bytes")]
    TooLarge(usize),
}

impl ClientError {
    pub fn label(&self) -> &'static str {
        match self {
            ClientError::Resp(_) | ClientError::NotACommand => "bad_resp",
            ClientError::Memcached(_) => "bad_memcached",
            ClientError::TooLarge(_) => "too_large",
        }
    }
}
