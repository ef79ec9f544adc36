//! Live reload of the pool file.
//!
//! A mounted ConfigMap changes by swapping a `..data` symlink, which many
//! file watchers miss, so we poll: every interval we read the file through
//! its path (following the symlinks) and reload when the bytes differ from
//! the last version we looked at. SIGHUP makes it look at once, as
//! twemproxy's users expect a signal to take effect.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::Config;
use crate::metrics::METRICS;
use crate::server::Server;

/// Polls `path` every `interval`, and whenever `now` is notified (SIGHUP).
pub async fn watch(path: PathBuf, server: Arc<Server>, interval: Duration, now: Arc<Notify>) {
    let mut last = std::fs::read(&path).ok();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let asked = tokio::select! {
            _ = tick.tick() => false,
            () = now.notified() => true,
        };
        let Ok(text) = std::fs::read(&path) else {
            // Mid-swap or deleted: keep the running config and look again.
            if asked {
                tracing::warn!(path = %path.display(), "SIGHUP: cannot read the pool file; keeping the running configuration");
            }
            continue;
        };
        if last.as_deref() == Some(&text[..]) {
            if asked {
                tracing::info!(path = %path.display(), "SIGHUP: the pool file is unchanged");
            }
            continue;
        }
        last = Some(text.clone());
        apply(&path, &text, &server).await;
    }
}

async fn apply(path: &std::path::Path, text: &[u8], server: &Server) {
    let result = match std::str::from_utf8(text) {
        Err(e) => Err(format!("not UTF-8: {e}")),
        Ok(text) => match Config::parse(text) {
            Err(e) => Err(e.to_string()),
            Ok(config) => server.reload(config).await,
        },
    };
    match result {
        Ok(()) => {
            METRICS.reloads.with_label_values(&["ok"]).inc();
            tracing::info!(path = %path.display(), "configuration reloaded");
        }
        Err(why) => {
            METRICS.reloads.with_label_values(&["error"]).inc();
            tracing::error!(path = %path.display(), error = %why, "reload failed; keeping the running configuration");
        }
    }
}
