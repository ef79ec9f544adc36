//! Runs the real `tessera-adapter` binary next to a real engine and reads
//! its `/metrics` back through the shared exposition parser.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tessera_clients::promtext::{self, Sample};
use tessera_testing::{Process, free_ports, http_get};

/// The scrape deadline the tests give the adapter: short, so that a dead
/// engine shows up fast, yet roomy for JVM engines on a busy machine.
pub const SCRAPE_TIMEOUT: &str = "3s";

pub struct Adapter {
    pub port: u16,
    pub process: Process,
    _dir: TempDir,
}

impl Adapter {
    pub fn start(engine: &str, target: &str, extra: &[&str]) -> Adapter {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_ports(1)[0];
        let mut args: Vec<String> = [
            "--engine",
            engine,
            "--target",
            target,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--scrape-timeout",
            SCRAPE_TIMEOUT,
            "--log-level",
            "debug",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut process = Process::spawn(
            &format!("tessera-adapter ({engine})"),
            env!("CARGO_BIN_EXE_tessera-adapter"),
            args,
            vec![],
            dir.path().join("adapter.log"),
        )
        .expect("spawn tessera-adapter");
        process
            .wait_until(Duration::from_secs(20), || {
                match http_get(port, "/healthz", &[], Duration::from_secs(1))? {
                    (200, _) => Ok(()),
                    (s, b) => Err(format!("/healthz {s}: {b}")),
                }
            })
            .expect("adapter serves /healthz");
        Adapter {
            port,
            process,
            _dir: dir,
        }
    }

    /// One scrape: HTTP status, raw body and how long it took.
    pub fn scrape_raw(&self) -> (u16, String, Duration) {
        let start = Instant::now();
        let (status, body) =
            http_get(self.port, "/metrics", &[], Duration::from_secs(15)).expect("GET /metrics");
        (status, body, start.elapsed())
    }

    /// One scrape that must answer 200 and pass `promtool check metrics`.
    pub fn scrape(&self) -> Metrics {
        let (status, body, _) = self.scrape_raw();
        assert_eq!(status, 200, "{body}");
        promtool_check_metrics(&body);
        Metrics::parse(&body)
    }

    pub fn log(&self) -> String {
        self.process.log_tail(60)
    }
}

pub struct Metrics {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        Metrics {
            text: text.to_string(),
            samples: promtext::parse(text),
        }
    }

    /// The value of `name` whose labels include `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .map(|s| s.value)
    }

    /// Like [`Metrics::get`] but fails the test, showing the whole scrape.
    pub fn must(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("{name}{labels:?} missing from:\n{}", self.text))
    }

    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    /// Every sample carries engine="<engine>".
    pub fn assert_engine_label(&self, engine: &str) {
        for s in &self.samples {
            assert_eq!(s.label("engine"), Some(engine), "{s:?}");
        }
    }

    /// Asserts each of `names` is present and each of `gaps` absent.
    pub fn assert_core(&self, names: &[&str], gaps: &[&str]) {
        for n in names {
            assert!(self.has(n), "{n} missing for this engine:\n{}", self.text);
        }
        for g in gaps {
            assert!(
                !self.has(g),
                "{g} must be absent (a documented gap):\n{}",
                self.text
            );
        }
    }
}

/// `promtool check metrics` on an exposition; lint problems fail the test.
pub fn promtool_check_metrics(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- input ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// After the engine is gone: one scrape answers 200 quickly with up 0 and
/// the adapter's own metrics, and nothing else.
pub fn assert_down_within_one_scrape(adapter: &Adapter) {
    let (status, body, took) = adapter.scrape_raw();
    assert_eq!(status, 200, "{body}");
    promtool_check_metrics(&body);
    let m = Metrics::parse(&body);
    assert_eq!(m.get("tessera_up", &[]), Some(0.0), "{body}");
    assert!(m.has("tessera_scrape_errors_total"), "{body}");
    assert!(m.has("tessera_scrape_duration_seconds"), "{body}");
    // No stale engine values survive a failed scrape.
    for stale in ["tessera_role", "tessera_items", "tessera_build_info"] {
        assert!(!m.has(stale), "{stale} after the engine died:\n{body}");
    }
    assert!(took < Duration::from_secs(5), "scrape took {took:?}");
}

/// Polls `check` for up to `timeout`; for engines that settle slowly.
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > timeout => panic!("not true after {timeout:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}
