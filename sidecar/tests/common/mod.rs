//! Runs the real `tessera-sidecar` binary against real engines.
#![allow(dead_code)] // each test file uses a different subset

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tessera_testing::{free_ports, http_get};

pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// A sidecar process, killed on drop.
pub struct Sidecar {
    pub port: u16,
    child: Child,
}

impl Sidecar {
    /// Starts `tessera-sidecar --engine <engine> --target <target> <extra>`
    /// with a 500 ms probe timeout and waits until it serves HTTP.
    pub fn start(engine: &str, target: &str, extra: &[&str]) -> Sidecar {
        let port = free_ports(1)[0];
        let child = Command::new(env!("CARGO_BIN_EXE_tessera-sidecar"))
            .args(["--engine", engine, "--target", target])
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--probe-timeout",
                "500ms",
            ])
            .args(extra)
            .env("TESSERA_LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn tessera-sidecar");
        let s = Sidecar { port, child };
        let start = Instant::now();
        while http_get(port, "/metrics", &[], Duration::from_secs(1)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "sidecar did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.port, path, &[], Duration::from_secs(5)).expect("sidecar answers")
    }

    pub fn get_json(&self, path: &str) -> (u16, String) {
        http_get(
            self.port,
            path,
            &[("Accept", "application/json")],
            Duration::from_secs(5),
        )
        .expect("sidecar answers")
    }

    /// Polls `path` until it returns `status`; panics with the last answer
    /// after `within`.
    pub fn wait_status(&self, path: &str, status: u16, within: Duration) -> String {
        self.wait_answer(path, status, |_| true, within)
    }

    /// Polls `path` until it returns `status` with a body that `settled`
    /// accepts: an engine in transition (a ZooKeeper peer dropping out of
    /// quorum closes connections before it says "not serving") gives the
    /// right status with a passing reason first.
    pub fn wait_answer(
        &self,
        path: &str,
        status: u16,
        settled: impl Fn(&str) -> bool,
        within: Duration,
    ) -> String {
        let start = Instant::now();
        loop {
            let (s, body) = self.get(path);
            if s == status && settled(&body) {
                return body;
            }
            assert!(
                start.elapsed() < within,
                "{path} still {s} ({}) after {within:?}, wanted a settled {status}",
                body.trim()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that a paused engine yields 503 within the probe timeout (plus
/// scheduling slack) and that the sidecar still answers /metrics meanwhile.
pub fn assert_paused_engine_gives_503_quickly(sidecar: &Sidecar) {
    let start = Instant::now();
    let (status, body) = sidecar.get("/readyz");
    let took = start.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(
        took < PROBE_TIMEOUT + Duration::from_millis(400),
        "took {took:?}"
    );
    assert!(
        body.contains("timeout") || body.contains("timed out"),
        "{body}"
    );
    let start = Instant::now();
    assert_eq!(sidecar.get("/metrics").0, 200);
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "metrics blocked behind a hung probe"
    );
}
