//! `tessera-sidecar`: answers the kubelet's readiness and liveness probes
//! for Redis, memcached, ZooKeeper, etcd or Kafka with the engine's own
//! notion of "serving", over HTTP.
#![forbid(unsafe_code)]

mod checks;
mod cli;
mod error;
mod http;
mod metrics;
mod probe;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::cli::Args;
use crate::error::Error;

fn main() -> ExitCode {
    let args = Args::parse();
    tessera_telemetry::init(&args.log);
    // One thread: checks are I/O-bound and single-flighted, and the
    // sidecar runs in every pod, so its footprint matters more than
    // parallelism.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tessera-sidecar: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "refusing to start");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<(), Error> {
    // Before listening: SIGHUP, SIGUSR1 and SIGUSR2 must never end it.
    let signals = tessera_telemetry::Signals::install().map_err(Error::Signals)?;
    let engine = args.engine.as_str();
    let checker = checks::Checker::new(&args)?;
    let metrics = Arc::new(metrics::Metrics::new(engine));
    let app = Arc::new(http::App {
        engine,
        prober: probe::Prober::new(checker, metrics.clone(), args.probe_timeout),
        metrics,
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: args.listen.to_string(),
            source,
        })?;
    tracing::info!(
        engine,
        target = %args.target,
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        probe_timeout = ?args.probe_timeout,
        "serving /livez, /readyz and /metrics"
    );
    http::serve(listener, app, async {
        signals
            .shutdown(tessera_telemetry::signals::nothing_to_reopen)
            .await;
    })
    .await;
    Ok(())
}
