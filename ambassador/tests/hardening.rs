//! The ambassador survives what production does to it: signals (logrotate's
//! SIGHUP re-reads the pool file), running out of file descriptors, slow
//! clients on the admin port. The checks are the ones every Tessera binary
//! passes (tessera-telemetry's testkit).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use support::*;
use tessera_telemetry::http::HEADER_READ_TIMEOUT;
use tessera_telemetry::testkit::{self, Guard};

struct Running {
    child: Guard,
    port: u16,
    admin: u16,
    pool: PathBuf,
    _shard: RedisServer,
    _dir: tempfile::TempDir,
}

fn pool_file(port: u16, shard: u16, timeout: u32) -> String {
    format!(
        "h:\n  listen: 127.0.0.1:{port}\n  redis: true\n  timeout: {timeout}\n  servers:\n   - 127.0.0.1:{shard}:1 shard-0\n"
    )
}

/// A PING through the data port and a GET of `/healthz` on the admin port.
fn serving(port: u16, admin: u16) -> bool {
    let pong = (|| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"*1\r\n$4\r\nPING\r\n").ok()?;
        let mut reply = [0u8; 7];
        s.read_exact(&mut reply).ok()?;
        Some(&reply == b"+PONG\r\n")
    })();
    pong == Some(true) && testkit::http_ok(admin, "/healthz")
}

/// Starts the ambassador with one real shard, an admin port, and a reload
/// interval so long that only SIGHUP makes it look at the pool file.
fn start(fd_limit: Option<usize>) -> Running {
    let shard = redis();
    let dir = tempdir();
    let (port, admin) = (free_port(), free_port());
    let pool = dir.path().join("pool.yml");
    write(&pool, &pool_file(port, shard.port, 2000));
    let admin_addr = format!("127.0.0.1:{admin}");
    let args = [
        "--config",
        pool.to_str().unwrap(),
        "--admin",
        &admin_addr,
        "--reload-interval-ms",
        "3600000",
    ];
    let bin = ambassador_bin();
    let child = testkit::spawn_serving(bin.to_str().unwrap(), &args, fd_limit, || {
        serving(port, admin)
    });
    Running {
        child,
        port,
        admin,
        pool,
        _shard: shard,
        _dir: dir,
    }
}

fn reloads(admin: u16, result: &str) -> u64 {
    let metrics = http_get(admin, "/metrics");
    let name = format!("tessera_ambassador_reloads_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&name)?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn sighup_sigusr1_sigusr2_leave_it_serving_and_sigterm_ends_it() {
    let mut r = start(None);
    let (port, admin) = (r.port, r.admin);
    testkit::assert_signals_harmless(&mut r.child.0, || serving(port, admin));
    testkit::assert_terminates(&mut r.child.0, Duration::from_secs(10));
}

#[test]
fn sighup_rereads_the_pool_file_at_once() {
    let r = start(None);
    // Unchanged: nothing to apply.
    testkit::send_signal(r.child.0.id(), "HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(reloads(r.admin, "ok"), 0);
    // Changed: applied on the signal, not in an hour.
    let text = std::fs::read_to_string(&r.pool).unwrap();
    write(&r.pool, &text.replace("timeout: 2000", "timeout: 3000"));
    testkit::send_signal(r.child.0.id(), "HUP");
    let applied = testkit::wait_until(Duration::from_secs(5), || reloads(r.admin, "ok") == 1);
    assert!(applied.is_some(), "SIGHUP did not reload the changed file");
    assert!(serving(r.port, r.admin));
    // A broken file is refused and the running configuration stays.
    write(&r.pool, "h:\n  listen: nonsense\n");
    testkit::send_signal(r.child.0.id(), "HUP");
    let refused = testkit::wait_until(Duration::from_secs(5), || reloads(r.admin, "error") == 1);
    assert!(
        refused.is_some(),
        "a broken file was not counted as refused"
    );
    assert!(serving(r.port, r.admin));
}

#[test]
fn out_of_descriptors_it_does_not_spin_and_serves_again_when_they_free_up() {
    // Client connections are never cut for idleness (as in twemproxy), so
    // idle clients on the data port keep every descriptor in use; both
    // the data listener and the admin listener then fail to accept.
    let r = start(Some(64));
    let (port, admin) = (r.port, r.admin);
    testkit::assert_fd_exhaustion_survived(r.child.0.id(), port, || serving(port, admin));
}

#[test]
fn slow_header_clients_are_cut_off_the_admin_port_after_the_header_timeout() {
    let r = start(None);
    testkit::assert_slow_headers_cut(r.admin, HEADER_READ_TIMEOUT);
    assert!(serving(r.port, r.admin));
}
