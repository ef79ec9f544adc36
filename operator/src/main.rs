//! `tessera-operator`: reconciles tessera.dev resources.
#![forbid(unsafe_code)]

use clap::Parser;
use tessera_operator::cli::{Cli, Command, print_crds};

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { out_dir } => print_crds(out_dir),
        Command::Run(args) => {
            args.init_tracing();
            let cfg = args.to_config()?;
            tokio::runtime::Builder::new_multi_thread()
                // Reconciles are I/O bound; two workers keep memory and CPU
                // small on shared machines.
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(tessera_operator::runtime::run(cfg))
        }
    }
}
