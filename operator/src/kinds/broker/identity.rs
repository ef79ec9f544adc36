//! The KRaft cluster id and the node ids: what makes a volume belong to one
//! cluster and one node.
//!
//! The cluster id must never change while volumes exist: every node formats
//! its storage with it and refuses to start on a volume formatted with
//! another. It is decided without randomness, so `build` stays pure and a
//! lost status cannot regenerate it:
//! 1. `status.clusterId`, once recorded, always wins;
//! 2. else the annotation `tessera.dev/kafka-cluster-id`, for re-creating a
//!    Broker on the volumes of an earlier one (its id is in their
//!    `meta.properties`);
//! 3. else the Broker's `metadata.uid` (assigned once by the API server) in
//!    Kafka's form: its 16 bytes in unpadded base64url, 22 characters.

use kube::ResourceExt;
use tessera_api::{Broker, Invalid};

/// Set by users to adopt the volumes of an earlier cluster.
pub const CLUSTER_ID_ANNOTATION: &str = "tessera.dev/kafka-cluster-id";

/// Node ids of dedicated controllers start here, above every broker id
/// (brokers are 0..replicas, at most 1000): the ranges never overlap, and a
/// broker's id is its pod's ordinal, which the sidecar reads from the pod's
/// `apps.kubernetes.io/pod-index` label.
pub const CONTROLLER_ID_BASE: i32 = 1000;

/// A Kafka cluster id: 22 characters of base64url.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterId(pub String);

impl ClusterId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The cluster id of a Broker (see the module's documentation).
pub fn cluster_id(broker: &Broker) -> Result<ClusterId, Invalid> {
    let recorded = broker.status.as_ref().and_then(|s| s.cluster_id.clone());
    let annotated = broker.annotations().get(CLUSTER_ID_ANNOTATION).cloned();
    if let Some(a) = &annotated {
        check(a).map_err(|why| Invalid::Rule {
            path: format!("metadata.annotations[{CLUSTER_ID_ANNOTATION}]"),
            message: format!("{a:?} is not a Kafka cluster id: {why}"),
        })?;
    }
    match (recorded, annotated) {
        (Some(r), Some(a)) if r != a => Err(Invalid::Rule {
            path: format!("metadata.annotations[{CLUSTER_ID_ANNOTATION}]"),
            message: format!(
                "the cluster id is {r} (status.clusterId) and cannot change: \
                 the volumes are formatted with it; remove the annotation or set it to {r}"
            ),
        }),
        (Some(r), _) => Ok(ClusterId(r)),
        (None, Some(a)) => Ok(ClusterId(a)),
        (None, None) => {
            let uid = broker.uid().unwrap_or_default();
            from_uid(&uid).map(ClusterId).ok_or_else(|| Invalid::Rule {
                path: "metadata.uid".into(),
                message: format!("{uid:?} is not a UUID; cannot derive the cluster id"),
            })
        }
    }
}

/// A UUID (`8-4-4-4-12` hex) as Kafka writes ids: unpadded base64url.
pub fn from_uid(uid: &str) -> Option<String> {
    let hex: String = uid.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || uid.len() != 36 {
        return None;
    }
    let bytes = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(base64url(&bytes))
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Kafka's `Uuid.fromString`: 22 base64url characters (16 bytes).
fn check(id: &str) -> Result<(), &'static str> {
    if id.len() != 22 {
        return Err("it must be 22 characters long");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("it must be base64url (A-Z, a-z, 0-9, '-', '_')");
    }
    // The last character carries only 2 bits of the 16th byte.
    if !"AQgw".contains(id.chars().last().unwrap_or('A')) {
        return Err("its last character must be one of A, Q, g, w (16 bytes)");
    }
    Ok(())
}
