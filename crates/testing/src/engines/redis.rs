//! `redis-server` as a primary or a replica.

use std::time::Duration;

use tempfile::TempDir;

use super::{NATIVE_START, temp_dir};
use crate::{LaunchError, Process, exchange, free_ports};

/// A redis-server on 127.0.0.1 with its own directory.
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    pub process: Process,
    password: Option<String>,
    _dir: TempDir,
}

impl RedisServer {
    /// A primary without auth.
    pub fn start() -> Result<RedisServer, LaunchError> {
        Self::launch(None, None)
    }

    /// A primary that requires `password`.
    pub fn start_with_password(password: &str) -> Result<RedisServer, LaunchError> {
        Self::launch(None, Some(password))
    }

    /// A replica of `primary`, returned once its link is up.
    pub fn replica_of(primary: &RedisServer) -> Result<RedisServer, LaunchError> {
        let mut r = Self::launch(Some(primary.port), primary.password.as_deref())?;
        let port = r.port;
        let auth = r.auth_prefix();
        r.process.wait_until(NATIVE_START, || {
            let info = exchange(
                port,
                format!("{auth}INFO replication\r\n").as_bytes(),
                Duration::from_secs(1),
                |t| t.contains("master_link_status"),
            )?;
            if info.contains("master_link_status:up") {
                Ok(())
            } else {
                Err("replication link not up yet".into())
            }
        })?;
        Ok(r)
    }

    fn launch(primary: Option<u16>, password: Option<&str>) -> Result<RedisServer, LaunchError> {
        let dir = temp_dir("redis")?;
        let port = free_ports(1)[0];
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir.path().display().to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "",
            // Notice a dead primary quickly in tests.
            "--repl-timeout",
            "5",
            "--repl-ping-replica-period",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(p) = primary {
            args.extend(["--replicaof".into(), "127.0.0.1".into(), p.to_string()]);
        }
        if let Some(pw) = password {
            args.extend([
                "--requirepass".into(),
                pw.into(),
                "--masterauth".into(),
                pw.into(),
            ]);
        }
        let log = dir.path().join("redis.log");
        let mut process = Process::spawn("redis-server", "redis-server", args, vec![], log)?;
        let auth = password
            .map(|p| format!("AUTH {p}\r\n"))
            .unwrap_or_default();
        let expect = if password.is_some() {
            "+OK\r\n+PONG"
        } else {
            "+PONG"
        };
        process.wait_until(NATIVE_START, || {
            exchange(
                port,
                format!("{auth}PING\r\n").as_bytes(),
                Duration::from_secs(1),
                |t| t.contains(expect) || t.starts_with('-'),
            )
            .and_then(|t| if t.contains(expect) { Ok(()) } else { Err(t) })
        })?;
        Ok(RedisServer {
            port,
            process,
            password: password.map(String::from),
            _dir: dir,
        })
    }

    fn auth_prefix(&self) -> String {
        self.password
            .as_ref()
            .map(|p| format!("AUTH {p}\r\n"))
            .unwrap_or_default()
    }

    /// `host:port` for clients.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends one inline command (after AUTH when needed) and returns the raw reply.
    pub fn command(&self, cmd: &str) -> Result<String, String> {
        let req = format!("{}{cmd}\r\n", self.auth_prefix());
        exchange(self.port, req.as_bytes(), Duration::from_secs(2), |t| {
            t.ends_with("\r\n")
        })
    }

    /// Points this replica at a port where nothing listens: its link goes
    /// down while the process stays healthy.
    pub fn cut_link(&self) -> Result<(), String> {
        let dead = free_ports(1)[0];
        self.command(&format!("REPLICAOF 127.0.0.1 {dead}"))
            .map(|_| ())
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts a killed server again on the same port and waits for PING.
    pub fn restart(&mut self) -> Result<(), LaunchError> {
        self.process.start()?;
        let port = self.port;
        let auth = self.auth_prefix();
        self.process.wait_until(NATIVE_START, || {
            exchange(
                port,
                format!("{auth}PING\r\n").as_bytes(),
                Duration::from_secs(1),
                |t| t.contains("PONG"),
            )
            .map(|_| ())
        })
    }
}
