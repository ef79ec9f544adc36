mod common;

use std::time::Duration;

use common::{Sidecar, assert_paused_engine_gives_503_quickly};
use tessera_testing::{Etcd, Memcached};

#[test]
fn memcached_ready_when_up_unready_when_stopped() {
    let mut m = Memcached::start().expect("memcached");
    let s = Sidecar::start("memcached", &m.addr(), &[]);
    assert!(
        s.wait_status("/readyz", 200, Duration::from_secs(5))
            .contains("accepting")
    );
    assert_eq!(s.get("/livez").0, 200);
    m.process.kill();
    let body = s.wait_status("/readyz", 503, Duration::from_secs(5));
    assert!(body.contains("stats"), "{body}");
    assert_eq!(s.get("/livez").0, 503);
    m.restart().expect("restart");
    s.wait_status("/readyz", 200, Duration::from_secs(5));
    m.process.pause();
    assert_paused_engine_gives_503_quickly(&s);
    m.process.resume();
}

#[test]
fn etcd_ready_when_up_unready_when_stopped() {
    let mut e = Etcd::start().expect("etcd");
    let s = Sidecar::start("etcd", &e.addr(), &[]);
    s.wait_status("/readyz", 200, Duration::from_secs(10));
    assert_eq!(s.get("/livez").0, 200);
    e.process.kill();
    s.wait_status("/readyz", 503, Duration::from_secs(5));
    assert_eq!(s.get("/livez").0, 503);
    e.restart().expect("restart");
    s.wait_status("/readyz", 200, Duration::from_secs(10));
    e.process.pause();
    assert_paused_engine_gives_503_quickly(&s);
    e.process.resume();
    // The URL form of --target works too.
    let u = Sidecar::start("etcd", &e.url(), &[]);
    u.wait_status("/readyz", 200, Duration::from_secs(10));
}
