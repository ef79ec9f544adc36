//! Redis/Valkey: PONG; a primary is ready; a replica only with its link up,
//! not loading, and recent I/O from its primary.

use tessera_clients::Error as ClientError;
use tessera_clients::redis::{Client, Info, Options};
use tokio::sync::Mutex;

use super::Verdict;
use crate::cli::{Args, validate_host_port};
use crate::error::Error;

pub struct Redis {
    client: Mutex<Client>,
    max_lag: u64,
}

impl Redis {
    pub fn new(args: &Args) -> Result<Redis, Error> {
        validate_host_port(&args.target)?;
        let password = match (&args.redis_password, &args.redis_password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| Error::PasswordFile {
                        path: path.display().to_string(),
                        source,
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
            (None, None) => None,
        };
        let opts = Options {
            timeout: args.probe_timeout,
            password,
            username: args.redis_username.clone(),
            // INFO replication is ~1 KiB; a probe never needs more.
            max_reply_bytes: 1024 * 1024,
        };
        Ok(Redis {
            client: Mutex::new(Client::lazy(&args.target, opts)),
            max_lag: args.max_replica_lag,
        })
    }

    pub async fn live(&self) -> Verdict {
        match self.client.lock().await.ping().await {
            Ok(()) => Verdict::pass("PONG"),
            // Busy loading a dataset or cut off from its primary: alive.
            Err(ClientError::Server(m))
                if m.starts_with("LOADING") || m.starts_with("MASTERDOWN") =>
            {
                Verdict::pass(super::one_line(&m))
            }
            Err(e) => Verdict::error("PING", &e),
        }
    }

    pub async fn ready(&self) -> Verdict {
        let mut c = self.client.lock().await;
        if let Err(e) = c.ping().await {
            return Verdict::error("PING", &e);
        }
        match c.info(Some("replication")).await {
            Ok(info) => replica_verdict(&info, self.max_lag),
            Err(e) => Verdict::error("INFO replication", &e),
        }
    }
}

/// The readiness rule on `INFO replication`.
pub fn replica_verdict(info: &Info, max_lag: u64) -> Verdict {
    match info.get("role") {
        Some("master") => return Verdict::pass("primary"),
        Some("slave") => {}
        other => return Verdict::fail(format!("unknown role {other:?}")),
    }
    if info.get("master_link_status") != Some("up") {
        return Verdict::fail(format!(
            "replica: link to primary {}:{} is {}",
            info.get("master_host").unwrap_or("?"),
            info.get("master_port").unwrap_or("?"),
            info.get("master_link_status").unwrap_or("unknown")
        ));
    }
    if info.get("master_sync_in_progress") == Some("1") || info.get("loading") == Some("1") {
        return Verdict::fail("replica: still loading the dataset from its primary");
    }
    match info
        .get("master_last_io_seconds_ago")
        .and_then(|v| v.parse::<i64>().ok())
    {
        Some(lag) if lag >= 0 && lag as u64 <= max_lag => {
            Verdict::pass(format!("replica: link up, last I/O {lag}s ago"))
        }
        Some(lag) => Verdict::fail(format!(
            "replica: last I/O from primary {lag}s ago exceeds --max-replica-lag {max_lag}s"
        )),
        None => Verdict::fail("replica: no master_last_io_seconds_ago"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_rules() {
        let v = |s: &str| replica_verdict(&Info::parse(s), 10);
        assert!(v("role:master\n").ok);
        assert!(v("role:slave\nmaster_link_status:up\nmaster_last_io_seconds_ago:1\nmaster_sync_in_progress:0\n").ok);
        assert!(!v("role:slave\nmaster_link_status:down\nmaster_last_io_seconds_ago:-1\n").ok);
        assert!(!v("role:slave\nmaster_link_status:up\nmaster_last_io_seconds_ago:11\n").ok);
        assert!(!v("role:slave\nmaster_link_status:up\nmaster_sync_in_progress:1\nmaster_last_io_seconds_ago:0\n").ok);
        assert!(!v("role:slave\nmaster_link_status:up\n").ok);
        assert!(!v("garbage\n").ok);
    }
}
