use std::sync::Arc;

use clap::Parser;
use tessera_adapter::cli::Args;
use tessera_adapter::http::{Adapter, serve};

// One thread is plenty for one engine and a scrape every few seconds, and
// it keeps the resident set small next to the engine it watches.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tessera_telemetry::init(&args.log);
    if let Err(msg) = args.validate() {
        anyhow::bail!("{msg}");
    }
    // Before listening: SIGHUP, SIGUSR1 and SIGUSR2 must never end it.
    let signals = tessera_telemetry::Signals::install()
        .map_err(|e| anyhow::anyhow!("installing the signal handlers: {e}"))?;
    let adapter = Arc::new(Adapter::new(&args)?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding --listen {}: {e}", args.listen))?;
    tracing::info!(
        engine = args.engine.as_str(),
        target = %args.target,
        listen = %listener.local_addr()?,
        scrape_timeout = ?args.scrape_timeout,
        "tessera-adapter serving /metrics and /healthz"
    );
    serve(listener, adapter, async {
        signals
            .shutdown(tessera_telemetry::signals::nothing_to_reopen)
            .await;
    })
    .await;
    Ok(())
}
