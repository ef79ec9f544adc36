mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Sidecar;
use tessera_testing::{RedisServer, http_get};

/// A TCP server that answers every connection with `reply` and closes.
fn garbage_server(reply: &'static [u8]) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = s.read(&mut buf);
            let _ = s.write_all(reply);
        }
    });
    addr
}

#[test]
fn garbage_speaking_servers_give_503_with_a_reason() {
    let addr = garbage_server(b"\x16\x03\x01 this is not your engine \xff\xfe\r\n\r\n");
    for engine in ["redis", "memcached", "zookeeper", "etcd", "kafka"] {
        let s = Sidecar::start(engine, &addr, &[]);
        for path in ["/readyz", "/livez"] {
            let (status, body) = s.get(path);
            assert_eq!(status, 503, "{engine} {path}: {body}");
            assert!(
                body.starts_with("not ok: ") && body.trim().len() > 10,
                "{engine}: {body}"
            );
            assert_eq!(body.trim().lines().count(), 1, "one line: {body}");
        }
        let (status, json) = s.get_json("/readyz");
        assert_eq!(status, 503);
        assert!(
            json.contains("\"ok\":false") && json.contains("\"cause\""),
            "{json}"
        );
        // Still serving after garbage.
        assert_eq!(s.get("/metrics").0, 200, "{engine}");
    }
}

#[test]
fn concurrent_probes_share_one_check() {
    let redis = RedisServer::start().expect("redis");
    let s = Sidecar::start("redis", &redis.addr(), &[]);
    s.wait_status("/readyz", 200, Duration::from_secs(5));
    redis.process.pause();
    let before = probes(&s);
    let start = Instant::now();
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let port = s.port;
            std::thread::spawn(move || {
                http_get(port, "/readyz", &[], Duration::from_secs(5))
                    .unwrap()
                    .0
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 503);
    }
    let took = start.elapsed();
    redis.process.resume();
    let ran = probes(&s) - before;
    assert!(
        took < Duration::from_millis(1500),
        "20 probes took {took:?}"
    );
    assert!(
        (1..=3).contains(&ran),
        "{ran} checks ran for 20 concurrent requests"
    );
}

/// Sum of tessera_sidecar_probes_total for readiness.
fn probes(s: &Sidecar) -> u64 {
    let (_, m) = s.get("/metrics");
    m.lines()
        .filter(|l| {
            l.starts_with("tessera_sidecar_probes_total{") && l.contains("check=\"readiness\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn bad_flags_are_refused_at_start() {
    let bin = env!("CARGO_BIN_EXE_tessera-sidecar");
    let cases: [(&[&str], &str); 4] = [
        (
            &["--engine", "mysql", "--target", "127.0.0.1:1"],
            "invalid value 'mysql'",
        ),
        (
            &["--engine", "redis", "--target", "127.0.0.1"],
            "expected host:port",
        ),
        (
            &["--engine", "kafka", "--target", "h:99999"],
            "port must be",
        ),
        (
            &["--engine", "etcd", "--target", "ftp://h:1"],
            "http:// or https://",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(bin)
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn metrics_pass_promtool_and_json_answers() {
    let redis = RedisServer::start().expect("redis");
    let s = Sidecar::start("redis", &redis.addr(), &[]);
    s.wait_status("/readyz", 200, Duration::from_secs(5));
    s.get("/livez");
    let (status, json) = s.get_json("/readyz");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["engine"], "redis");
    let (_, metrics) = s.get("/metrics");
    for name in [
        "tessera_sidecar_probes_total{check=\"readiness\",engine=\"redis\",result=\"success\"}",
        "tessera_sidecar_probe_duration_seconds_bucket",
        "tessera_sidecar_last_success_timestamp_seconds{check=\"liveness\",engine=\"redis\"}",
    ] {
        assert!(metrics.contains(name), "missing {name}:\n{metrics}");
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (make engines installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
