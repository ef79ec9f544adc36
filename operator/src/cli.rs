//! The command line: every flag also reads an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::reconcile::child::BuildContext;
use crate::runtime::RunConfig;
use crate::runtime::leader::LeaseConfig;

/// Runs stateful systems on Kubernetes: ShardedStore (Redis, memcached),
/// Broker (Kafka) and Ensemble (ZooKeeper, etcd).
#[derive(Parser, Debug)]
#[command(name = "tessera-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the CustomResourceDefinitions as YAML, or write one file per kind.
    Crd {
        /// Write `<kind>.yaml` files into this directory instead of printing a
        /// multi-document stream to stdout.
        #[arg(long, env = "TESSERA_CRD_OUT_DIR", value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Reconcile Tessera resources until SIGTERM.
    Run(Box<RunArgs>),
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Tessera's image (every binary in one image), run by the sidecar and
    /// adapter containers of every engine pod. Default: the image of this
    /// operator's version.
    #[arg(long, env = "TESSERA_IMAGE", default_value_t = crate::images::default_tessera_image())]
    pub image: String,

    /// Replace an engine's official image, as ENGINE=IMAGE; repeat the flag
    /// or separate with commas. `{version}` in IMAGE becomes the resource's
    /// version, e.g. `redis=mirror.example/redis:{version}`. A resource's own
    /// `spec.image` still wins. Engines: redis, memcached, zookeeper, etcd,
    /// kafka.
    #[arg(
        long,
        env = "TESSERA_ENGINE_IMAGES",
        value_delimiter = ',',
        value_name = "ENGINE=IMAGE"
    )]
    pub engine_image: Vec<crate::images::EngineImage>,

    /// Namespaces to watch, comma-separated. Empty: all namespaces.
    #[arg(long, env = "TESSERA_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "TESSERA_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    #[command(flatten)]
    pub log: tessera_telemetry::LogArgs,

    /// Seconds between reconciles of an unchanged resource.
    #[arg(long, env = "TESSERA_RESYNC_SECONDS", default_value_t = 300)]
    pub resync_seconds: u64,

    /// Reconciles that may run at once.
    #[arg(long, env = "TESSERA_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// Take a coordination.k8s.io Lease so that only one replica reconciles.
    #[arg(long, env = "TESSERA_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    /// Namespace of the leader Lease (usually the operator's own).
    #[arg(
        long,
        env = "TESSERA_LEASE_NAMESPACE",
        default_value = "tessera-system"
    )]
    pub lease_namespace: String,

    /// Name of the leader Lease.
    #[arg(long, env = "TESSERA_LEASE_NAME", default_value = "tessera-operator")]
    pub lease_name: String,

    /// Seconds a Lease stays valid without renewal.
    #[arg(long, env = "TESSERA_LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u64,

    /// This replica's identity in the Lease and in Events; the pod name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    #[command(flatten)]
    pub webhook: crate::webhook::cli::WebhookArgs,
}

impl RunArgs {
    pub fn to_config(&self) -> anyhow::Result<RunConfig> {
        let identity = self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "tessera-operator".into());
            format!("{host}-{}", std::process::id())
        });
        anyhow::ensure!(
            self.lease_seconds >= 3,
            "--lease-seconds must be at least 3"
        );
        let lease = self.leader_elect.then(|| LeaseConfig {
            namespace: self.lease_namespace.clone(),
            name: self.lease_name.clone(),
            identity: identity.clone(),
            duration: Duration::from_secs(self.lease_seconds),
            retry: Duration::from_secs(self.lease_seconds / 5).max(Duration::from_secs(1)),
        });
        Ok(RunConfig {
            build: BuildContext {
                tessera_image: self.image.clone(),
                engine_images: self.engine_image.iter().cloned().collect(),
            },
            namespaces: self
                .namespaces
                .iter()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect(),
            metrics_addr: self.metrics_addr,
            resync: Duration::from_secs(self.resync_seconds.max(1)),
            concurrency: self.concurrency,
            lease,
            identity,
            webhook: self.webhook.to_config(&self.namespaces)?,
        })
    }

    pub fn init_tracing(&self) {
        tessera_telemetry::init(&self.log);
    }
}

/// `crd`: every CRD as YAML.
pub fn print_crds(out_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let mut stream = String::new();
    for (file, crd) in tessera_api::crds() {
        let yaml = tessera_api::crd_yaml(&crd)?;
        match &out_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let path = dir.join(file);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            None => {
                stream.push_str("---\n");
                stream.push_str(&yaml);
            }
        }
    }
    print!("{stream}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_flags_parse_with_defaults() {
        let cli = Cli::try_parse_from([
            "tessera-operator",
            "run",
            "--namespaces",
            "a,b",
            "--leader-elect",
            "false",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        let cfg = args.to_config().unwrap();
        assert_eq!(cfg.namespaces, vec!["a", "b"]);
        assert!(cfg.lease.is_none());
        assert_eq!(cfg.resync, Duration::from_secs(300));
        assert_eq!(
            cfg.build.tessera_image,
            crate::images::default_tessera_image()
        );
        assert_eq!(cfg.build.engine_images, Default::default());
    }

    #[test]
    fn engine_images_map_engines_and_refuse_unknown_ones() {
        let cli = Cli::try_parse_from([
            "tessera-operator",
            "run",
            "--engine-image",
            "etcd=local/etcd:x,zookeeper=local/zk:{version}",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        let images = args.to_config().unwrap().build.engine_images;
        assert_eq!(
            images.resolve(&tessera_api::images::ZOOKEEPER, "3.9.3"),
            "local/zk:3.9.3"
        );
        let err = Cli::try_parse_from(["tessera-operator", "run", "--engine-image", "nats=x"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown engine 'nats'"), "{err}");
    }
}
