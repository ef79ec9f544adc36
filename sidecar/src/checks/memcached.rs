//! memcached: ready when `stats` reports `accepting_conns 1`; live when
//! `version` answers.

use tessera_clients::memcached::Client;
use tokio::sync::Mutex;

use super::Verdict;
use crate::cli::{Args, validate_host_port};
use crate::error::Error;

pub struct Memcached {
    client: Mutex<Client>,
}

impl Memcached {
    pub fn new(args: &Args) -> Result<Memcached, Error> {
        validate_host_port(&args.target)?;
        Ok(Memcached {
            client: Mutex::new(Client::lazy(&args.target, args.probe_timeout)),
        })
    }

    pub async fn live(&self) -> Verdict {
        match self.client.lock().await.version().await {
            Ok(v) => Verdict::pass(format!("memcached {v}")),
            Err(e) => Verdict::error("version", &e),
        }
    }

    pub async fn ready(&self) -> Verdict {
        match self.client.lock().await.stats().await {
            Ok(stats) => match stats.get("accepting_conns").map(String::as_str) {
                Some("1") => Verdict::pass("accepting connections"),
                Some(v) => Verdict::fail(format!("accepting_conns is {v}")),
                None => Verdict::fail("stats has no accepting_conns"),
            },
            Err(e) => Verdict::error("stats", &e),
        }
    }
}
