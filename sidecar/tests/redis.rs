mod common;

use std::time::Duration;

use common::{Sidecar, assert_paused_engine_gives_503_quickly};
use tessera_testing::RedisServer;

#[test]
fn replica_turns_unready_when_its_primary_dies_and_ready_when_it_returns() {
    let mut primary = RedisServer::start().expect("primary");
    let replica = RedisServer::replica_of(&primary).expect("replica");
    let p = Sidecar::start("redis", &primary.addr(), &[]);
    let r = Sidecar::start("redis", &replica.addr(), &["--max-replica-lag", "5"]);
    assert!(
        p.wait_status("/readyz", 200, Duration::from_secs(5))
            .contains("primary")
    );
    assert!(
        r.wait_status("/readyz", 200, Duration::from_secs(10))
            .contains("replica: link up")
    );

    primary.kill();
    let body = r.wait_status("/readyz", 503, Duration::from_secs(15));
    assert!(body.contains("link to primary"), "{body}");
    // Still alive: PING answers even without a primary.
    assert_eq!(r.get("/livez").0, 200);
    assert_eq!(p.get("/readyz").0, 503);

    primary
        .restart()
        .expect("primary restarts on the same port");
    r.wait_status("/readyz", 200, Duration::from_secs(20));
    p.wait_status("/readyz", 200, Duration::from_secs(5));
}

#[test]
fn replica_with_a_cut_link_is_unready() {
    let primary = RedisServer::start().expect("primary");
    let replica = RedisServer::replica_of(&primary).expect("replica");
    let r = Sidecar::start("redis", &replica.addr(), &[]);
    r.wait_status("/readyz", 200, Duration::from_secs(10));
    replica.cut_link().unwrap();
    let body = r.wait_status("/readyz", 503, Duration::from_secs(10));
    assert!(
        body.contains("is down") || body.contains("connect"),
        "{body}"
    );
}

#[test]
fn paused_redis_gives_503_within_the_timeout() {
    let redis = RedisServer::start().expect("redis");
    let s = Sidecar::start("redis", &redis.addr(), &[]);
    s.wait_status("/readyz", 200, Duration::from_secs(5));
    redis.process.pause();
    assert_paused_engine_gives_503_quickly(&s);
    redis.process.resume();
    s.wait_status("/readyz", 200, Duration::from_secs(5));
}

#[test]
fn password_from_a_file_is_used_and_never_logged() {
    let redis = RedisServer::start_with_password("hunter2-secret").expect("redis");
    let dir = std::env::temp_dir().join(format!("tessera-sidecar-pw-{}", redis.port));
    std::fs::write(&dir, "hunter2-secret\n").unwrap();
    let ok = Sidecar::start(
        "redis",
        &redis.addr(),
        &["--redis-password-file", dir.to_str().unwrap()],
    );
    ok.wait_status("/readyz", 200, Duration::from_secs(5));
    let none = Sidecar::start("redis", &redis.addr(), &[]);
    let body = none.wait_status("/readyz", 503, Duration::from_secs(5));
    assert!(body.contains("NOAUTH") || body.contains("auth"), "{body}");
    assert!(!body.contains("hunter2"));
    let _ = std::fs::remove_file(dir);
}
