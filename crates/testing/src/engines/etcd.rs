//! A single-member etcd. The binary is `etcd` from PATH (Debian's
//! etcd-server) unless `TESSERA_ETCD_BIN` names another build.

use std::time::Duration;

use tempfile::TempDir;

use super::{NATIVE_START, temp_dir};
use crate::{LaunchError, Process, free_ports, http_get};

#[derive(Debug)]
pub struct Etcd {
    /// Client port (HTTP).
    pub port: u16,
    pub peer_port: u16,
    pub process: Process,
    _dir: TempDir,
}

impl Etcd {
    pub fn start() -> Result<Etcd, LaunchError> {
        let dir = temp_dir("etcd")?;
        let ports = free_ports(2);
        let (port, peer_port) = (ports[0], ports[1]);
        let bin = std::env::var("TESSERA_ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        let client = format!("http://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let args = [
            "--name",
            "n1",
            "--data-dir",
            &dir.path().join("data").display().to_string(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("n1={peer}"),
            "--initial-cluster-state",
            "new",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let log = dir.path().join("etcd.log");
        let process = Process::spawn("etcd", &bin, args, vec![], log)?;
        let mut e = Etcd {
            port,
            peer_port,
            process,
            _dir: dir,
        };
        e.wait_healthy()?;
        Ok(e)
    }

    /// Waits until `/health` says true.
    pub fn wait_healthy(&mut self) -> Result<(), LaunchError> {
        let port = self.port;
        self.process.wait_until(NATIVE_START, || {
            match http_get(port, "/health", &[], Duration::from_secs(2)) {
                Ok((200, body)) if body.contains("true") => Ok(()),
                Ok((status, body)) => Err(format!("/health {status}: {body}")),
                Err(e) => Err(e),
            }
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts a killed etcd again with the same ports and data.
    pub fn restart(&mut self) -> Result<(), LaunchError> {
        self.process.start()?;
        self.wait_healthy()
    }
}
