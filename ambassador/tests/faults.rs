//! Faults with real processes: a killed shard, a stopped (hung) shard,
//! auto-ejection and return.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tessera_ambassador::ring::{Distribution, HashFn, Member, Ring};
use tessera_clients::resp::Value;

fn pool(shards: &[&RedisServer], port: u16, extra: &str) -> String {
    format!("f:\n  listen: 127.0.0.1:{port}\n  redis: true\n{extra}")
        + &servers(shards.iter().map(|s| s.port), Some("shard"))
}

fn ring(n: usize, dead: &[usize]) -> Ring {
    let members: Vec<Member> = (0..n)
        .map(|i| Member {
            identity: format!("shard-{i}"),
            weight: 1,
            live: !dead.contains(&i),
        })
        .collect();
    Ring::new(HashFn::Fnv1a64, Distribution::Ketama, None, &members)
}

/// Keys owned by each shard of a 3-shard ring.
fn keys_by_shard(ring: &Ring) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new(); 3];
    for i in 0..3000 {
        let k = format!("{i}-fault");
        out[ring.route(k.as_bytes()).unwrap()].push(k);
    }
    out
}

fn is_err(v: &Value) -> bool {
    matches!(v, Value::Error(_))
}

#[test]
fn a_killed_shard_fails_only_its_own_keys() {
    let shards: Vec<RedisServer> = (0..3).map(|_| redis()).collect();
    let dir = tempdir();
    let port = free_port();
    let path = dir.path().join("pool.yml");
    write(
        &path,
        &pool(
            &shards.iter().collect::<Vec<_>>(),
            port,
            "  timeout: 1000\n",
        ),
    );
    let amb = ambassador(&path, port, &[]);
    let owners = keys_by_shard(&ring(3, &[]));
    let mut c = Client::connect(amb.port);
    let mut shards = shards;
    let killed = shards.remove(1);
    drop(killed);
    for _ in 0..2 {
        for (shard, keys) in owners.iter().enumerate() {
            for k in keys.iter().take(100) {
                let r = c.cmd(&["SET", k, "v"]);
                if shard == 1 {
                    let Value::Error(e) = &r else {
                        panic!("{k} on the dead shard got {r:?}")
                    };
                    assert!(String::from_utf8_lossy(e).contains("shard-1"), "{e:?}");
                } else {
                    assert_eq!(r, ok(), "{k} on live shard {shard}");
                }
            }
        }
    }
}

#[test]
fn a_stopped_shard_times_out_within_timeout_and_others_are_unaffected() {
    let shards: Vec<RedisServer> = (0..3).map(|_| redis()).collect();
    let dir = tempdir();
    let port = free_port();
    let path = dir.path().join("pool.yml");
    write(
        &path,
        &pool(&shards.iter().collect::<Vec<_>>(), port, "  timeout: 300\n"),
    );
    let amb = ambassador(&path, port, &[]);
    let owners = keys_by_shard(&ring(3, &[]));
    // Warm the connections so the stop hits established ones.
    let mut c = Client::connect(amb.port);
    for keys in &owners {
        assert_eq!(c.cmd(&["SET", &keys[0], "v"]), ok());
    }
    shards[2].process.pause();
    let result = std::panic::catch_unwind(|| {
        let mut hung = Client::connect(amb.port);
        let start = Instant::now();
        hung.send_raw(b"*2\r\n$3\r\nGET\r\n");
        hung.send_raw(format!("${}\r\n{}\r\n", owners[2][0].len(), owners[2][0]).as_bytes());
        // Meanwhile other shards answer promptly on another connection.
        let mut other = Client::connect(amb.port);
        for k in owners[0].iter().chain(&owners[1]).take(200) {
            assert_eq!(other.cmd(&["SET", k, "v"]), ok());
        }
        let r = hung.read().unwrap();
        let took = start.elapsed();
        let Value::Error(e) = &r else {
            panic!("got {r:?}")
        };
        // twemproxy's words first, then which shard.
        assert_eq!(
            String::from_utf8_lossy(e),
            format!("ERR Connection timed out: shard shard-2 did not answer within 300 ms")
        );
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
            "{took:?}"
        );
    });
    shards[2].process.resume();
    result.unwrap();
    // Once it is back, its keys work again.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut c = Client::connect(amb.port);
    while c.cmd(&["GET", &owners[2][0]]) != bulk("v") {
        assert!(Instant::now() < deadline, "shard 2 never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_failing_shard_is_ejected_and_returns_after_retry_timeout() {
    let mut shards: Vec<RedisServer> = (0..3).map(|_| redis()).collect();
    let dir = tempdir();
    let port = free_port();
    let admin = free_port();
    let path = dir.path().join("pool.yml");
    write(
        &path,
        &pool(
            &shards.iter().collect::<Vec<_>>(),
            port,
            "  timeout: 500\n  auto_eject_hosts: true\n  server_failure_limit: 2\n  server_retry_timeout: 1500\n",
        ),
    );
    let amb = ambassador(&path, port, &["--admin", &format!("127.0.0.1:{admin}")]);
    let full = keys_by_shard(&ring(3, &[]));
    let without0 = ring(3, &[0]);
    shards[0].kill();
    let mut c = Client::connect(amb.port);
    // The first requests for shard 0 fail; after two failures it is ejected
    // and its keys move to the remaining shards.
    let k = &full[0][0];
    let mut errors = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = c.cmd(&["SET", k, "moved"]);
        if r == ok() {
            break;
        }
        assert!(is_err(&r));
        errors += 1;
        assert!(Instant::now() < deadline, "never ejected");
    }
    // At least the failure limit; a few more can race with the new ring
    // being published.
    assert!(
        (2..=10).contains(&errors),
        "{errors} errors before ejection"
    );
    let new_owner = without0.route(k.as_bytes()).unwrap();
    assert_ne!(new_owner, 0);
    assert_eq!(
        Client::connect(shards[new_owner].port).cmd(&["GET", k]),
        bulk("moved")
    );
    let metrics = http_get(admin, "/metrics");
    assert!(
        metrics.contains("tessera_ambassador_shard_ejected{pool=\"f\",shard=\"shard-0\"} 1"),
        "{metrics}"
    );

    // The shard comes back on its port; after server_retry_timeout it is
    // in the ring again and its keys go back to it.
    shards[0].restart().expect("restart shard 0 on its port");
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        assert_eq!(c.cmd(&["SET", k, "home"]), ok());
        if Client::connect(shards[0].port).cmd(&["GET", k]) == bulk("home") {
            break;
        }
        assert!(Instant::now() < deadline, "shard 0 never returned");
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = http_get(admin, "/metrics");
    assert!(
        metrics.contains("tessera_ambassador_shard_ejected{pool=\"f\",shard=\"shard-0\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tessera_ambassador_errors_total{command=\"set\",kind="),
        "{metrics}"
    );
    assert!(
        metrics.contains("tessera_ambassador_upstream_latency_seconds_bucket"),
        "{metrics}"
    );
}

/// A split DEL where one shard is a read-only replica: the whole command
/// fails with that shard's own error code (twemproxy: `-ERR Invalid
/// argument`), and the text says which shard failed and that the other
/// parts ran, as they did.
#[test]
fn a_split_del_with_a_read_only_shard_fails_naming_the_shard_and_the_split() {
    let primary = redis();
    let shards: Vec<RedisServer> = (0..2).map(|_| redis()).collect();
    let mut replica = Client::connect(shards[1].port);
    assert_eq!(
        replica.cmd(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]),
        ok()
    );
    let (amb, _dir) = start_pool(
        |port| pool(&[&shards[0], &shards[1]], port, "  timeout: 2000\n"),
        &[],
    );
    let ring = ring(2, &[]);
    let key_on = |shard: usize| {
        (0..)
            .map(|i| format!("{i}-ro"))
            .find(|k| ring.route(k.as_bytes()) == Some(shard))
            .unwrap()
    };
    let (k0, k1) = (key_on(0), key_on(1));
    assert_eq!(
        Client::connect(shards[0].port).cmd(&["SET", &k0, "v"]),
        ok()
    );
    let mut c = Client::connect(amb.port);
    let Value::Error(e) = c.cmd(&["DEL", &k0, &k1]) else {
        panic!("a split DEL with a read-only shard succeeded")
    };
    let e = String::from_utf8_lossy(&e).into_owned();
    assert!(e.starts_with("READONLY "), "{e}");
    assert!(
        e.ends_with("(split across 2 shards: shard-1 failed, 1 succeeded)"),
        "{e}"
    );
    assert_eq!(
        Client::connect(shards[0].port).cmd(&["EXISTS", &k0]),
        Value::Integer(0),
        "the part on the writable shard ran"
    );
    // A single-key write gets the replica's error unchanged, as from Redis.
    let Value::Error(e) = c.cmd(&["SET", &k1, "v"]) else {
        panic!("a write to a replica succeeded")
    };
    assert!(e.starts_with(b"READONLY "), "{e:?}");
}

/// A `redis_auth` the shards refuse is an authentication error, `-NOAUTH`
/// as a client of twemproxy or of Redis gets, not a connection error, and
/// it does not eject the shard (which would move its keys, fixing nothing).
#[test]
fn a_refused_redis_auth_is_an_authentication_error_and_ejects_nothing() {
    let shard = redis_with_password("right");
    let admin = free_port();
    let settings = "  redis_auth: wrong\n  auto_eject_hosts: true\n  server_failure_limit: 1\n";
    let (amb, _dir) = start_pool(
        |port| pool(&[&shard], port, settings),
        &["--admin", &format!("127.0.0.1:{admin}")],
    );
    let mut c = Client::connect(amb.port);
    assert_eq!(c.cmd(&["AUTH", "wrong"]), ok(), "the proxy's own password");
    for _ in 0..3 {
        let Value::Error(e) = c.cmd(&["GET", "k"]) else {
            panic!("a refused password let a command through")
        };
        let e = String::from_utf8_lossy(&e).into_owned();
        assert!(
            e.starts_with(
                "NOAUTH shard shard-0 refused the proxy's password (redis_auth): WRONGPASS"
            ),
            "{e}"
        );
    }
    let metrics = http_get(admin, "/metrics");
    assert!(
        metrics.contains("tessera_ambassador_shard_ejected{pool=\"f\",shard=\"shard-0\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("kind=\"auth\""), "{metrics}");
}

/// `redis_auth` towards a shard that has no password: the shard's refusal
/// of AUTH is ignored, as twemproxy ignores it, and commands work.
#[test]
fn redis_auth_towards_a_shard_without_a_password_is_harmless() {
    let shard = redis();
    let (amb, _dir) = start_pool(|port| pool(&[&shard], port, "  redis_auth: s3cret\n"), &[]);
    let mut c = Client::connect(amb.port);
    assert_eq!(c.cmd(&["AUTH", "s3cret"]), ok());
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v"));
}
