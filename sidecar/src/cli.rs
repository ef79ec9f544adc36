//! Command line: the sidecar's own flags read `TESSERA_SIDECAR_*`
//! variables; the shared groups (Redis auth, etcd TLS, logs) read the
//! `TESSERA_*` variables every Tessera container in a pod shares.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tessera_clients::cli::{EtcdTlsArgs, RedisAuthArgs};
use tessera_clients::target::{Engine, parse_duration};
use tessera_telemetry::LogArgs;

use crate::error::Error;

/// Readiness and liveness for a stateful engine, answered over HTTP.
#[derive(Debug, Parser)]
#[command(name = "tessera-sidecar", version)]
// The etcd TLS flags were --tls-*; the old names still work.
#[command(
    mut_arg("etcd_ca_file", |a| a.alias("tls-ca-file")),
    mut_arg("etcd_cert_file", |a| a.alias("tls-cert-file")),
    mut_arg("etcd_key_file", |a| a.alias("tls-key-file")),
    mut_arg("etcd_server_name", |a| a.alias("tls-server-name")),
)]
pub struct Args {
    /// Engine next to this sidecar.
    #[arg(long, env = "TESSERA_SIDECAR_ENGINE", value_enum)]
    pub engine: Engine,

    /// Engine address, host:port (etcd also accepts http:// or https:// URLs).
    #[arg(long, env = "TESSERA_SIDECAR_TARGET")]
    pub target: String,

    /// Address for /livez, /readyz and /metrics.
    #[arg(long, env = "TESSERA_SIDECAR_LISTEN", default_value = "0.0.0.0:8095")]
    pub listen: SocketAddr,

    /// Deadline of one check, below the kubelet's 1s default probe timeout.
    #[arg(long, env = "TESSERA_SIDECAR_PROBE_TIMEOUT", default_value = "800ms", value_parser = parse_probe_timeout)]
    pub probe_timeout: Duration,

    /// Redis: largest master_last_io_seconds_ago for a ready replica.
    #[arg(long, env = "TESSERA_SIDECAR_MAX_REPLICA_LAG", default_value_t = 10)]
    pub max_replica_lag: u64,

    #[command(flatten)]
    pub redis: RedisAuthArgs,

    /// ZooKeeper: ensemble size; `Mode: standalone` is ready only when 1.
    #[arg(long, env = "TESSERA_SIDECAR_ZOOKEEPER_MEMBERS", default_value_t = 1)]
    pub zookeeper_members: u32,

    /// Kafka: this broker's node.id; without it the broker is found by port.
    #[arg(long, env = "TESSERA_SIDECAR_KAFKA_NODE_ID")]
    pub kafka_node_id: Option<i32>,

    /// Kafka: what runs next to the sidecar. A `controller` (a KRaft
    /// controller only) does not answer Metadata: it is ready when it
    /// answers DescribeCluster and knows the active controller.
    #[arg(
        long,
        env = "TESSERA_SIDECAR_KAFKA_ROLE",
        value_enum,
        default_value = "broker"
    )]
    pub kafka_role: KafkaRole,

    #[command(flatten)]
    pub etcd_tls: EtcdTlsArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

/// What a Kafka process does, for its readiness check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KafkaRole {
    /// A broker (possibly also a controller): listed by Metadata when ready.
    Broker,
    /// A KRaft controller only.
    Controller,
}

/// The shared duration syntax, with the sidecar's own message.
fn parse_probe_timeout(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|_| Error::Duration(s.to_string()).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        let base = ["tessera-sidecar", "--engine", "etcd", "--target", "h:2379"];
        Args::try_parse_from(base.iter().chain(extra))
    }

    #[test]
    fn probe_timeout() {
        assert_eq!(args(&[]).unwrap().probe_timeout, Duration::from_millis(800));
        let a = args(&["--probe-timeout", "1.5s"]).unwrap();
        assert_eq!(a.probe_timeout, Duration::from_millis(1500));
        let e = args(&["--probe-timeout", "800"]).unwrap_err().to_string();
        assert!(e.contains("use a duration such as 800ms"), "{e}");
    }

    #[test]
    fn old_tls_flag_names_still_work() {
        let with = |prefix: &str| {
            let flags = ["ca-file", "cert-file", "key-file", "server-name"]
                .map(|f| [format!("--{prefix}-{f}"), format!("/{f}")]);
            args(
                &flags
                    .iter()
                    .flatten()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            )
            .unwrap()
            .etcd_tls
        };
        let old = with("tls");
        assert_eq!(old, with("etcd"));
        assert_eq!(old.etcd_server_name.as_deref(), Some("/server-name"));
    }
}
