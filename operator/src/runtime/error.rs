//! The one error type of the reconcilers.

/// Why a reconcile failed. Each variant has a stable metric label; all of
/// them are retried with exponential backoff. An invalid spec is not an
/// error: it is reported in status and waits for the user to change it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed (network, 5xx, conflict, forbidden).
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// The object lacks a field the API server always sets.
    #[error("object has no {0}")]
    MissingField(&'static str),
    /// An object could not be turned into JSON.
    #[error("serializing an object failed: {0}")]
    Serialize(#[from] serde_json::Error),
    /// This process does not hold the leader Lease.
    #[error("not the leader")]
    NotLeader,
    /// The operating system gave no random bytes for a generated password.
    #[error("no random bytes from the operating system")]
    Random,
    /// An engine refused or failed a membership change (a ZooKeeper
    /// reconfig, an etcd member add); the message is the engine's.
    #[error("{engine} membership change failed: {message}")]
    Membership {
        engine: &'static str,
        message: String,
    },
}

impl Error {
    /// For `map_err`: a failed membership call to `engine`, in its words.
    pub fn membership(engine: &'static str) -> impl Fn(tessera_clients::Error) -> Error {
        move |e| Error::Membership {
            engine,
            message: e.to_string(),
        }
    }

    /// A short, stable label for the `reason` of error metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "api_conflict",
            Error::Kube(kube::Error::Api(status)) if status.code == 403 => "api_forbidden",
            Error::Kube(kube::Error::Api(_)) => "api_error",
            Error::Kube(_) => "api_transport",
            Error::MissingField(_) => "missing_field",
            Error::Serialize(_) => "serialize",
            Error::NotLeader => "not_leader",
            Error::Random => "random",
            Error::Membership { .. } => "membership",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
