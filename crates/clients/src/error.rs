//! The one error type every client returns.

use std::time::Duration;

/// Why a call to an engine failed.
///
/// Callers (readiness checks, the adapter's scrape) mostly need to know
/// *whether* the engine answered sensibly; [`Error::label`] gives a stable,
/// low-cardinality name for metrics and log fields.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TCP (or TLS) connection could not be established.
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The call did not complete within its deadline.
    #[error("{op} timed out after {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// Reading or writing the socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection before a complete reply arrived.
    #[error("connection closed by the peer before a complete reply")]
    Closed,
    /// The bytes received are not valid for the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The reply is larger than the client accepts.
    #[error("reply exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The server refused our credentials.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The reply is valid for the protocol but not what the command returns.
    #[error("unexpected reply: {0}")]
    UnexpectedReply(String),
    /// The server answered with an error (Redis `-ERR ...`, memcached
    /// `SERVER_ERROR ...`, a Kafka error code).
    #[error("server error: {0}")]
    Server(String),
    /// TLS setup failed (bad CA file, bad key, bad server name).
    #[error("tls: {0}")]
    Tls(String),
    /// The caller passed an unusable address or option.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// A stable label for metrics, e.g. `probe_errors_total{reason="timeout"}`.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Connect { .. } => "connect",
            Error::Timeout { .. } => "timeout",
            Error::Io(_) => "io",
            Error::Closed => "closed",
            Error::Protocol(_) => "protocol",
            Error::TooLarge { .. } => "too_large",
            Error::Auth(_) => "auth",
            Error::UnexpectedReply(_) => "unexpected_reply",
            Error::Server(_) => "server_error",
            Error::Tls(_) => "tls",
            Error::Config(_) => "config",
        }
    }
}

/// Result alias for the clients.
pub type Result<T, E = Error> = std::result::Result<T, E>;
