//! Command line: every flag also reads a `TESSERA_SIDECAR_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    Redis,
    Memcached,
    Zookeeper,
    Etcd,
    Kafka,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Redis => "redis",
            Engine::Memcached => "memcached",
            Engine::Zookeeper => "zookeeper",
            Engine::Etcd => "etcd",
            Engine::Kafka => "kafka",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Readiness and liveness for a stateful engine, answered over HTTP.
#[derive(Debug, Parser)]
#[command(name = "tessera-sidecar", version)]
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
    #[arg(long, env = "TESSERA_SIDECAR_PROBE_TIMEOUT", default_value = "800ms", value_parser = parse_duration)]
    pub probe_timeout: Duration,

    /// Redis: largest master_last_io_seconds_ago for a ready replica.
    #[arg(long, env = "TESSERA_SIDECAR_MAX_REPLICA_LAG", default_value_t = 10)]
    pub max_replica_lag: u64,

    /// Redis: AUTH password (prefer the file or the variable; never logged).
    #[arg(long, env = "TESSERA_SIDECAR_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,

    /// Redis: file holding the AUTH password (e.g. a mounted Secret).
    #[arg(
        long,
        env = "TESSERA_SIDECAR_REDIS_PASSWORD_FILE",
        conflicts_with = "redis_password"
    )]
    pub redis_password_file: Option<PathBuf>,

    /// Redis: ACL user name for AUTH.
    #[arg(long, env = "TESSERA_SIDECAR_REDIS_USERNAME")]
    pub redis_username: Option<String>,

    /// ZooKeeper: ensemble size; `Mode: standalone` is ready only when 1.
    #[arg(long, env = "TESSERA_SIDECAR_ZOOKEEPER_MEMBERS", default_value_t = 1)]
    pub zookeeper_members: u32,

    /// Kafka: this broker's node.id; without it the broker is found by port.
    #[arg(long, env = "TESSERA_SIDECAR_KAFKA_NODE_ID")]
    pub kafka_node_id: Option<i32>,

    /// etcd: CA bundle (PEM) for an https target.
    #[arg(long, env = "TESSERA_SIDECAR_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,

    /// etcd: client certificate (PEM) for mutual TLS.
    #[arg(long, env = "TESSERA_SIDECAR_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// etcd: client key (PEM) for mutual TLS.
    #[arg(long, env = "TESSERA_SIDECAR_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// etcd: server name to verify instead of the target host.
    #[arg(long, env = "TESSERA_SIDECAR_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,

    /// Log format.
    #[arg(
        long,
        env = "TESSERA_SIDECAR_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Log filter, e.g. info or tessera_sidecar=debug.
    #[arg(long, env = "TESSERA_SIDECAR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// `800ms`, `1s`, `1.5s`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || Error::Duration(s.to_string()).to_string();
    let (num, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|i| s.split_at(i))
        .ok_or_else(bad)?;
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if !(secs > 0.0 && secs < 3600.0) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Checks `host:port` syntax (the host may be a name resolved later).
pub fn validate_host_port(target: &str) -> Result<(), Error> {
    let err = |why: &str| Error::Target {
        target: target.to_string(),
        why: why.to_string(),
    };
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| err("expected host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(['/', ' ', '@']) {
        return Err(err("expected host:port with a host name or IP address"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(err("the port must be a number from 1 to 65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("800ms").unwrap(), Duration::from_millis(800));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        for bad in ["", "800", "ms", "0s", "-1s", "1h", "1e9s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets() {
        for ok in [
            "127.0.0.1:6379",
            "localhost:2181",
            "[::1]:9092",
            "redis-0.redis:6379",
        ] {
            validate_host_port(ok).unwrap();
        }
        for bad in [
            "127.0.0.1",
            ":6379",
            "h:0",
            "h:65536",
            "h:x",
            "http://h:1",
            "a b:1",
        ] {
            assert!(validate_host_port(bad).is_err(), "{bad}");
        }
    }
}
