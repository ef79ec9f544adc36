//! `memcached` on a free port.

use std::time::Duration;

use tempfile::TempDir;

use super::{NATIVE_START, temp_dir};
use crate::{LaunchError, Process, exchange, free_ports};

/// A memcached on 127.0.0.1 (TCP only).
#[derive(Debug)]
pub struct Memcached {
    pub port: u16,
    pub process: Process,
    _dir: TempDir,
}

impl Memcached {
    /// A memcached with 16 MiB for items.
    pub fn start() -> Result<Memcached, LaunchError> {
        Self::start_with_memory_mb(16)
    }

    /// A memcached with `mb` MiB for items: tests that store many keys at
    /// once need more than the default so that nothing is evicted.
    pub fn start_with_memory_mb(mb: u32) -> Result<Memcached, LaunchError> {
        let dir = temp_dir("memcached")?;
        let port = free_ports(1)[0];
        // `-u root` is only consulted when running as root, where memcached
        // otherwise refuses to start.
        let args = [
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-m",
            &mb.to_string(),
            "-u",
            "root",
            "-v",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut process = Process::spawn(
            "memcached",
            "memcached",
            args,
            vec![],
            dir.path().join("memcached.log"),
        )?;
        process.wait_until(NATIVE_START, || version(port))?;
        Ok(Memcached {
            port,
            process,
            _dir: dir,
        })
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts a killed memcached again on the same port.
    pub fn restart(&mut self) -> Result<(), LaunchError> {
        self.process.start()?;
        let port = self.port;
        self.process.wait_until(NATIVE_START, || version(port))
    }
}

fn version(port: u16) -> Result<(), String> {
    exchange(port, b"version\r\n", Duration::from_secs(1), |t| {
        t.ends_with("\r\n")
    })
    .and_then(|t| {
        if t.starts_with("VERSION") {
            Ok(())
        } else {
            Err(t)
        }
    })
}
