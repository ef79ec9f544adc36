//! Checks that a running Tessera binary survives what production does to
//! it: signals, running out of file descriptors, slow clients. Each
//! binary's tests start the real binary and call these (feature
//! `testkit`); the process under test is only ever reached on 127.0.0.1.
//!
//! Linux only: the process is observed through `/proc/<pid>`.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// `bin` to be run with at most `n` open file descriptors, through
/// util-linux's `prlimit`, which sets the limit and then execs `bin` (so
/// the child's pid is the binary's).
pub fn with_fd_limit(bin: impl AsRef<Path>, n: usize) -> Command {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={n}:{n}"))
        .arg("--")
        .arg(bin.as_ref());
    cmd
}

/// A child process, killed when dropped, so that a failing test leaves
/// nothing running.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU time (user + system) the process has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // The command name may hold spaces and parentheses: fields count from
    // after its closing parenthesis. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

/// `sysconf(_SC_CLK_TCK)`, asked of `getconf` (this crate has no libc).
fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100)
}

/// File descriptors the process has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .unwrap_or(0)
}

/// The process's soft limit on open file descriptors.
pub fn fd_limit(pid: u32) -> usize {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("/proc limits");
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .expect("a Max open files line")
}

/// Sends `signal` (`HUP`, `USR1`, `TERM`, ...) with kill(1).
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -s {signal} {pid} failed");
}

/// Polls `ok` every 50 ms until it holds or `within` passes; how long it took.
pub fn wait_until(within: Duration, mut ok: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if ok() {
            return Some(start.elapsed());
        }
        if start.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when `GET <path>` on 127.0.0.1:`port` answers 200 within 2 s.
pub fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// Sends SIGHUP, SIGUSR1 and SIGUSR2 in turn; after each the process must
/// still run and `serving` must hold.
pub fn assert_signals_harmless(child: &mut Child, serving: impl Fn() -> bool) {
    for signal in ["HUP", "USR1", "USR2"] {
        send_signal(child.id(), signal);
        std::thread::sleep(Duration::from_millis(300));
        if let Ok(Some(status)) = child.try_wait() {
            panic!("SIG{signal} ended the process: {status}");
        }
        assert!(
            wait_until(Duration::from_secs(5), &serving).is_some(),
            "not serving after SIG{signal}"
        );
    }
}

/// Sends SIGTERM and expects a clean exit within `within`.
pub fn assert_terminates(child: &mut Child, within: Duration) {
    send_signal(child.id(), "TERM");
    let exited = wait_until(within, || matches!(child.try_wait(), Ok(Some(_))));
    assert!(exited.is_some(), "still running {within:?} after SIGTERM");
    let status = child.wait().expect("exit status");
    assert!(status.success(), "SIGTERM exit: {status}");
}

/// What [`exhaust_fds`] measured.
#[derive(Debug, Clone, Copy)]
pub struct Exhaustion {
    /// The process's descriptor limit, all in use.
    pub limit: usize,
    /// CPU used while every accept failed, as a share of one core.
    pub cpu_share: f64,
    /// Over how long that was measured.
    pub measured: Duration,
    /// From closing our connections until `serving` held again.
    pub resumed_after: Duration,
}

/// Opens connections to `port` until process `pid` has every descriptor
/// its limit allows in use (more wait in its listen backlog, so its accepts
/// keep failing), measures its CPU for `measure`, then closes them all and
/// waits for `serving`.
pub fn exhaust_fds(
    pid: u32,
    port: u16,
    measure: Duration,
    serving: impl Fn() -> bool,
) -> Exhaustion {
    let limit = fd_limit(pid);
    assert!(
        limit < 1024,
        "run the process under a small limit (with_fd_limit)"
    );
    let mut conns = Vec::new();
    let full = wait_until(Duration::from_secs(10), || {
        // Past the limit, so that some always wait to be accepted.
        while conns.len() < limit + 16 {
            match TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
            {
                Ok(c) => conns.push(c),
                Err(_) => break,
            }
        }
        open_fds(pid) >= limit
    });
    assert!(
        full.is_some(),
        "the process did not use up its {limit} descriptors ({} open, {} connections)",
        open_fds(pid),
        conns.len()
    );
    let before = cpu_time(pid);
    std::thread::sleep(measure);
    let used = cpu_time(pid) - before;
    let still_full = open_fds(pid) >= limit;
    assert!(
        still_full,
        "descriptors freed during the measurement: it does not show the accept errors"
    );
    drop(conns);
    let resumed_after = wait_until(Duration::from_secs(10), serving)
        .expect("serving again within 10 s of the descriptors freeing up");
    Exhaustion {
        limit,
        cpu_share: used.as_secs_f64() / measure.as_secs_f64(),
        measured: measure,
        resumed_after,
    }
}

/// [`exhaust_fds`] with the bounds every Tessera binary must meet: under a
/// tenth of a core while out of descriptors (a retry loop without backoff
/// takes a whole one), and serving again within 5 s of them freeing up.
pub fn assert_fd_exhaustion_survived(pid: u32, port: u16, serving: impl Fn() -> bool) {
    let e = exhaust_fds(pid, port, Duration::from_secs(2), serving);
    // Shown with --nocapture: the figures behind the verdict.
    println!(
        "out of descriptors (limit {}): {:.1}% of a core over {:?}; serving again {:?} after they freed up",
        e.limit,
        e.cpu_share * 100.0,
        e.measured,
        e.resumed_after
    );
    assert!(
        e.cpu_share < 0.10,
        "{:.0}% of a core while out of descriptors: the accept loop spins",
        e.cpu_share * 100.0
    );
    assert!(e.resumed_after < Duration::from_secs(5), "{e:?}");
}

/// A slow-header client must be cut off after `timeout` (the server's
/// header-read timeout), not before and not much later.
pub fn assert_slow_headers_cut(port: u16, timeout: Duration) {
    let cut = slow_header_cut_after(port, timeout * 2 + Duration::from_secs(5));
    println!("slow-header client cut off after {cut:?} (timeout {timeout:?})");
    assert!(
        cut + Duration::from_millis(300) >= timeout && cut < timeout + Duration::from_millis(2500),
        "cut off after {cut:?}, the timeout is {timeout:?}"
    );
}

/// Opens a connection to an HTTP server on `port` that sends a request
/// head one byte every 200 ms and never finishes it; how long until the
/// server closed it. Panics when it is still open after `give_up`.
pub fn slow_header_cut_after(port: u16, give_up: Duration) -> Duration {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let head = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    let start = Instant::now();
    let mut sent = 0;
    loop {
        let byte = head.get(sent).copied().unwrap_or(b'a');
        sent += 1;
        if s.write_all(&[byte]).is_err() {
            return start.elapsed();
        }
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return start.elapsed(),
        }
        assert!(
            start.elapsed() < give_up,
            "a slow-header client is still connected after {give_up:?}"
        );
    }
}

/// Starts `bin` with `args` (under a descriptor limit of `fd_limit`, if
/// any), logging only warnings, and waits until `serving` holds.
pub fn spawn_serving(
    bin: &str,
    args: &[&str],
    fd_limit: Option<usize>,
    serving: impl Fn() -> bool,
) -> Guard {
    let mut cmd = match fd_limit {
        Some(n) => with_fd_limit(bin, n),
        None => Command::new(bin),
    };
    let mut child = Guard(
        cmd.args(args)
            .env("TESSERA_LOG_LEVEL", "warn")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}")),
    );
    let up = wait_until(Duration::from_secs(20), || {
        matches!(child.0.try_wait(), Ok(Some(_))) || serving()
    });
    if let Ok(Some(status)) = child.0.try_wait() {
        panic!("{bin} exited at start: {status}");
    }
    assert!(up.is_some(), "{bin} did not start serving within 20 s");
    child
}

/// Starts a binary that watches one engine (`--engine <engine> --target
/// <addr> --listen <addr>`: the sidecar, the adapter) for an engine nobody
/// listens on: its own endpoints answer regardless. Returns it and its
/// HTTP port.
pub fn spawn_for_absent_engine(
    bin: &str,
    engine: &str,
    fd_limit: Option<usize>,
    serving: Serving,
) -> (Guard, u16) {
    // Bound together so that the two ports differ.
    let listeners: Vec<std::net::TcpListener> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect();
    drop(listeners);
    let listen = format!("127.0.0.1:{}", ports[0]);
    let target = format!("127.0.0.1:{}", ports[1]);
    let args = ["--engine", engine, "--target", &target, "--listen", &listen];
    let child = spawn_serving(bin, &args, fd_limit, || serving(ports[0]));
    (child, ports[0])
}

/// How a test starts the binary under test: under this descriptor limit,
/// if any; it returns the process and its HTTP port.
pub type Start<'a> = &'a dyn Fn(Option<usize>) -> (Guard, u16);
/// Whether the binary answers on this HTTP port.
pub type Serving<'a> = &'a dyn Fn(u16) -> bool;

/// SIGHUP, SIGUSR1 and SIGUSR2 leave the binary serving; SIGTERM ends it
/// cleanly.
pub fn check_signals(start: Start, serving: Serving) {
    let (mut child, port) = start(None);
    assert_signals_harmless(&mut child.0, || serving(port));
    assert_terminates(&mut child.0, Duration::from_secs(10));
}

/// Out of descriptors, the binary does not spin, and it serves again once
/// they free up.
pub fn check_fd_exhaustion(start: Start, serving: Serving) {
    let (child, port) = start(Some(64));
    assert_fd_exhaustion_survived(child.0.id(), port, || serving(port));
}

/// A slow-header client is cut off after the documented timeout
/// ([`HEADER_READ_TIMEOUT`](crate::http::HEADER_READ_TIMEOUT)), and the
/// binary keeps serving others.
pub fn check_slow_headers(start: Start, serving: Serving) {
    let (_child, port) = start(None);
    assert_slow_headers_cut(port, crate::http::HEADER_READ_TIMEOUT);
    assert!(serving(port), "not serving after a slow client");
}

/// The three checks every Tessera binary's tests run, as `#[test]`s:
/// `start(fd_limit) -> (Guard, http_port)` starts the binary, and
/// `serving(port) -> bool` tells whether it answers. For a binary that
/// watches one engine, `hardening_tests!(bin, engine = "redis", path =
/// "/metrics")` starts it with [`spawn_for_absent_engine`] and calls it
/// serving while `path` answers 200.
#[macro_export]
macro_rules! hardening_tests {
    ($bin:expr, engine = $engine:expr, path = $path:expr) => {
        fn serving(port: u16) -> bool {
            $crate::testkit::http_ok(port, $path)
        }

        fn start(fd_limit: Option<usize>) -> ($crate::testkit::Guard, u16) {
            $crate::testkit::spawn_for_absent_engine($bin, $engine, fd_limit, &serving)
        }

        $crate::hardening_tests!(start, serving);
    };
    ($start:expr, $serving:expr) => {
        #[test]
        fn sighup_sigusr1_sigusr2_leave_it_serving_and_sigterm_ends_it() {
            $crate::testkit::check_signals(&$start, &$serving);
        }

        #[test]
        fn out_of_descriptors_it_does_not_spin_and_serves_again_when_they_free_up() {
            $crate::testkit::check_fd_exhaustion(&$start, &$serving);
        }

        #[test]
        fn slow_header_clients_are_cut_off_after_the_header_timeout() {
            $crate::testkit::check_slow_headers(&$start, &$serving);
        }
    };
}
