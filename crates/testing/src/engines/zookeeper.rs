//! Debian's ZooKeeper: a standalone server or a 3-node ensemble, and
//! servers that join an ensemble through `reconfig`.

use std::time::Duration;

use tempfile::TempDir;

use super::{JVM_START, jvm_flags, temp_dir, write};
use crate::{LaunchError, Process, exchange, free_ports};

const CLASSPATH: &str = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar";

/// Extra settings for [`ZooKeeperEnsemble::start_with`] and
/// [`ZooKeeperEnsemble::start_joiner`].
#[derive(Debug, Clone, Default)]
pub struct ZooKeeperOptions {
    /// Lines appended to `zoo.cfg`, e.g. `reconfigEnabled=true`.
    pub config: Vec<String>,
    /// Extra JVM flags, e.g.
    /// `-Dzookeeper.DigestAuthenticationProvider.superDigest=super:<digest>`.
    pub jvm_flags: Vec<String>,
}

/// One ZooKeeper server.
#[derive(Debug)]
pub struct ZooKeeper {
    /// Client port.
    pub port: u16,
    /// The server id (`myid`).
    pub id: u32,
    pub process: Process,
    /// Quorum and election ports; `None` for a standalone server.
    peer_ports: Option<(u16, u16)>,
    _dir: TempDir,
}

impl ZooKeeper {
    /// A standalone server (no `server.N` lines), waited for until `srvr`
    /// reports a mode.
    pub fn start() -> Result<ZooKeeper, LaunchError> {
        let port = free_ports(1)[0];
        let mut zk = Self::spawn(1, port, &[], &ZooKeeperOptions::default())?;
        zk.wait_serving()?;
        Ok(zk)
    }

    /// Spawns member `id` with client port `port`; `peers` lists
    /// (id, client port, quorum port, election port) of every member this
    /// server is told about (itself included), empty for standalone.
    fn spawn(
        id: u32,
        port: u16,
        peers: &[(u32, u16, u16, u16)],
        options: &ZooKeeperOptions,
    ) -> Result<ZooKeeper, LaunchError> {
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
        // The dynamic-config form (role and client address): what `conf`
        // reports and `reconfig` takes, so tests can compare them.
        for &(pid, client, quorum, election) in peers {
            cfg.push_str(&server_spec(pid, client, quorum, election));
            cfg.push('\n');
        }
        for line in &options.config {
            cfg.push_str(line);
            cfg.push('\n');
        }
        write(dir.path().join("zoo.cfg"), &cfg)?;
        write(data.join("myid"), &format!("{id}\n"))?;
        let mut args = jvm_flags(128);
        args.extend(options.jvm_flags.iter().cloned());
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
        let peer_ports = peers
            .iter()
            .find(|p| p.0 == id)
            .map(|&(_, _, quorum, election)| (quorum, election));
        Ok(ZooKeeper {
            port,
            id,
            process,
            peer_ports,
            _dir: dir,
        })
    }

    /// This server as a `reconfig` joining spec and as `conf` lists it:
    /// `server.<id>=127.0.0.1:<quorum>:<election>:participant;127.0.0.1:<client>`.
    /// `None` for a standalone server.
    pub fn server_spec(&self) -> Option<String> {
        let (quorum, election) = self.peer_ports?;
        Some(server_spec(self.id, self.port, quorum, election))
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
        Self::start_with(n, &ZooKeeperOptions::default())
    }

    /// [`Self::start`] with extra settings. For `reconfig` tests:
    /// `reconfigEnabled=true` and, to run even one member as a quorum that
    /// can grow, `standaloneEnabled=false`.
    pub fn start_with(
        n: usize,
        options: &ZooKeeperOptions,
    ) -> Result<ZooKeeperEnsemble, LaunchError> {
        let ports = free_ports(3 * n);
        let peers: Vec<(u32, u16, u16, u16)> = (0..n)
            .map(|i| {
                (
                    i as u32 + 1,
                    ports[3 * i],
                    ports[3 * i + 1],
                    ports[3 * i + 2],
                )
            })
            .collect();
        let members = peers
            .iter()
            .map(|p| ZooKeeper::spawn(p.0, p.1, &peers, options))
            .collect::<Result<Vec<_>, _>>()?;
        let mut e = ZooKeeperEnsemble { members };
        for m in &mut e.members {
            m.wait_serving()?;
        }
        Ok(e)
    }

    /// Starts a new server (the next free id) the way ZooKeeper's manual
    /// adds one: its config lists the current members and itself as a
    /// participant, so it finds the leader, adopts the committed
    /// configuration and syncs as a non-voting follower until a `reconfig`
    /// adds [`ZooKeeper::server_spec`]. Waits until it serves; it is not
    /// added to [`Self::members`].
    pub fn start_joiner(&self, options: &ZooKeeperOptions) -> Result<ZooKeeper, LaunchError> {
        let id = self.members.iter().map(|m| m.id).max().unwrap_or(0) + 1;
        let ports = free_ports(3);
        let mut peers: Vec<(u32, u16, u16, u16)> = self
            .members
            .iter()
            .filter_map(|m| m.peer_ports.map(|(q, e)| (m.id, m.port, q, e)))
            .collect();
        peers.push((id, ports[0], ports[1], ports[2]));
        let mut zk = ZooKeeper::spawn(id, ports[0], &peers, options)?;
        zk.wait_serving()?;
        Ok(zk)
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

fn server_spec(id: u32, client: u16, quorum: u16, election: u16) -> String {
    format!("server.{id}=127.0.0.1:{quorum}:{election}:participant;127.0.0.1:{client}")
}
