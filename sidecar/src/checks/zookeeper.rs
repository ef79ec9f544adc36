//! ZooKeeper: ready when `srvr` shows a serving mode (standalone only for a
//! 1-member ensemble); live when `ruok` gives `imok`.

use std::time::Duration;

use tessera_clients::zookeeper::{Mode, Srvr, four_letter};

use super::Verdict;
use crate::cli::{Args, validate_host_port};
use crate::error::Error;

pub struct ZooKeeper {
    target: String,
    timeout: Duration,
    members: u32,
}

impl ZooKeeper {
    pub fn new(args: &Args) -> Result<ZooKeeper, Error> {
        validate_host_port(&args.target)?;
        Ok(ZooKeeper {
            target: args.target.clone(),
            timeout: args.probe_timeout,
            members: args.zookeeper_members,
        })
    }

    pub async fn live(&self) -> Verdict {
        match four_letter(&self.target, "ruok", self.timeout).await {
            Ok(r) if r.trim() == "imok" => Verdict::pass("imok"),
            Ok(r) => Verdict::fail(format!("ruok answered {:?}", super::one_line(&r))),
            Err(e) => Verdict::error("ruok", &e),
        }
    }

    pub async fn ready(&self) -> Verdict {
        let text = match four_letter(&self.target, "srvr", self.timeout).await {
            Ok(t) => t,
            Err(e) => return Verdict::error("srvr", &e),
        };
        match Srvr::parse(&text) {
            Ok(s) => mode_verdict(s.mode, self.members),
            Err(e) => Verdict::error("srvr", &e),
        }
    }
}

pub fn mode_verdict(mode: Mode, members: u32) -> Verdict {
    match mode {
        Mode::Leader | Mode::Follower | Mode::Observer => Verdict::pass(mode.as_str()),
        Mode::Standalone if members <= 1 => Verdict::pass("standalone"),
        Mode::Standalone => Verdict::fail(format!(
            "standalone, but the ensemble has {members} members"
        )),
        Mode::NotServing => Verdict::fail("not currently serving requests (no quorum)"),
        Mode::Other => Verdict::fail("unknown mode"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert!(mode_verdict(Mode::Follower, 3).ok);
        assert!(mode_verdict(Mode::Standalone, 1).ok);
        assert!(!mode_verdict(Mode::Standalone, 3).ok);
        assert!(!mode_verdict(Mode::NotServing, 3).ok);
    }
}
