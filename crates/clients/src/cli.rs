//! Command-line flag groups for reaching an engine, shared by every binary
//! that talks to one (`#[command(flatten)]`). Their variables carry no
//! binary prefix, so one Secret mounted once (say `TESSERA_REDIS_PASSWORD_FILE`)
//! serves the sidecar, the adapter and the ambassador in the same pod.

use std::fmt;
use std::path::PathBuf;

use crate::{etcd, redis};

/// Redis `AUTH`: `--redis-password`, `--redis-password-file`, `--redis-username`.
#[derive(Clone, Default, PartialEq, Eq, clap::Args)]
pub struct RedisAuthArgs {
    /// Redis: AUTH password (prefer the file or the variable; never logged).
    #[arg(long, env = "TESSERA_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,

    /// Redis: file holding the AUTH password, e.g. a mounted Secret (a
    /// trailing newline is ignored).
    #[arg(
        long,
        env = "TESSERA_REDIS_PASSWORD_FILE",
        conflicts_with = "redis_password"
    )]
    pub redis_password_file: Option<PathBuf>,

    /// Redis: ACL user name for AUTH (Redis 6+).
    #[arg(long, env = "TESSERA_REDIS_USERNAME")]
    pub redis_username: Option<String>,
}

// Hand-written so that `{:?}` of a binary's arguments never shows the password.
impl fmt::Debug for RedisAuthArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAuthArgs")
            .field(
                "redis_password",
                &self.redis_password.as_ref().map(|_| "<redacted>"),
            )
            .field("redis_password_file", &self.redis_password_file)
            .field("redis_username", &self.redis_username)
            .finish()
    }
}

/// The password file named by `--redis-password-file` could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the Redis password file {}: {source}", path.display())]
pub struct PasswordFileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl RedisAuthArgs {
    /// The password from `--redis-password` (or its variable), else the
    /// contents of `--redis-password-file` without its trailing newline.
    pub fn password(&self) -> Result<Option<String>, PasswordFileError> {
        if let Some(p) = &self.redis_password {
            return Ok(Some(p.clone()));
        }
        let Some(path) = &self.redis_password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| PasswordFileError {
            path: path.clone(),
            source,
        })?;
        Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
    }

    /// `base` (timeouts, limits) with this password and user name. Reads
    /// the password file now, so that a missing file stops the start.
    pub fn options(&self, base: redis::Options) -> Result<redis::Options, PasswordFileError> {
        Ok(redis::Options {
            password: self.password()?,
            username: self.redis_username.clone(),
            ..base
        })
    }
}

/// etcd client TLS: `--etcd-ca-file`, `--etcd-cert-file`, `--etcd-key-file`,
/// `--etcd-server-name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct EtcdTlsArgs {
    /// etcd: CA bundle (PEM) for an https target.
    #[arg(long, env = "TESSERA_ETCD_CA_FILE")]
    pub etcd_ca_file: Option<PathBuf>,

    /// etcd: client certificate (PEM) for mutual TLS (with --etcd-key-file).
    #[arg(long, env = "TESSERA_ETCD_CERT_FILE", requires = "etcd_key_file")]
    pub etcd_cert_file: Option<PathBuf>,

    /// etcd: client key (PEM) for --etcd-cert-file.
    #[arg(long, env = "TESSERA_ETCD_KEY_FILE", requires = "etcd_cert_file")]
    pub etcd_key_file: Option<PathBuf>,

    /// etcd: server name to verify instead of the target host.
    #[arg(long, env = "TESSERA_ETCD_SERVER_NAME")]
    pub etcd_server_name: Option<String>,
}

impl EtcdTlsArgs {
    /// The client's TLS settings, for an `https://` endpoint.
    pub fn options(&self) -> etcd::TlsOptions {
        etcd::TlsOptions {
            ca_file: self.etcd_ca_file.clone(),
            cert_file: self.etcd_cert_file.clone(),
            key_file: self.etcd_key_file.clone(),
            server_name: self.etcd_server_name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        redis: RedisAuthArgs,
        #[command(flatten)]
        etcd: EtcdTlsArgs,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("bin").chain(args.iter().copied()))
    }

    #[test]
    fn redis_flags() {
        let c = parse(&["--redis-password", "s3cret", "--redis-username", "probe"]).unwrap();
        assert_eq!(c.redis.password().unwrap().as_deref(), Some("s3cret"));
        let o = c
            .redis
            .options(redis::Options {
                timeout: Duration::from_millis(800),
                max_reply_bytes: 1024,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(o.password.as_deref(), Some("s3cret"));
        assert_eq!(o.username.as_deref(), Some("probe"));
        assert_eq!(o.timeout, Duration::from_millis(800));
        assert_eq!(o.max_reply_bytes, 1024);

        let none = parse(&[]).unwrap().redis;
        assert_eq!(none.password().unwrap(), None);
        assert!(parse(&["--redis-password", "a", "--redis-password-file", "/f"]).is_err());
    }

    #[test]
    fn password_file_drops_the_newline_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\r\n").unwrap();
        let c = parse(&["--redis-password-file", f.to_str().unwrap()]).unwrap();
        assert_eq!(c.redis.password().unwrap().as_deref(), Some("s3cret"));

        let missing = dir.path().join("missing");
        let c = parse(&["--redis-password-file", missing.to_str().unwrap()]).unwrap();
        let e = c.redis.options(redis::Options::default()).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn debug_redacts_the_password() {
        let c = parse(&["--redis-password", "hunter2", "--redis-username", "probe"]).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("probe"),
            "{shown}"
        );
    }

    #[test]
    fn etcd_flags() {
        let c = parse(&[
            "--etcd-ca-file",
            "/ca.pem",
            "--etcd-cert-file",
            "/c.pem",
            "--etcd-key-file",
            "/k.pem",
            "--etcd-server-name",
            "etcd-0",
        ])
        .unwrap();
        let t = c.etcd.options();
        assert_eq!(t.ca_file, Some("/ca.pem".into()));
        assert_eq!(t.cert_file, Some("/c.pem".into()));
        assert_eq!(t.key_file, Some("/k.pem".into()));
        assert_eq!(t.server_name.as_deref(), Some("etcd-0"));
        // A certificate without its key (or the reverse) is refused.
        assert!(parse(&["--etcd-cert-file", "/c.pem"]).is_err());
        assert!(parse(&["--etcd-key-file", "/k.pem"]).is_err());
        assert_eq!(parse(&[]).unwrap().etcd, EtcdTlsArgs::default());
    }

    // The names are the pod-spec contract shared by every container; read
    // them from the command rather than setting process-wide variables.
    #[test]
    fn env_var_names() {
        let cmd = Cli::command();
        let mut names: Vec<(String, String, bool)> = cmd
            .get_arguments()
            .filter_map(|a| {
                let env = a.get_env()?.to_str()?.to_string();
                Some((a.get_id().to_string(), env, a.is_hide_env_values_set()))
            })
            .collect();
        names.sort();
        let want = [
            ("etcd_ca_file", "TESSERA_ETCD_CA_FILE", false),
            ("etcd_cert_file", "TESSERA_ETCD_CERT_FILE", false),
            ("etcd_key_file", "TESSERA_ETCD_KEY_FILE", false),
            ("etcd_server_name", "TESSERA_ETCD_SERVER_NAME", false),
            ("redis_password", "TESSERA_REDIS_PASSWORD", true),
            ("redis_password_file", "TESSERA_REDIS_PASSWORD_FILE", false),
            ("redis_username", "TESSERA_REDIS_USERNAME", false),
        ]
        .map(|(a, e, h)| (a.to_string(), e.to_string(), h));
        assert_eq!(names, want);
    }
}
