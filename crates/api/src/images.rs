//! The images Tessera runs, and what a pod spec may rely on inside them.
//!
//! The operator defaults to each engine's official image. Pod specs depend on
//! that image's layout: which binaries are on `PATH`, which user it runs as,
//! where data and configuration live. This module writes that contract down,
//! once per engine; the operator builds pod specs from it, and the images
//! `hack/images.sh` builds from Debian packages (for the tests and for
//! clusters without a registry) honour the same contract, so that one pod
//! spec runs on both. `docs/images.md` is the same table for people.

/// What the operator relies on in an engine's image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageContract {
    /// The engine's name, as in labels and `--engine-image ENGINE=...`.
    pub engine: &'static str,
    /// The official image repository the operator defaults to.
    pub repository: &'static str,
    /// Put before the version to make the tag (`v` for etcd's `v3.5.17`).
    pub tag_prefix: &'static str,
    /// The user and group the engine runs as; volumes get it as `fsGroup`.
    pub uid: i64,
    /// Commands the pod spec runs, found on `PATH` or at the absolute path.
    pub commands: &'static [&'static str],
    /// Directories the pod spec mounts or writes, with what they hold.
    pub paths: &'static [(&'static str, &'static str)],
}

impl ImageContract {
    /// The official image for `version`.
    pub fn image(&self, version: &str) -> String {
        format!("{}:{}{version}", self.repository, self.tag_prefix)
    }
}

pub const REDIS: ImageContract = ImageContract {
    engine: "redis",
    repository: "docker.io/library/redis",
    tag_prefix: "",
    uid: 999,
    commands: &["redis-server", "redis-cli"],
    paths: &[("/data", "data (RDB, AOF); the working directory")],
};

pub const MEMCACHED: ImageContract = ImageContract {
    engine: "memcached",
    repository: "docker.io/library/memcached",
    tag_prefix: "",
    uid: 11211,
    commands: &["memcached"],
    paths: &[],
};

pub const ZOOKEEPER: ImageContract = ImageContract {
    engine: "zookeeper",
    repository: "docker.io/library/zookeeper",
    tag_prefix: "",
    uid: 1000,
    commands: &["/bin/bash", "zkServer.sh", "zkCli.sh"],
    paths: &[
        ("/conf", "the image's default configuration (logback.xml)"),
        ("/data", "snapshots and myid"),
        ("/logs", "server logs (ZOO_LOG_DIR)"),
    ],
};

pub const ETCD: ImageContract = ImageContract {
    engine: "etcd",
    repository: "quay.io/coreos/etcd",
    tag_prefix: "v",
    uid: 65532,
    commands: &["/usr/local/bin/etcd", "etcdctl"],
    paths: &[("/var/lib/etcd", "data")],
};

pub const KAFKA: ImageContract = ImageContract {
    engine: "kafka",
    repository: "docker.io/apache/kafka",
    tag_prefix: "",
    uid: 1000,
    commands: &["java"],
    paths: &[
        ("/opt/kafka/libs", "the Kafka jars: the JVM's classpath"),
        ("/opt/kafka/config", "the image's default configuration"),
    ],
};

/// Every engine's contract.
pub const ALL: [ImageContract; 5] = [REDIS, MEMCACHED, ZOOKEEPER, ETCD, KAFKA];

/// The contract of the engine named `engine`.
pub fn contract(engine: &str) -> Option<&'static ImageContract> {
    ALL.iter().find(|c| c.engine == engine)
}

/// Tessera's own image: every binary (operator, sidecar, adapter,
/// ambassador) in one image, at the operator's version.
pub const TESSERA_REPOSITORY: &str = "ghcr.io/tessera-dev/tessera";

/// Where our binaries are in the Tessera image (the Dockerfile's runtime stage).
pub const TESSERA_BIN_DIR: &str = "/usr/local/bin";

/// The user the Tessera image runs as (distroless `nonroot`).
pub const TESSERA_UID: i64 = 65532;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_follow_the_official_tags() {
        assert_eq!(ETCD.image("3.5.17"), "quay.io/coreos/etcd:v3.5.17");
        assert_eq!(
            ZOOKEEPER.image("3.9.3"),
            "docker.io/library/zookeeper:3.9.3"
        );
        assert_eq!(contract("kafka"), Some(&KAFKA));
        assert_eq!(contract("mysql"), None);
    }

    #[test]
    fn every_engine_runs_as_a_non_root_user() {
        for c in ALL {
            assert!(c.uid > 0, "{} runs as root", c.engine);
        }
    }
}
