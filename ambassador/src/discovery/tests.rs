use serde_json::json;

use super::*;

fn store() -> StoreRef {
    "apps/cache".parse().unwrap()
}

fn opts() -> Options {
    Options {
        listen: None,
        timeout: Some(Duration::from_millis(500)),
        redis_auth: Some("pw".into()),
    }
}

#[test]
fn store_refs() {
    assert_eq!(
        store(),
        StoreRef {
            namespace: "apps".into(),
            name: "cache".into()
        }
    );
    for bad in ["cache", "/cache", "apps/", "a/b/c"] {
        assert!(bad.parse::<StoreRef>().is_err(), "{bad}");
    }
}

#[test]
fn shards_become_named_servers_in_index_order() {
    let obj = json!({
        "spec": {"engine": "redis", "hashing": {"function": "murmur", "distribution": "modula", "hashTag": "{}"}},
        "status": {"shards": [
            {"index": 1, "name": "cache-1", "primary": "cache-1-0", "address": "10.0.0.2:6379", "readyReplicas": 1},
            {"index": 0, "name": "cache-0", "primary": "cache-0-0", "address": "10.0.0.1:6379", "readyReplicas": 1},
        ]}
    });
    let p = pool_from_store(&store(), &obj, &opts()).unwrap();
    assert_eq!(p.name, "apps/cache");
    assert_eq!(p.listen, "127.0.0.1:6379");
    assert_eq!(
        (p.hash, p.distribution, p.hash_tag),
        (HashFn::Murmur, Distribution::Modula, Some(*b"{}"))
    );
    assert!(p.redis);
    assert_eq!(p.redis_auth.as_deref(), Some("pw"));
    let names: Vec<_> = p.servers.iter().map(|s| (s.identity(), s.addr())).collect();
    assert_eq!(
        names,
        vec![
            ("cache-0".to_owned(), "10.0.0.1:6379".to_owned()),
            ("cache-1".to_owned(), "10.0.0.2:6379".to_owned())
        ]
    );
}

#[test]
fn defaults_and_memcached() {
    let obj = json!({
        "spec": {"engine": "memcached"},
        "status": {"shards": [{"index": 0, "address": "mc-0.mc:11211"}]}
    });
    let p = pool_from_store(&store(), &obj, &opts()).unwrap();
    assert!(!p.redis);
    assert_eq!(p.redis_auth, None);
    assert_eq!(p.listen, "127.0.0.1:11211");
    assert_eq!(
        (p.hash, p.distribution),
        (HashFn::Fnv1a64, Distribution::Ketama)
    );
    assert_eq!(p.servers[0].identity(), "shard-0");
}

#[test]
fn unusable_statuses_are_refused() {
    for (obj, why) in [
        (json!({"spec": {}}), "not published"),
        (json!({"status": {"shards": []}}), "not published"),
        (json!({"status": {"shards": [{"index": 0}]}}), "no address"),
        (
            json!({"status": {"shards": [{"index": 0, "address": "nope"}]}}),
            "not host:port",
        ),
        (
            json!({"status": {"shards": [{"index": 0, "address": "a:1"}, {"index": 0, "address": "b:1"}]}}),
            "share an index",
        ),
        (
            json!({"spec": {"engine": "kafka"}, "status": {"shards": [{"index": 0, "address": "a:1"}]}}),
            "engine",
        ),
        (
            json!({"spec": {"hashing": {"function": "sha1"}}, "status": {"shards": [{"index": 0, "address": "a:1"}]}}),
            "unknown hash",
        ),
    ] {
        let err = pool_from_store(&store(), &obj, &opts()).unwrap_err();
        assert!(err.contains(why), "{obj}: {err}");
    }
}
