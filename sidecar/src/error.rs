//! Errors that stop the sidecar from starting.

/// Why the sidecar refuses to start. Each message names the flag to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid --target {target:?}: {why}")]
    Target { target: String, why: String },
    #[error("invalid --probe-timeout {0:?}: use a duration such as 800ms or 1s")]
    Duration(String),
    #[error(transparent)]
    PasswordFile(#[from] tessera_clients::cli::PasswordFileError),
    #[error("{0}")]
    Client(#[from] tessera_clients::Error),
    #[error("cannot install the signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<tessera_clients::target::TargetError> for Error {
    fn from(e: tessera_clients::target::TargetError) -> Error {
        Error::Target {
            target: e.target,
            why: e.why.to_string(),
        }
    }
}
