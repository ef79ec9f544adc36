//! A child process with a log file, killed on drop, plus signals for faults.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True when every thread of `pid` is stopped (state `T`, or `t` under a
/// tracer), or the process is gone: either way it answers nothing.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().all(|task| {
        // `tid (comm) S ...`: the state follows the last parenthesis, as
        // the command name may hold one.
        std::fs::read_to_string(task.path().join("stat")).map_or(true, |stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['T', 't']))
        })
    })
}

/// Why an engine could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "{engine}: cannot run {program}: {source} (run `make engines` to install the test engines)"
    )]
    Spawn {
        engine: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{engine}: not ready after {waited:?}: {why}\n--- last lines of {log} ---\n{tail}")]
    NotReady {
        engine: String,
        waited: Duration,
        why: String,
        log: String,
        tail: String,
    },
    #[error("{0}")]
    Setup(String),
}

/// `n` distinct free TCP ports on 127.0.0.1. All listeners are held until
/// every port is chosen so the same port is not handed out twice.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// A running (or stopped) engine process. The command is kept so that the
/// engine can be restarted with the same ports and data.
#[derive(Debug)]
pub struct Process {
    name: String,
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    /// Spawns `program args` with stdout and stderr appended to `log`.
    pub fn spawn(
        name: &str,
        program: &str,
        args: Vec<String>,
        env: Vec<(String, String)>,
        log: PathBuf,
    ) -> Result<Process, LaunchError> {
        let mut p = Process {
            name: name.to_string(),
            program: program.to_string(),
            args,
            env,
            log,
            child: None,
        };
        p.start()?;
        Ok(p)
    }

    /// Starts the process again (after [`Process::kill`]) with the same
    /// command line, ports and data directory.
    pub fn start(&mut self) -> Result<(), LaunchError> {
        if self.child.is_some() {
            return Ok(());
        }
        let spawn_err = |source| LaunchError::Spawn {
            engine: self.name.clone(),
            program: self.program.clone(),
            source,
        };
        let out = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(spawn_err)?;
        let err = out.try_clone().map_err(spawn_err)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(spawn_err)?;
        self.child = Some(child);
        Ok(())
    }

    /// The engine's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OS process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the child has not exited.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing. Returns
    /// once every thread has stopped. kill(1) returning is not enough: the
    /// stop is carried out by the first thread that wakes to handle it, and
    /// on a busy machine another thread, woken by a request meanwhile, can
    /// still answer it (a "paused" memcached once answered `stats` in CI).
    pub fn pause(&self) {
        assert!(self.signal("STOP"), "{}: SIGSTOP failed", self.name);
        let Some(pid) = self.pid() else { return };
        let start = Instant::now();
        while !all_threads_stopped(pid) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{}: still running 5 s after SIGSTOP",
                self.name
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGCONT after [`Process::pause`].
    pub fn resume(&self) {
        assert!(self.signal("CONT"), "{}: SIGCONT failed", self.name);
    }

    /// Sends a signal with kill(1) (no unsafe libc calls); true when sent
    /// or when nothing runs.
    fn signal(&self, sig: &str) -> bool {
        match self.pid() {
            Some(pid) => Command::new("kill")
                .args([format!("-{sig}"), pid.to_string()])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            None => true,
        }
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Polls `ready` until it returns `Ok(())`, the process exits, or
    /// `timeout` passes; failures carry the log tail.
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> Result<(), String>,
    ) -> Result<(), LaunchError> {
        let start = Instant::now();
        let mut why = String::from("not checked yet");
        while start.elapsed() < timeout {
            if !self.is_running() {
                why = "the process exited".into();
                break;
            }
            match ready() {
                Ok(()) => return Ok(()),
                Err(e) => why = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(LaunchError::NotReady {
            engine: self.name.clone(),
            waited: start.elapsed(),
            why,
            log: self.log.display().to_string(),
            tail: self.log_tail(40),
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Never panic here: Drop also runs while a failed test unwinds.
        // SIGKILL ends a stopped process too, so no SIGCONT is needed.
        self.kill();
    }
}
