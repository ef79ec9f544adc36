//! Benchmark: idle RSS of tessera-sidecar and /readyz latency at a fixed
//! request rate against a healthy Redis. Run through `bench/sidecar.sh`.
//!
//! Usage: readyz_load <path to tessera-sidecar> [rate per second] [seconds]
//!
//! Open loop: request i is due at start + i/rate and its latency is counted
//! from when it was due, so a slow answer also delays (and penalises) the
//! following ones instead of hiding them. Every request opens a new
//! connection, as the kubelet does.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tessera_testing::{RedisServer, free_ports, http_get};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let bin = args.next().expect("path to tessera-sidecar");
    let rate: u32 = args.next().map_or(200, |r| r.parse().expect("rate"));
    let secs: u64 = args.next().map_or(30, |s| s.parse().expect("seconds"));

    let redis = RedisServer::start().expect("redis-server");
    let port = free_ports(1)[0];
    let mut child = Command::new(&bin)
        .args(["--engine", "redis", "--target", &redis.addr()])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-level",
            "warn",
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sidecar");
    let pid = child.id();
    let t = Duration::from_secs(2);
    let up = Instant::now();
    while http_get(port, "/readyz", &[], t).map(|r| r.0) != Ok(200) {
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "sidecar never became ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..10 {
        http_get(port, "/readyz", &[], t).unwrap();
        http_get(port, "/metrics", &[], t).unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_kib(pid);

    let total = rate as u64 * secs;
    let period = Duration::from_secs(1) / rate;
    let mut lat = Vec::with_capacity(total as usize);
    let mut failures = 0;
    let start = Instant::now();
    for i in 0..total {
        let due = start + period * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        match http_get(port, "/readyz", &[], t) {
            Ok((200, _)) => {}
            _ => failures += 1,
        }
        lat.push(due.elapsed());
    }
    let wall = start.elapsed();
    let loaded = rss_kib(pid);
    let _ = child.kill();
    let _ = child.wait();

    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "requests        {total} at {rate}/s over {:.1}s, {failures} not 200",
        wall.as_secs_f64()
    );
    println!("idle RSS        {:.1} MiB", idle as f64 / 1024.0);
    println!("RSS after load  {:.1} MiB", loaded as f64 / 1024.0);
    println!(
        "latency ms      p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
        ms(pct(0.50)),
        ms(pct(0.90)),
        ms(pct(0.99)),
        ms(lat[lat.len() - 1])
    );
    assert_eq!(failures, 0, "some probes failed against a healthy Redis");
}
