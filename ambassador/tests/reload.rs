//! Live reload under load, through a ConfigMap-style symlink swap.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::*;
use tessera_ambassador::ring::{Distribution, HashFn, Member, Ring};
use tessera_clients::resp::Value;

fn pool(shards: &[RedisServer], port: u16) -> String {
    format!("r:\n  listen: 127.0.0.1:{port}\n  redis: true\n  timeout: 2000\n")
        + &servers(shards.iter().map(|s| s.port), Some("shard"))
}

/// Publishes `text` the way the kubelet updates a mounted ConfigMap: a new
/// timestamped directory, then an atomic rename of the `..data` symlink.
fn publish(dir: &Path, version: u32, text: &str) {
    let data = dir.join(format!("..v{version}"));
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("pool.yml"), text).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..v{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    if !dir.join("pool.yml").exists() {
        std::os::unix::fs::symlink("..data/pool.yml", dir.join("pool.yml")).unwrap();
    }
    if version > 1 {
        std::fs::remove_dir_all(dir.join(format!("..v{}", version - 1))).unwrap();
    }
}

#[test]
fn adding_a_shard_during_load_causes_no_errors_and_reroutes_keys() {
    let shards: Vec<RedisServer> = (0..4).map(|_| redis()).collect();
    let dir = tempdir();
    let port = free_port();
    let admin = free_port();
    publish(dir.path(), 1, &pool(&shards[..3], port));
    let path = dir.path().join("pool.yml");
    let amb = ambassador(
        &path,
        port,
        &[
            "--reload-interval-ms",
            "100",
            "--admin",
            &format!("127.0.0.1:{admin}"),
        ],
    );

    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, errors, done) = (stop.clone(), errors.clone(), done.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let mut rng = fastrand::Rng::with_seed(w);
                while !stop.load(Ordering::Relaxed) {
                    let mut cmds = Vec::new();
                    for _ in 0..25 {
                        let k = format!("load:{}", rng.u32(..100_000)).into_bytes();
                        cmds.push(vec![b"SET".to_vec(), k.clone(), b"x".to_vec()]);
                        cmds.push(vec![b"GET".to_vec(), k]);
                    }
                    cmds.push(vec![
                        b"MGET".to_vec(),
                        b"load:1".to_vec(),
                        b"load:2".to_vec(),
                        b"load:3".to_vec(),
                    ]);
                    for r in c.pipeline(&cmds) {
                        if matches!(r, Value::Error(_)) {
                            eprintln!("client error during reload: {r:?}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    publish(dir.path(), 2, &pool(&shards, port));
    std::thread::sleep(Duration::from_secs(3));
    // A broken file is refused and the running (4-shard) config stays.
    publish(dir.path(), 3, "r:\n  listen: 127.0.0.1:1\n  servers: [\n");
    std::thread::sleep(Duration::from_secs(10).saturating_sub(start.elapsed()));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let total = done.load(Ordering::Relaxed);
    assert!(total > 1000, "only {total} requests in 10 s");
    assert_eq!(
        errors.load(Ordering::Relaxed),
        0,
        "client-visible errors out of {total}"
    );

    let metrics = http_get(admin, "/metrics");
    assert!(
        metrics.contains("tessera_ambassador_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tessera_ambassador_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );

    // Keys now route by the 4-shard ring.
    let members: Vec<Member> = (0..4)
        .map(|i| Member {
            identity: format!("shard-{i}"),
            weight: 1,
            live: true,
        })
        .collect();
    let ring = Ring::new(HashFn::Fnv1a64, Distribution::Ketama, None, &members);
    let mut c = Client::connect(amb.port);
    let mut on_new = 0;
    for i in 0..1000 {
        let k = format!("{i}:after");
        assert_eq!(c.cmd(&["SET", &k, "after"]), ok());
        let owner = ring.route(k.as_bytes()).unwrap();
        on_new += usize::from(owner == 3);
        assert_eq!(
            Client::connect(shards[owner].port).cmd(&["GET", &k]),
            bulk("after"),
            "{k}"
        );
    }
    assert!(on_new > 50, "the new shard owns only {on_new} of 1000 keys");
}
