#![forbid(unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tessera_ambassador::config::Config;
use tessera_ambassador::discovery::{self, StoreRef};
use tessera_ambassador::{admin, reload, server::Server};
use tessera_telemetry::{Signal, Signals};
use tokio::sync::Notify;

/// A twemproxy-compatible shard-routing proxy for Redis and memcached.
#[derive(Parser, Debug)]
#[command(name = "tessera-ambassador", version)]
struct Args {
    /// The twemproxy-style pool file to run; reloaded when it changes.
    #[arg(long, env = "TESSERA_AMBASSADOR_CONFIG", conflicts_with = "check")]
    config: Option<PathBuf>,
    /// Validate a pool file, print what is wrong with line numbers, and exit.
    #[arg(long, env = "TESSERA_AMBASSADOR_CHECK")]
    check: Option<PathBuf>,
    /// Route to the primaries of this ShardedStore (`namespace/name`),
    /// watched through the Kubernetes API, instead of a pool file.
    #[arg(long, env = "TESSERA_AMBASSADOR_STORE", conflicts_with_all = ["config", "check"])]
    store: Option<StoreRef>,
    /// With --store: where to listen (default 127.0.0.1:6379, or :11211 for memcached).
    #[arg(long, env = "TESSERA_AMBASSADOR_LISTEN", requires = "store")]
    listen: Option<String>,
    /// With --store: the shard timeout in milliseconds (0 waits forever).
    #[arg(long, env = "TESSERA_AMBASSADOR_TIMEOUT_MS", default_value_t = 1000)]
    timeout_ms: u64,
    /// With --store: the Redis password (mount it from the store's secret).
    #[arg(long, env = "TESSERA_AMBASSADOR_REDIS_AUTH", hide_env_values = true)]
    redis_auth: Option<String>,
    /// Serve /metrics and /healthz on this address.
    #[arg(long, env = "TESSERA_AMBASSADOR_ADMIN")]
    admin: Option<SocketAddr>,
    /// How often to look for a changed pool file, in milliseconds.
    #[arg(
        long,
        env = "TESSERA_AMBASSADOR_RELOAD_INTERVAL_MS",
        default_value_t = 1000
    )]
    reload_interval_ms: u64,
    /// `--log-format` and `--log-level` (`TESSERA_LOG_FORMAT`,
    /// `TESSERA_LOG_LEVEL`), shared by every Tessera binary.
    #[command(flatten)]
    log: tessera_telemetry::LogArgs,
    /// Worker threads. The default is half the cores this process may use
    /// (its CPU quota included), rounded up: the application beside it
    /// needs the rest. 0 uses every core.
    #[arg(long, env = "TESSERA_AMBASSADOR_THREADS")]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tessera_telemetry::init(&args.log);

    if let Some(path) = &args.check {
        return match Config::load(path) {
            Ok(config) => {
                for p in &config.pools {
                    println!(
                        "{}: pool {:?} listens on {} with {} servers ({}, {}): ok",
                        path.display(),
                        p.name,
                        p.listen,
                        p.servers.len(),
                        p.hash,
                        p.distribution
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                for p in &e.problems {
                    match p.line {
                        Some(line) => eprintln!("{}:{line}: {}", path.display(), p.message),
                        None => eprintln!("{}: {}", path.display(), p.message),
                    }
                }
                ExitCode::FAILURE
            }
        };
    }
    if args.store.is_none() && args.config.is_none() {
        eprintln!("one of --config, --check or --store is required");
        return ExitCode::FAILURE;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = match args.threads {
        None => cores.div_ceil(2),
        Some(0) => cores,
        Some(n) => n,
    };
    if let Err(e) = tessera_ambassador::workers::start(threads) {
        eprintln!("cannot start {threads} worker threads: {e}");
        return ExitCode::FAILURE;
    }
    // The control plane (accept, reload, admin, pool managers) runs here;
    // client and shard connections run on the workers.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        // Before anything listens: SIGHUP (logrotate), SIGUSR1 and SIGUSR2
        // must never end the proxy.
        let signals = match Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot install the signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        // SIGHUP re-reads the pool file now; with --store there is no file.
        let hangup = Arc::new(Notify::new());
        let on_hangup = {
            let hangup = hangup.clone();
            let has_file = args.config.is_some();
            move || {
                if has_file {
                    tracing::info!(signal = "SIGHUP", "re-reading the pool file");
                    hangup.notify_one();
                } else {
                    tessera_telemetry::signals::nothing_to_reopen();
                }
            }
        };
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin = match args.admin {
            None => None,
            Some(addr) => match admin::serve(addr, async {
                let _ = admin_stopped.await;
            })
            .await
            {
                Ok(task) => Some(task),
                Err(e) => {
                    eprintln!("cannot serve the admin endpoint on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            },
        };
        let code = serve(args, signals.shutdown(on_hangup), hangup).await;
        // Let scrapes in progress finish.
        let _ = stop_admin.send(());
        if let Some(task) = admin {
            let _ = task.await;
        }
        code
    })
}

/// Routes until `shutdown` resolves (or discovery fails).
async fn serve(
    args: Args,
    shutdown: impl Future<Output = Signal>,
    hangup: Arc<Notify>,
) -> ExitCode {
    if let Some(store) = args.store {
        let opts = discovery::Options {
            listen: args.listen,
            timeout: (args.timeout_ms > 0).then(|| Duration::from_millis(args.timeout_ms)),
            redis_auth: args.redis_auth,
        };
        tokio::select! {
            r = discovery::run(store, opts) => {
                if let Err(e) = r {
                    eprintln!("discovery failed: {e:#}");
                    return ExitCode::FAILURE;
                }
            }
            _ = shutdown => {}
        }
        return ExitCode::SUCCESS;
    }
    let Some(path) = args.config else {
        return ExitCode::FAILURE;
    };
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::start(config).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(reload::watch(
        path,
        server.clone(),
        Duration::from_millis(args.reload_interval_ms.max(10)),
        hangup,
    ));
    shutdown.await;
    ExitCode::SUCCESS
}
