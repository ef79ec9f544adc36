//! Errors that stop the sidecar from starting.

/// Why the sidecar refuses to start. Each message names the flag to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid --target {target:?}: {why}")]
    Target { target: String, why: String },
    #[error("invalid --probe-timeout {0:?}: use a duration such as 800ms or 1s")]
    Duration(String),
    #[error("cannot read the Redis password file {path}: {source}")]
    PasswordFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Client(#[from] tessera_clients::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}
