use std::sync::Arc;

use clap::Parser;
use tessera_adapter::cli::{Args, LogFormat};
use tessera_adapter::http::{Adapter, serve};

// One thread is plenty for one engine and a scrape every few seconds, and
// it keeps the resident set small next to the engine it watches.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format, &args.log_level)?;
    if let Err(msg) = args.validate() {
        anyhow::bail!("{msg}");
    }
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
    tokio::select! {
        r = serve(listener, adapter) => r?,
        _ = shutdown() => tracing::info!("shutting down"),
    }
    Ok(())
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| anyhow::anyhow!("--log-level {level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
