//! Errors on the data path. Each variant has a stable metric label.

use std::sync::Arc;

/// Why a request forwarded to a shard did not get its reply.
///
/// The messages start the way twemproxy's do where it has one
/// ("Connection timed out"), so that what users match on keeps working;
/// the rest names the shard (docs/ambassador.md, "What differs").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("Connection timed out: shard {shard} did not answer within {ms} ms")]
    Timeout { shard: Arc<str>, ms: u64 },
    #[error("cannot connect to shard {shard}: {reason}")]
    Connect { shard: Arc<str>, reason: String },
    /// The shard refused `redis_auth`. Sent to the client as `-NOAUTH`, the
    /// error a client of twemproxy or of Redis itself gets.
    #[error("shard {shard} refused the proxy's password (redis_auth): {reason}")]
    Auth { shard: Arc<str>, reason: String },
    #[error("the reply of shard {shard} is larger than max_reply_bytes ({limit} bytes)")]
    ReplyTooLarge { shard: Arc<str>, limit: usize },
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
            UpstreamError::Auth { .. } => "auth",
            UpstreamError::ReplyTooLarge { .. } => "reply_too_large",
            UpstreamError::ConnectionLost { .. } => "connection_lost",
            UpstreamError::Protocol { .. } => "upstream_protocol",
            UpstreamError::NoLiveShards => "no_live_shards",
            UpstreamError::Removed { .. } => "removed",
            UpstreamError::Dropped => "dropped",
        }
    }

    /// The error code a Redis client sees first (`-NOAUTH ...`, `-ERR ...`).
    pub fn redis_code(&self) -> &'static str {
        match self {
            UpstreamError::Auth { .. } => "NOAUTH",
            _ => "ERR",
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
    /// A line that is not a RESP array: Redis would run it as an inline
    /// command, twemproxy closes without a word.
    #[error(
        "Protocol error: inline commands are not supported by the ambassador; send RESP arrays"
    )]
    Inline,
    /// A bare CRLF: Redis skips it, twemproxy closes without a word.
    #[error("Protocol error: empty line; the ambassador accepts only RESP arrays")]
    EmptyLine,
    #[error("request larger than {0} bytes")]
    TooLarge(usize),
}

impl ClientError {
    pub fn label(&self) -> &'static str {
        match self {
            ClientError::Resp(_) => "bad_resp",
            ClientError::Memcached(_) => "bad_memcached",
            ClientError::NotACommand => "not_a_command",
            ClientError::Inline => "inline",
            ClientError::EmptyLine => "empty_line",
            ClientError::TooLarge(_) => "too_large",
        }
    }
}
