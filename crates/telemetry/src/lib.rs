//! What every Tessera binary shares at run time, so that they all behave
//! alike in a pod:
//!
//! - the logging flags and tracing setup: one pod spec
//!   (`TESSERA_LOG_FORMAT`, `TESSERA_LOG_LEVEL`) configures every container
//!   in it the same way;
//! - [`signals`]: SIGTERM and SIGINT drain, SIGHUP, SIGUSR1 and SIGUSR2 never
//!   end the process;
//! - [`http`]: the server behind every `/metrics`, `/healthz`, `/readyz`
//!   endpoint, hardened once (accept-error backoff, header-read timeout,
//!   connection cap, graceful drain).
//!
//! ```no_run
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     log: tessera_telemetry::LogArgs,
//! }
//!
//! let args = Args::parse();
//! tessera_telemetry::init(&args.log);
//! ```
#![forbid(unsafe_code)]

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

pub mod http;
pub mod signals;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use signals::{Signal, Signals};

/// How log lines are written to stderr: `text` for people, `json` (one
/// object per line) for log collectors.
// No doc comments on the variants: clap would print them in a long
// `--help` layout for every flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `--log-format` and `--log-level`; flatten into a binary's arguments with
/// `#[command(flatten)]`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, env = "TESSERA_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax), e.g. info or warn,tessera_adapter=debug.
    // Checked while parsing, so that a typo is refused at start rather
    // than silently logging at another level.
    #[arg(long, env = "TESSERA_LOG_LEVEL", default_value = "info", value_parser = parse_filter)]
    pub log_level: String,
}

impl Default for LogArgs {
    fn default() -> Self {
        LogArgs {
            log_format: LogFormat::Text,
            log_level: "info".to_string(),
        }
    }
}

/// Accepts what [`EnvFilter`] accepts (`info`, `warn,tessera_adapter=debug`).
fn parse_filter(s: &str) -> Result<String, String> {
    EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// Installs the global tracing subscriber: `args.log_format` lines on
/// stderr (stdout may carry a binary's own output), filtered by
/// `args.log_level`. A level that does not parse (only possible when
/// [`LogArgs`] is built by hand) falls back to `info`.
///
/// # Panics
/// When a global subscriber is already installed: call it once, first
/// thing in `main`.
pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_new(&args.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: in a container's log
    // (kubectl logs, a log shipper) they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
    }

    fn parse(args: &[&str]) -> Result<LogArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bin").chain(args.iter().copied())).map(|c| c.log)
    }

    #[test]
    fn defaults() {
        assert_eq!(parse(&[]).unwrap(), LogArgs::default());
    }

    #[test]
    fn flags() {
        let a = parse(&[
            "--log-format",
            "json",
            "--log-level",
            "warn,tessera_sidecar=debug",
        ])
        .unwrap();
        assert_eq!(a.log_format, LogFormat::Json);
        assert_eq!(a.log_level, "warn,tessera_sidecar=debug");
    }

    #[test]
    fn refuses_bad_values() {
        assert!(parse(&["--log-format", "xml"]).is_err());
        let e = parse(&["--log-level", "info,=[{"]).unwrap_err();
        assert!(e.to_string().contains("--log-level"), "{e}");
    }

    // The names are part of the pod-spec contract; read them from the
    // command definition rather than setting process-wide variables,
    // which would race with other tests.
    #[test]
    fn env_var_names() {
        let cmd = Cli::command();
        let env = |id: &str| {
            cmd.get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_env())
                .and_then(|e| e.to_str())
                .map(str::to_string)
        };
        assert_eq!(env("log_format").as_deref(), Some("TESSERA_LOG_FORMAT"));
        assert_eq!(env("log_level").as_deref(), Some("TESSERA_LOG_LEVEL"));
    }
}
