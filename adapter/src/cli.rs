//! Command line: every flag also reads a `TESSERA_ADAPTER_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, ValueEnum};
pub use tessera_clients::target::Engine;
use tessera_clients::target::{parse_duration, validate_host_port};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Exposes one engine's native health data in the uniform `tessera_*`
/// Prometheus schema.
#[derive(Debug, Clone, Parser)]
#[command(name = "tessera-adapter", version)]
pub struct Args {
    /// Engine behind --target.
    #[arg(
        long,
        env = "TESSERA_ADAPTER_ENGINE",
        value_parser = PossibleValuesParser::new(Engine::NAMES).try_map(|s| s.parse::<Engine>())
    )]
    pub engine: Engine,

    /// Engine address: host:port, or for etcd a base URL
    /// (http://host:2379 or https://...; host:port means http).
    #[arg(long, env = "TESSERA_ADAPTER_TARGET")]
    pub target: String,

    /// Address for /metrics and /healthz.
    #[arg(long, env = "TESSERA_ADAPTER_LISTEN", default_value = "0.0.0.0:9121")]
    pub listen: SocketAddr,

    /// Deadline for asking the engine during one scrape (e.g. 5s, 800ms);
    /// keep it below Prometheus's scrape timeout (10s by default).
    #[arg(long, env = "TESSERA_ADAPTER_SCRAPE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub scrape_timeout: Duration,

    /// Redis password (prefer --redis-password-file). Never logged.
    #[arg(long, env = "TESSERA_ADAPTER_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,

    /// File holding the Redis password (trailing newline ignored).
    #[arg(
        long,
        env = "TESSERA_ADAPTER_REDIS_PASSWORD_FILE",
        conflicts_with = "redis_password"
    )]
    pub redis_password_file: Option<PathBuf>,

    /// Redis ACL user (Redis 6+), used with the password.
    #[arg(long, env = "TESSERA_ADAPTER_REDIS_USERNAME")]
    pub redis_username: Option<String>,

    /// PEM CA bundle for an https etcd target.
    #[arg(long, env = "TESSERA_ADAPTER_ETCD_CA_FILE")]
    pub etcd_ca_file: Option<PathBuf>,

    /// PEM client certificate for etcd mutual TLS (with --etcd-key-file).
    #[arg(
        long,
        env = "TESSERA_ADAPTER_ETCD_CERT_FILE",
        requires = "etcd_key_file"
    )]
    pub etcd_cert_file: Option<PathBuf>,

    /// PEM private key for --etcd-cert-file.
    #[arg(
        long,
        env = "TESSERA_ADAPTER_ETCD_KEY_FILE",
        requires = "etcd_cert_file"
    )]
    pub etcd_key_file: Option<PathBuf>,

    /// Kafka node id of the target broker, when its advertised address
    /// differs from --target (otherwise found by matching the address).
    #[arg(long, env = "TESSERA_ADAPTER_KAFKA_NODE_ID")]
    pub kafka_node_id: Option<i32>,

    #[arg(
        long,
        env = "TESSERA_ADAPTER_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Log filter, e.g. info or tessera_adapter=debug.
    #[arg(long, env = "TESSERA_ADAPTER_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl Args {
    /// Checks what clap cannot: the target's shape for the engine.
    pub fn validate(&self) -> Result<(), String> {
        if self.engine == Engine::Etcd {
            let rest = self
                .target
                .strip_prefix("http://")
                .or_else(|| self.target.strip_prefix("https://"))
                .unwrap_or(&self.target);
            return validate_host_port(rest.trim_end_matches('/'));
        }
        validate_host_port(&self.target)
    }

    /// The etcd base URL (host:port means plain http).
    pub fn etcd_url(&self) -> String {
        if self.target.contains("://") {
            self.target.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", self.target)
        }
    }

    /// The Redis password from the flag, the variable or the file.
    pub fn redis_password(&self) -> anyhow::Result<Option<String>> {
        if let Some(p) = &self.redis_password {
            return Ok(Some(p.clone()));
        }
        match &self.redis_password_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("reading --redis-password-file {}: {e}", path.display())
                })?;
                Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut v = vec!["tessera-adapter"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v)
    }

    #[test]
    fn defaults_and_durations() {
        let a = args(&["--engine", "redis", "--target", "127.0.0.1:6379"]).unwrap();
        assert_eq!(a.listen, "0.0.0.0:9121".parse().unwrap());
        assert_eq!(a.scrape_timeout, Duration::from_secs(5));
        assert!(a.validate().is_ok());
        let a = args(&[
            "--engine",
            "kafka",
            "--target",
            "b:9092",
            "--scrape-timeout",
            "800ms",
        ]);
        assert_eq!(a.unwrap().scrape_timeout, Duration::from_millis(800));
        assert!(
            args(&[
                "--engine",
                "kafka",
                "--target",
                "b:9092",
                "--scrape-timeout",
                "2"
            ])
            .is_err()
        );
    }

    #[test]
    fn refuses_bad_targets_and_engines() {
        assert!(args(&["--engine", "mysql", "--target", "a:1"]).is_err());
        let a = args(&["--engine", "zookeeper", "--target", "localhost"]).unwrap();
        assert!(
            a.validate().unwrap_err().contains("host:port"),
            "{:?}",
            a.validate()
        );
        let a = args(&["--engine", "etcd", "--target", "https://10.0.0.1:2379/"]).unwrap();
        assert!(a.validate().is_ok());
        assert_eq!(a.etcd_url(), "https://10.0.0.1:2379");
        let a = args(&["--engine", "etcd", "--target", "127.0.0.1:2379"]).unwrap();
        assert_eq!(a.etcd_url(), "http://127.0.0.1:2379");
    }

    #[test]
    fn password_file_drops_the_newline() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        let a = args(&[
            "--engine",
            "redis",
            "--target",
            "127.0.0.1:6379",
            "--redis-password-file",
            f.to_str().unwrap(),
        ])
        .unwrap();
        assert_eq!(a.redis_password().unwrap().as_deref(), Some("s3cret"));
    }
}
