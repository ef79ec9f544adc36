use serde_json::{Value, json};

use super::*;

/// A typed ShardedStore from its JSON form, with the metadata filled in.
fn typed(mut v: Value) -> ShardedStore {
    v["apiVersion"] = json!("tessera.dev/v1alpha1");
    v["kind"] = json!("ShardedStore");
    v["metadata"] = json!({"name": "cache", "namespace": "apps"});
    serde_json::from_value(v).expect("a valid ShardedStore")
}

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
        "spec": {"engine": "redis", "shards": 2, "hashing": {"function": "murmur", "distribution": "modula", "hashTag": "{}"}},
        "status": {"shards": [
            {"index": 1, "name": "cache-1", "primary": "cache-1-0", "address": "10.0.0.2:6379", "readyReplicas": 1},
            {"index": 0, "name": "cache-0", "primary": "cache-0-0", "address": "10.0.0.1:6379", "readyReplicas": 1},
        ]}
    });
    let p = pool_from_store(&store(), &typed(obj.clone()), &opts()).unwrap();
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
        "spec": {"engine": "memcached", "shards": 1},
        "status": {"shards": [{"index": 0, "name": "mc-0", "address": "mc-0.mc:11211"}]}
    });
    let p = pool_from_store(&store(), &typed(obj.clone()), &opts()).unwrap();
    assert!(!p.redis);
    assert_eq!(p.redis_auth, None);
    assert_eq!(p.listen, "127.0.0.1:11211");
    assert_eq!(
        (p.hash, p.distribution),
        (HashFn::Fnv1a64, Distribution::Ketama)
    );
    assert_eq!(p.servers[0].identity(), "mc-0");
    // A cache ejects a failing shard (twemproxy's memcached advice: two
    // failures, retried after 30 s); Redis never does.
    assert!(p.auto_eject_hosts);
    assert_eq!(
        (p.server_failure_limit, p.server_retry_timeout),
        (2, std::time::Duration::from_secs(30))
    );
    let redis = json!({
        "spec": {"engine": "redis", "shards": 1},
        "status": {"shards": [{"index": 0, "name": "r-0", "address": "10.0.0.1:6379"}]}
    });
    assert!(
        !pool_from_store(&store(), &typed(redis), &opts())
            .unwrap()
            .auto_eject_hosts
    );
}

#[test]
fn unusable_statuses_are_refused() {
    let spec = json!({"engine": "redis", "shards": 2});
    for (status, why) in [
        (Value::Null, "not published"),
        (json!({"shards": []}), "not published"),
        (
            json!({"shards": [{"index": 0, "name": "c-0"}]}),
            "no address",
        ),
        (
            json!({"shards": [{"index": 0, "name": "c-0", "address": ""}]}),
            "no address",
        ),
        (
            json!({"shards": [{"index": 0, "name": "c-0", "address": "nope"}]}),
            "not host:port",
        ),
        (
            json!({"shards": [{"index": 0, "name": "", "address": "a:1"}]}),
            "no name",
        ),
        (
            json!({"shards": [{"index": 0, "name": "a", "address": "a:1"}, {"index": 0, "name": "b", "address": "b:1"}]}),
            "share an index",
        ),
        (
            json!({"shards": [{"index": 0, "name": "a", "address": "a:1"}, {"index": 1, "name": "a", "address": "b:1"}]}),
            "share a name",
        ),
    ] {
        let mut obj = json!({"spec": spec});
        if !status.is_null() {
            obj["status"] = status.clone();
        }
        let err = pool_from_store(&store(), &typed(obj), &opts()).unwrap_err();
        assert!(err.contains(why), "{status}: {err}");
    }
    let tag = json!({"spec": {"engine": "redis", "shards": 1, "hashing": {"hashTag": "{"}},
        "status": {"shards": [{"index": 0, "name": "a", "address": "a:1"}]}});
    let err = pool_from_store(&store(), &typed(tag), &opts()).unwrap_err();
    assert!(err.contains("hashTag"), "{err}");
}

#[test]
fn every_hash_function_and_distribution_maps_to_the_same_twemproxy_name() {
    for f in HashFn::ALL {
        let api: HashFunction = serde_json::from_value(json!(f.name())).unwrap();
        assert_eq!(hash_fn(api), f);
    }
    for d in ["ketama", "modula", "random"] {
        let api: api::Distribution = serde_json::from_value(json!(d)).unwrap();
        assert_eq!(distribution(api), d.parse::<Distribution>().unwrap());
    }
}
