//! The membership ConfigMap, `<name>-members`: which members a pod that
//! starts now must know about. It is not a `build` child: `prepare`
//! creates it once and `orchestrate` changes it, one membership change at
//! a time, as it changes the engine's own membership (see [`super::scale`]).
//!
//! It stays out of the pod template's checksum: ZooKeeper reads its member
//! list only at start and then follows the leader's dynamic configuration,
//! and etcd reads `initial-cluster` only when its data directory is empty.
//! A scale therefore restarts no running member.

use std::collections::BTreeMap;

use tessera_api::EnsembleEngine;

use super::build::Members;
use super::{etcd, zookeeper};

/// The key ZooKeeper's dynamic configuration file is stored under (and
/// the file's name once copied next to `zoo.cfg`).
pub const ZOO_DYNAMIC: &str = "zoo.cfg.dynamic";
pub const ETCD_INITIAL_CLUSTER: &str = "ETCD_INITIAL_CLUSTER";
pub const ETCD_INITIAL_CLUSTER_STATE: &str = "ETCD_INITIAL_CLUSTER_STATE";

pub fn configmap_name(name: &str) -> String {
    format!("{name}-members")
}

/// Whether members that start now create a cluster or join one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// The ensemble is being created: its first members bootstrap together.
    New,
    /// The ensemble runs: a member without data joins it (etcd only reads
    /// this with an empty data directory).
    Existing,
}

impl ClusterState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::New => "new",
            ClusterState::Existing => "existing",
        }
    }
}

/// The ConfigMap's data for `members.replicas` members, ordinals
/// `0..replicas`.
pub fn data(
    engine: EnsembleEngine,
    members: &Members,
    state: ClusterState,
) -> BTreeMap<String, String> {
    match engine {
        EnsembleEngine::Zookeeper => BTreeMap::from([(
            ZOO_DYNAMIC.to_string(),
            (0..members.replicas)
                .map(|o| format!("{}\n", zookeeper_server(members, o)))
                .collect(),
        )]),
        EnsembleEngine::Etcd => BTreeMap::from([
            (
                ETCD_INITIAL_CLUSTER.to_string(),
                (0..members.replicas)
                    .map(|o| {
                        format!(
                            "{}={}",
                            pod_name(members.name, o),
                            etcd_peer_url(members, o)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                ETCD_INITIAL_CLUSTER_STATE.to_string(),
                state.as_str().to_string(),
            ),
        ]),
    }
}

/// The members a membership ConfigMap lists: ZooKeeper's `server.N` lines,
/// etcd's `initial-cluster` entries.
pub fn listed(engine: EnsembleEngine, data: &BTreeMap<String, String>) -> usize {
    match engine {
        EnsembleEngine::Zookeeper => data.get(ZOO_DYNAMIC).map_or(0, |d| {
            d.lines().filter(|l| l.starts_with("server.")).count()
        }),
        EnsembleEngine::Etcd => data
            .get(ETCD_INITIAL_CLUSTER)
            .map_or(0, |c| c.split(',').filter(|e| !e.is_empty()).count()),
    }
}

/// Member `ordinal`'s line in ZooKeeper's dynamic configuration; its id
/// is the ordinal plus one (ZooKeeper ids start at 1).
pub fn zookeeper_server(members: &Members, ordinal: i32) -> String {
    format!(
        "server.{}={}:{}:{}:participant;{}",
        ordinal + 1,
        members.host(ordinal),
        zookeeper::PEER_PORT,
        zookeeper::ELECTION_PORT,
        zookeeper::CLIENT_PORT
    )
}

/// The pod of member `ordinal`: also the member's etcd name
/// (`--name=$(POD_NAME)`) and, with the claim template's name, its claim.
pub fn pod_name(name: &str, ordinal: i32) -> String {
    format!("{name}-{ordinal}")
}

pub fn etcd_peer_url(members: &Members, ordinal: i32) -> String {
    format!("http://{}:{}", members.host(ordinal), etcd::PEER_PORT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(replicas: i32) -> Members<'static> {
        Members {
            name: "e",
            namespace: "ns",
            replicas,
        }
    }

    #[test]
    fn zookeeper_lists_every_member_as_a_participant() {
        let d = data(EnsembleEngine::Zookeeper, &members(3), ClusterState::New);
        assert_eq!(
            d[ZOO_DYNAMIC],
            "server.1=e-0.e-headless.ns.svc:2888:3888:participant;2181\n\
             server.2=e-1.e-headless.ns.svc:2888:3888:participant;2181\n\
             server.3=e-2.e-headless.ns.svc:2888:3888:participant;2181\n"
        );
        assert_eq!(listed(EnsembleEngine::Zookeeper, &d), 3);
    }

    #[test]
    fn etcd_lists_the_initial_cluster_and_its_state() {
        let d = data(EnsembleEngine::Etcd, &members(2), ClusterState::Existing);
        assert_eq!(
            d[ETCD_INITIAL_CLUSTER],
            "e-0=http://e-0.e-headless.ns.svc:2380,e-1=http://e-1.e-headless.ns.svc:2380"
        );
        assert_eq!(d[ETCD_INITIAL_CLUSTER_STATE], "existing");
        assert_eq!(listed(EnsembleEngine::Etcd, &d), 2);
        assert_eq!(listed(EnsembleEngine::Etcd, &BTreeMap::new()), 0);
    }
}
