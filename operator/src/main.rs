//! `tessera-operator`: reconciles tessera.dev resources.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Runs stateful systems on Kubernetes: ShardedStore (Redis, memcached),
/// Broker (Kafka) and Ensemble (ZooKeeper, etcd).
#[derive(Parser, Debug)]
#[command(name = "tessera-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML, or write one file per kind.
    Crd {
        /// Write `<kind>.yaml` files into this directory instead of printing a
        /// multi-document stream to stdout.
        #[arg(long, env = "TESSERA_CRD_OUT_DIR", value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { out_dir } => print_crds(out_dir),
    }
}

fn print_crds(out_dir: Option<PathBuf>) -> anyhow::Result<()> {
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
