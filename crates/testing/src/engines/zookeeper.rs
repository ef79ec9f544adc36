//! Debian's ZooKeeper: a standalone server or a 3-node ensemble.

use std::time::Duration;

use tempfile::TempDir;

use super::{JVM_START, jvm_flags, temp_dir, write};
use crate::{LaunchError, Process, exchange, free_ports};

const CLASSPATH: &str = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar";

/// One ZooKeeper server.
#[derive(Debug)]
pub struct ZooKeeper {
    /// Client port.
    pub port: u16,
    pub process: Process,
    _dir: TempDir,
}

impl ZooKeeper {
    /// A standalone server (no `server.N` lines), waited for until `srvr`
    /// reports a mode.
    pub fn start() -> Result<ZooKeeper, LaunchError> {
        let port = free_ports(1)[0];
        let mut zk = Self::spawn(1, port, &[])?;
        zk.wait_serving()?;
        Ok(zk)
    }

    /// Spawns member `id` with client port `port`; `peers` lists
    /// (id, quorum port, election port) of every member, empty for standalone.
    fn spawn(id: u32, port: u16, peers: &[(u32, u16, u16)]) -> Result<ZooKeeper, LaunchError> {
        let dir = temp_dir("zookeeper")?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)
            .map_err(|e| LaunchError::Setup(format!("zookeeper data dir: {e}")))?;
        let mut cfg = format!(
            "tickTime=200\ninitLimit=50\nsyncLimit=10\ndataDir={}\nclientPort={port}\n\
             clientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\nadmin.enableServer=false\n\
             electionPortBindRetry=0\n",
            data.display()
        );
        for (pid, quorum, election) in peers {
            cfg.push_str(&format!("server.{pid}=127.0.0.1:{quorum}:{election}\n"));
        }
        write(dir.path().join("zoo.cfg"), &cfg)?;
        write(data.join("myid"), &format!("{id}\n"))?;
        let mut args = jvm_flags(128);
        args.extend([
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=info".into(),
            "-Dzookeeper.jmx.log4j.disable=true".into(),
            "-cp".into(),
            CLASSPATH.into(),
            "org.apache.zookeeper.server.quorum.QuorumPeerMain".into(),
            dir.path().join("zoo.cfg").display().to_string(),
        ]);
        let log = dir.path().join("zookeeper.log");
        let process = Process::spawn(&format!("zookeeper-{id}"), "java", args, vec![], log)?;
        Ok(ZooKeeper {
            port,
            process,
            _dir: dir,
        })
    }

    /// `host:port` for clients.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The `srvr` reply, or an error when the server does not answer.
    pub fn srvr(&self) -> Result<String, String> {
        exchange(self.port, b"srvr", Duration::from_secs(2), |_| false)
    }

    /// Waits until `srvr` reports `Mode:` (in quorum or standalone).
    pub fn wait_serving(&mut self) -> Result<(), LaunchError> {
        let port = self.port;
        self.process.wait_until(JVM_START, || {
            let t = exchange(port, b"srvr", Duration::from_secs(2), |_| false)?;
            if t.contains("Mode:") {
                Ok(())
            } else {
                Err(t.trim().to_string())
            }
        })
    }

    /// Starts a killed server again with the same ports and data.
    pub fn restart(&mut self) -> Result<(), LaunchError> {
        self.process.start()?;
        self.wait_serving()
    }
}

/// A 3-member (or any odd size) ensemble.
#[derive(Debug)]
pub struct ZooKeeperEnsemble {
    pub members: Vec<ZooKeeper>,
}

impl ZooKeeperEnsemble {
    /// Starts `n` members and waits until each serves (leader or follower).
    pub fn start(n: usize) -> Result<ZooKeeperEnsemble, LaunchError> {
        let ports = free_ports(3 * n);
        let peers: Vec<(u32, u16, u16)> = (0..n)
            .map(|i| (i as u32 + 1, ports[3 * i + 1], ports[3 * i + 2]))
            .collect();
        let members = (0..n)
            .map(|i| ZooKeeper::spawn(i as u32 + 1, ports[3 * i], &peers))
            .collect::<Result<Vec<_>, _>>()?;
        let mut e = ZooKeeperEnsemble { members };
        for m in &mut e.members {
            m.wait_serving()?;
        }
        Ok(e)
    }

    /// Kills members until fewer than a majority runs, sparing `keep`.
    /// Returns the indices stopped.
    pub fn stop_majority(&mut self, keep: usize) -> Vec<usize> {
        let n = self.members.len();
        let stop: Vec<usize> = (0..n).filter(|&i| i != keep).take(n / 2 + 1).collect();
        for &i in &stop {
            self.members[i].process.kill();
        }
        stop
    }

    /// Restarts the given members (without waiting: the survivors need
    /// them back to form a quorum, so wait with [`Self::wait_serving`]).
    pub fn start_members(&mut self, which: &[usize]) -> Result<(), LaunchError> {
        for &i in which {
            self.members[i].process.start()?;
        }
        Ok(())
    }

    /// Waits until every running member serves.
    pub fn wait_serving(&mut self) -> Result<(), LaunchError> {
        for m in &mut self.members {
            if m.process.is_running() {
                m.wait_serving()?;
            }
        }
        Ok(())
    }
}
