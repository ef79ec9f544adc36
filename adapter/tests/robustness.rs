//! Engines that misbehave: a server that speaks garbage, and a hung
//! (SIGSTOPped) Redis. The adapter answers 200 with `tessera_up 0`, counts
//! the error, never panics, and recovers when the engine does.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::{Adapter, Metrics, assert_down_within_one_scrape};
use tessera_testing::RedisServer;

/// Accepts forever; to each connection writes bytes that are no engine's
/// protocol, then closes.
fn garbage_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = s.read(&mut [0u8; 1024]);
            let _ = s.write_all(b"\x00\xff\xfe garbage \r\n$99999\r\nSTAT x\r\nzk_\tnope\r\n");
        }
    });
    port
}

#[test]
fn garbage_gives_up_0_for_every_engine() {
    let port = garbage_server();
    for engine in ["redis", "memcached", "zookeeper", "etcd", "kafka"] {
        let a = Adapter::start(engine, &format!("127.0.0.1:{port}"), &[]);
        for _ in 0..2 {
            assert_down_within_one_scrape(&a);
        }
        let m = a.scrape();
        let errors: f64 = m
            .samples
            .iter()
            .filter(|s| s.name == "tessera_scrape_errors_total")
            .map(|s| s.value)
            .sum();
        assert!(errors >= 3.0, "{engine}: errors not counted:\n{}", m.text);
        let mut a = a;
        assert!(
            a.process.is_running(),
            "{engine}: adapter died:\n{}",
            a.log()
        );
    }
}

#[test]
fn hung_redis_gives_up_0_within_the_deadline_then_recovers() {
    let redis = RedisServer::start().expect("redis");
    let a = Adapter::start("redis", &redis.addr(), &[]);
    assert_eq!(a.scrape().must("tessera_up", &[]), 1.0);
    redis.process.pause();
    // The adapter's scrape timeout is 3 s in these tests.
    let (status, body, took) = a.scrape_raw();
    assert_eq!(status, 200);
    let m = Metrics::parse(&body);
    assert_eq!(m.must("tessera_up", &[]), 0.0, "{body}");
    assert!(took < Duration::from_secs(4), "hung scrape took {took:?}");
    let timeouts = m.must("tessera_scrape_errors_total", &[("reason", "timeout")])
        + m.must("tessera_scrape_errors_total", &[("reason", "deadline")]);
    assert!(timeouts >= 1.0, "{body}");
    // /healthz does not depend on the engine.
    let (s, _) =
        tessera_testing::http_get(a.port, "/healthz", &[], Duration::from_secs(1)).unwrap();
    assert_eq!(s, 200);
    redis.process.resume();
    let m = a.scrape();
    assert_eq!(m.must("tessera_up", &[]), 1.0, "{}", m.text);
}
