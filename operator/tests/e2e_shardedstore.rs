//! End-to-end on the real node: the ShardedStore examples reconciled into
//! running Redis and memcached shards, keys written through the ambassador
//! running next to an app, placed where twemproxy places them, and a Redis
//! primary deleted under it.
//!
//! Needs `hack/controlplane.sh up` with the real node and the images loaded
//! (`make images`).

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;
use tessera_ambassador::ring::{Distribution, HashFn, Member, Ring};
use tessera_api::ShardedStore;
use tessera_api::sharded_store::ShardStatus;
use tessera_clients::memcached::Client as MemcachedClient;
use tessera_clients::redis::{Client, Info, Options};
use tessera_clients::resp::Value;

const MINUTE: Duration = Duration::from_secs(60);
const PASSWORD: &str = "e2e-shards-s3cret";
const KEYS: usize = 10_000;

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("test object")
}

/// The ShardedStore CRD of this checkout, applied again when the cluster's
/// copy lacks the status fields these tests read. Other suites sharing the
/// control plane install the crds/ of their own checkout, and an older
/// ShardedStore schema prunes what the operator writes (`replicas`, so a
/// wait for linked replicas never ends). A no-op once every checkout has
/// this CRD.
async fn ensure_store_crd(client: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let (_, ours) = tessera_api::crds()
        .into_iter()
        .find(|(file, _)| *file == "shardedstore.yaml")
        .expect("the ShardedStore CRD");
    let name = ours.metadata.name.clone().unwrap();
    // The newest status field: present in this checkout's schema only.
    let has_ours = |c: &CustomResourceDefinition| {
        serde_json::to_string(&c.spec.versions).is_ok_and(|t| t.contains("lagKiB"))
    };
    assert!(has_ours(&ours), "this checkout's CRD lacks lagKiB");
    if api.get(&name).await.is_ok_and(|c| has_ours(&c)) {
        return;
    }
    eprintln!("the cluster's {name} lacks this checkout's status fields; applying ours again");
    api.patch(
        &name,
        &PatchParams::apply("tessera-e2e").force(),
        &Patch::Apply(&ours),
    )
    .await
    .expect("apply the ShardedStore CRD");
}

/// The store once Ready for its generation with every shard placed: a
/// primary with an address and, for Redis, every replica linked.
async fn wait_placed(ns: &TestNs, name: &str, timeout: Duration) -> ShardedStore {
    let api: Api<ShardedStore> = ns.api();
    ns.wait_for(&format!("shardedstore/{name} Ready"), timeout, || {
        let api = api.clone();
        async move {
            ensure_store_crd(&ns.client).await;
            let s = api.get(name).await.ok()?;
            let st = s.status.as_ref()?;
            let ready = st
                .common
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let placed = st.shards.len() == s.spec.shards as usize
                && st.shards.iter().all(|sh| {
                    sh.address.is_some()
                        && sh.replicas.iter().all(|r| r.linked)
                        && sh.replicas.len() == s.spec.replicas_per_shard as usize
                });
            (st.common.observed_generation == s.metadata.generation
                && ready
                && placed
                && st.ready_shards == s.spec.shards)
                .then_some(s)
        }
    })
    .await
}

fn redis_opts() -> Options {
    Options {
        timeout: Duration::from_secs(2),
        password: Some(PASSWORD.into()),
        ..Options::default()
    }
}

async fn info(addr: &str) -> Info {
    Client::connect(addr, redis_opts())
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
        .info(Some("replication"))
        .await
        .unwrap_or_else(|e| panic!("INFO replication on {addr}: {e}"))
}

async fn dbsize(addr: &str) -> i64 {
    let mut c = Client::connect(addr, redis_opts()).await.unwrap();
    match c.command(&["DBSIZE"]).await.unwrap() {
        Value::Integer(n) => n,
        other => panic!("DBSIZE on {addr}: {other:?}"),
    }
}

async fn pod_ip(ns: &TestNs, pod: &str) -> Option<String> {
    let pods: Api<Pod> = ns.api();
    let p = pods.get(pod).await.ok()?;
    if p.metadata.deletion_timestamp.is_some() {
        return None;
    }
    p.status?.pod_ip
}

fn dns(ns: &TestNs, store: &str, pod: &str) -> String {
    format!("{pod}.{store}-headless.{}.svc", ns.name)
}

/// Each primary has its replicas connected, and each replica follows its
/// shard's primary by DNS name with the link up: `INFO replication` on
/// every pod.
async fn assert_replication_healthy(ns: &TestNs, store: &ShardedStore) {
    let name = store.metadata.name.as_deref().unwrap();
    for sh in &store.status.as_ref().unwrap().shards {
        let primary = sh.primary.as_deref().unwrap();
        let i = info(sh.address.as_deref().unwrap()).await;
        assert_eq!(i.get("role"), Some("master"), "{primary}: {i:?}");
        assert_eq!(
            i.get("connected_slaves"),
            Some(sh.replicas.len().to_string().as_str()),
            "{primary}: {i:?}"
        );
        for r in &sh.replicas {
            let ip = pod_ip(ns, &r.name).await.expect("replica IP");
            let i = info(&format!("{ip}:6379")).await;
            assert_eq!(i.get("role"), Some("slave"), "{}: {i:?}", r.name);
            assert_eq!(
                i.get("master_host"),
                Some(dns(ns, name, primary).as_str()),
                "{}",
                r.name
            );
            assert_eq!(i.get("master_link_status"), Some("up"), "{}", r.name);
        }
    }
}

/// A ServiceAccount allowed to follow exactly this store, and an app pod
/// whose `ambassador` container routes to its shards, next to a container
/// with redis-cli. Redis: on 127.0.0.1:6379, with the store's password.
/// memcached: on the pod's 11211, so that the test (on the node) is the
/// app's client; returns that address.
async fn app_with_ambassador(ns: &TestNs, store: &str, engine: &str) -> String {
    let redis = engine == "redis";
    let sa: Api<ServiceAccount> = ns.api();
    sa.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "app"}})),
    )
    .await
    .unwrap();
    let roles: Api<Role> = ns.api();
    roles
        .create(
            &PostParams::default(),
            &obj(json!({
                "metadata": {"name": "app-ambassador"},
                "rules": [{"apiGroups": ["tessera.dev"], "resources": ["shardedstores"],
                           "resourceNames": [store], "verbs": ["get", "list", "watch"]}]
            })),
        )
        .await
        .unwrap();
    let bindings: Api<RoleBinding> = ns.api();
    bindings
        .create(
            &PostParams::default(),
            &obj(json!({
                "metadata": {"name": "app-ambassador"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "app-ambassador"},
                "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": ns.name}]
            })),
        )
        .await
        .unwrap();
    let locked = json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": true,
        "seccompProfile": {"type": "RuntimeDefault"}
    });
    let password = json!({"secretKeyRef": {"name": format!("{store}-auth"), "key": "password"}});
    let (listen, env) = if redis {
        (
            "127.0.0.1:6379",
            json!([{"name": "TESSERA_AMBASSADOR_REDIS_AUTH", "valueFrom": password}]),
        )
    } else {
        ("0.0.0.0:11211", json!([]))
    };
    let app_env = if redis {
        json!([{"name": "REDISCLI_AUTH", "valueFrom": password}])
    } else {
        json!([])
    };
    let pods: Api<Pod> = ns.api();
    pods.create(
        &PostParams::default(),
        &obj(json!({
            "metadata": {"name": "app"},
            "spec": {
                "serviceAccountName": "app",
                "securityContext": {"runAsNonRoot": true, "runAsUser": 999, "runAsGroup": 999},
                "containers": [
                    {
                        "name": "app",
                        "image": tessera_e2e::REDIS_IMAGE,
                        "command": ["sleep", "3600"],
                        "env": app_env,
                        "securityContext": locked
                    },
                    {
                        "name": "ambassador",
                        "image": format!("ghcr.io/tessera-dev/tessera:{}", env!("CARGO_PKG_VERSION")),
                        "command": ["/usr/local/bin/tessera-ambassador"],
                        "args": ["--store", format!("{}/{store}", ns.name), "--listen", listen],
                        "env": env,
                        "securityContext": locked
                    }
                ]
            }
        })),
    )
    .await
    .unwrap();
    if !redis {
        let addr = ns
            .wait_for("the ambassador answers version", 3 * MINUTE, || async {
                let addr = format!("{}:11211", pod_ip(ns, "app").await?);
                let mut c = MemcachedClient::connect(&addr, Duration::from_secs(2))
                    .await
                    .ok()?;
                let v = c.version().await.ok()?;
                v.starts_with("tessera-ambassador").then_some(addr)
            })
            .await;
        return addr;
    }
    ns.wait_for("the ambassador answers PING", 3 * MINUTE, || async {
        let out = kubectl(&[
            "-n",
            &ns.name,
            "exec",
            "app",
            "-c",
            "app",
            "--",
            "redis-cli",
            "-p",
            "6379",
            "PING",
        ]);
        (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "PONG")
            .then_some(())
    })
    .await;
    "127.0.0.1:6379".into()
}

/// Runs redis-cli in the app pod with `commands` (one per line) on stdin,
/// through the ambassador; returns one reply per line.
fn through_ambassador(ns: &TestNs, commands: &str) -> Vec<String> {
    try_through_ambassador(ns, commands).unwrap_or_else(|e| panic!("{e}"))
}

fn try_through_ambassador(ns: &TestNs, commands: &str) -> Result<Vec<String>, String> {
    use std::io::Write;
    let t = tessera_e2e::target();
    let mut child = std::process::Command::new(&t.kubectl)
        .args(["-n", &ns.name, "exec", "-i", "app", "-c", "app", "--"])
        .args(["redis-cli", "-p", "6379"])
        .env("KUBECONFIG", &t.kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kubectl exec");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(commands.as_bytes())
        .expect("commands to redis-cli");
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(format!(
            "redis-cli through the ambassador: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Where twemproxy puts `key` for this store: the shard's index.
fn ring(store: &ShardedStore) -> Ring {
    let members: Vec<Member> = store
        .status
        .as_ref()
        .unwrap()
        .shards
        .iter()
        .map(|s| Member {
            identity: s.name.clone(),
            weight: 1,
            live: true,
        })
        .collect();
    let tag = store
        .spec
        .hashing
        .hash_tag
        .as_ref()
        .map(|t| [t.as_bytes()[0], t.as_bytes()[1]]);
    // The example's hashing, which the ambassador reads from the spec.
    assert_eq!(
        serde_json::to_value(store.spec.hashing.function).unwrap(),
        "fnv1a_64"
    );
    Ring::new(HashFn::Fnv1a64, Distribution::Ketama, tag, &members)
}

fn key(n: usize) -> String {
    // Every tenth key carries a hash tag, so that tags are exercised too.
    if n.is_multiple_of(10) {
        format!("{{user:{n}}}:profile")
    } else {
        format!("key:{n}")
    }
}

fn shard_of(store: &ShardedStore, ring: &Ring, k: &str) -> ShardStatus {
    let i = ring.route(k.as_bytes()).expect("a live shard");
    store.status.as_ref().unwrap().shards[i].clone()
}

/// examples/shardedstore-redis.yaml with its auth Secret and
/// `replicasPerShard` set, once placed.
async fn redis_example(ns: &TestNs, replicas_per_shard: i32) -> ShardedStore {
    let secrets: Api<Secret> = ns.api();
    secrets
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "cache-auth"}, "stringData": {"password": PASSWORD}})),
        )
        .await
        .unwrap();
    let mut store: ShardedStore =
        serde_yaml::from_str(include_str!("../../examples/shardedstore-redis.yaml")).unwrap();
    store.spec.replicas_per_shard = replicas_per_shard;
    let api: Api<ShardedStore> = ns.api();
    api.create(&PostParams::default(), &store).await.unwrap();
    wait_placed(ns, "cache", 6 * MINUTE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_shards_replicate_serve_the_ambassador_and_survive_a_deleted_primary() {
    let (ns, op) = real_node_setup("sst-redis").await;
    // 3 shards of a primary and 2 replicas: 9 Redis pods.
    let store = redis_example(&ns, 2).await;
    let shards = &store.status.as_ref().unwrap().shards;
    assert_eq!(shards.len(), 3);
    assert!(shards.iter().all(|sh| sh.replicas.len() == 2), "{shards:?}");
    assert_replication_healthy(&ns, &store).await;
    let logs = op.logs();
    assert!(
        !logs.contains(PASSWORD),
        "the password reached the operator's log"
    );
    let yaml = kubectl_ok(&["-n", &ns.name, "get", "shardedstore", "cache", "-o", "yaml"]);
    assert!(!yaml.contains(PASSWORD), "the password reached the status");
    // Every pass needs the password; the Secret is read once per version
    // of it, not once per pass.
    let kind = "kind=\"shardedstore\"";
    let passes = op
        .metric("tessera_operator_reconciles_total", &[kind])
        .await;
    let reads = op
        .metric(
            "tessera_operator_api_reads_total",
            &[kind, "resource=\"secrets\""],
        )
        .await;
    assert!(
        (1.0..=3.0).contains(&reads) && passes >= 5.0 * reads,
        "{reads} reads of the auth Secret in {passes} passes"
    );

    // 10,000 keys through the ambassador in the app pod.
    app_with_ambassador(&ns, "cache", "redis").await;
    let sets: String = (0..KEYS)
        .map(|n| format!("SET {} v{n}\n", key(n)))
        .collect();
    let replies = through_ambassador(&ns, &sets);
    assert_eq!(
        replies.len(),
        KEYS,
        "{:?}",
        &replies[..replies.len().min(5)]
    );
    assert!(
        replies.iter().all(|r| r == "OK"),
        "{:?}",
        replies.iter().find(|r| *r != "OK")
    );

    // Each key is on the shard twemproxy's hashing names, read from that
    // shard's primary directly, and on no other.
    let ring = ring(&store);
    let shards = store.status.as_ref().unwrap().shards.clone();
    let mut clients = BTreeMap::new();
    for sh in &shards {
        let addr = sh.address.clone().unwrap();
        clients.insert(
            sh.index,
            Client::connect(&addr, redis_opts()).await.unwrap(),
        );
    }
    let mut per_shard = BTreeMap::<i32, i64>::new();
    for n in 0..KEYS {
        let k = key(n);
        let sh = shard_of(&store, &ring, &k);
        *per_shard.entry(sh.index).or_default() += 1;
        let v = clients
            .get_mut(&sh.index)
            .unwrap()
            .command(&["GET", &k])
            .await
            .unwrap();
        assert_eq!(
            v.as_bytes().map(|b| &b[..]),
            Some(format!("v{n}").as_bytes()),
            "{k} on {}",
            sh.name
        );
    }
    for sh in &shards {
        let size = dbsize(sh.address.as_deref().unwrap()).await;
        assert_eq!(
            size, per_shard[&sh.index],
            "{} holds other shards' keys",
            sh.name
        );
        assert!(
            size > KEYS as i64 / 10,
            "{}: {size} keys is not a fair share",
            sh.name
        );
    }

    // Every value reads back through the ambassador.
    let gets: String = (0..KEYS).map(|n| format!("GET {}\n", key(n))).collect();
    let values = through_ambassador(&ns, &gets);
    assert_eq!(values.len(), KEYS);
    for (n, v) in values.iter().enumerate() {
        assert_eq!(v, &format!("v{n}"), "{}", key(n));
    }

    // Every replica holds its primary's keys.
    for sh in &shards {
        let want = per_shard[&sh.index];
        for r in &sh.replicas {
            let ip = pod_ip(&ns, &r.name).await.unwrap();
            let addr = format!("{ip}:6379");
            ns.wait_for(&format!("{} has {want} keys", r.name), MINUTE, || {
                let addr = addr.clone();
                async move { (dbsize(&addr).await == want).then_some(()) }
            })
            .await;
        }
    }

    // Delete shard 0's primary: a replica is promoted, writes through the
    // ambassador resume, the old pod and the other replica follow the new
    // primary (the old pod never serves as a second primary), and no key of
    // the shard is lost.
    let victim = shards[0].clone();
    let old = victim.primary.clone().unwrap();
    let probe_key = (0..KEYS)
        .map(key)
        .find(|k| shard_of(&store, &ring, k).index == 0)
        .unwrap();
    kubectl_ok(&["-n", &ns.name, "delete", "pod", &old, "--wait=false"]);
    let deleted = Instant::now();
    ns.wait_for(
        "a write through the ambassador to shard 0",
        2 * MINUTE,
        || async {
            let r = try_through_ambassador(&ns, &format!("SET {probe_key} after\n"));
            (r.ok()? == ["OK"]).then_some(())
        },
    )
    .await;
    let unavailable = deleted.elapsed();
    eprintln!("shard 0 took writes again {unavailable:?} after its primary's pod was deleted");

    let api: Api<ShardedStore> = ns.api();
    let seen_as_primary = AtomicBool::new(false);
    let after = ns
        .wait_for(
            &format!("{old} back as a replica of the promoted one"),
            3 * MINUTE,
            || async {
                let s = api.get("cache").await.ok()?;
                let sh = s.status.as_ref()?.shards.first()?.clone();
                let heir = sh.primary.clone().filter(|p| *p != old)?;
                if let Some(ip) = pod_ip(&ns, &old).await
                    && let Ok(mut c) = Client::connect(&format!("{ip}:6379"), redis_opts()).await
                    && let Ok(i) = c.info(Some("replication")).await
                {
                    if i.get("role") == Some("master") {
                        seen_as_primary.store(true, Ordering::Relaxed);
                    }
                    let follows = i.get("master_host") == Some(dns(&ns, "cache", &heir).as_str())
                        && i.get("master_link_status") == Some("up");
                    let linked = sh.replicas.len() == 2 && sh.replicas.iter().all(|r| r.linked);
                    if follows && linked {
                        return Some(s);
                    }
                }
                None
            },
        )
        .await;
    assert!(
        !seen_as_primary.load(Ordering::Relaxed),
        "{old} came back as a primary"
    );
    let heir = after.status.as_ref().unwrap().shards[0]
        .primary
        .clone()
        .unwrap();
    assert!(
        victim.replicas.iter().any(|r| r.name == heir),
        "{heir} was not a replica of shard 0: {victim:?}"
    );
    // Both replicas now follow the promoted pod: INFO replication on each.
    assert_replication_healthy(&ns, &after).await;
    let sh0 = &after.status.as_ref().unwrap().shards[0];
    let addr = sh0.address.clone().unwrap();
    let mut c = Client::connect(&addr, redis_opts()).await.unwrap();
    let mut lost = 0;
    for n in 0..KEYS {
        let k = key(n);
        if shard_of(&store, &ring, &k).index == 0 && k != probe_key {
            let v = c.command(&["GET", &k]).await.unwrap();
            lost += usize::from(v.as_bytes().map(|b| &b[..]) != Some(format!("v{n}").as_bytes()));
        }
    }
    assert_eq!(lost, 0, "keys of shard 0 lost in the failover");
    let events = kubectl_ok(&["-n", &ns.name, "get", "events", "-o", "yaml"]);
    assert!(events.contains("FailedOver"), "no FailedOver event");
}

/// The memcached example with 3 shards: one pod each, no volumes, and
/// 10,000 keys through the ambassador in an app pod, each on the shard
/// twemproxy's hashing names (read from the shard directly) and on no
/// other, and every value read back through the ambassador.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_shards_serve_the_ambassador_where_twemproxy_places_keys() {
    let (ns, _op) = real_node_setup("sst-memcached").await;
    let mut spec: ShardedStore =
        serde_yaml::from_str(include_str!("../../examples/shardedstore-memcached.yaml")).unwrap();
    spec.spec.shards = 3;
    let api: Api<ShardedStore> = ns.api();
    api.create(&PostParams::default(), &spec).await.unwrap();
    let store = wait_placed(&ns, "sessions", 5 * MINUTE).await;
    let shards = store.status.as_ref().unwrap().shards.clone();
    assert_eq!(shards.len(), 3);
    let timeout = Duration::from_secs(2);
    let mut direct = BTreeMap::new();
    for (i, sh) in shards.iter().enumerate() {
        assert_eq!(sh.name, format!("shard-{i}"));
        assert_eq!(
            sh.primary.as_deref(),
            Some(format!("sessions-{i}-0").as_str())
        );
        assert!(sh.replicas.is_empty(), "{sh:?}");
        let mut c = MemcachedClient::connect(sh.address.as_deref().unwrap(), timeout)
            .await
            .unwrap();
        let v = c.version().await.unwrap();
        assert!(v.starts_with("1."), "{v}");
        direct.insert(sh.index, c);
    }
    let pvcs = kubectl_ok(&["-n", &ns.name, "get", "pvc", "-o", "name"]);
    assert_eq!(pvcs.trim(), "", "a cache keeps nothing on disk");

    let addr = app_with_ambassador(&ns, "sessions", "memcached").await;
    let mut amb = MemcachedClient::connect(&addr, timeout).await.unwrap();
    for n in 0..KEYS {
        amb.set(&format!("session:{n}"), &format!("v{n}"))
            .await
            .unwrap_or_else(|e| panic!("set session:{n} through the ambassador: {e}"));
    }
    let ring = ring(&store);
    let mut per_shard = BTreeMap::<i32, usize>::new();
    for n in 0..KEYS {
        let k = format!("session:{n}");
        let home = shard_of(&store, &ring, &k).index;
        *per_shard.entry(home).or_default() += 1;
        for (index, c) in direct.iter_mut() {
            let v = c.get(&k).await.unwrap();
            if *index == home {
                assert_eq!(v, Some(format!("v{n}")), "{k} on shard-{index}");
            } else {
                assert_eq!(v, None, "{k} also on shard-{index}, not only shard-{home}");
            }
        }
    }
    for (index, n) in &per_shard {
        assert!(
            *n > KEYS / 10,
            "shard-{index}: {n} keys is not a fair share"
        );
    }
    for n in 0..KEYS {
        let k = format!("session:{n}");
        assert_eq!(amb.get(&k).await.unwrap(), Some(format!("v{n}")), "{k}");
    }
}

/// A Redis store of one shard (a primary and one replica) with `config`,
/// no auth and no adapter, once placed.
async fn one_shard_redis(ns: &TestNs, name: &str, config: serde_json::Value) -> ShardedStore {
    let api: Api<ShardedStore> = ns.api();
    api.create(
        &PostParams::default(),
        &obj(json!({
            "apiVersion": "tessera.dev/v1alpha1", "kind": "ShardedStore",
            "metadata": {"name": name},
            "spec": {"engine": "redis", "shards": 1, "replicasPerShard": 1,
                     "config": config, "monitoring": {"enabled": false}}
        })),
    )
    .await
    .unwrap();
    wait_placed(ns, name, 5 * MINUTE).await
}

/// Persistence off: a primary whose Redis restarts comes back empty, as a
/// replica of the placeholder; its replica keeps the data, is promoted, and
/// the restarted pod resyncs from it instead of wiping it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_restarted_without_persistence_does_not_wipe_its_replica() {
    let (ns, _op) = real_node_setup("sst-nopersist").await;
    let api: Api<ShardedStore> = ns.api();
    let store = one_shard_redis(&ns, "volatile", json!({"appendonly": "no", "save": ""})).await;
    let sh = store.status.unwrap().shards[0].clone();
    let (old, heir) = (sh.primary.clone().unwrap(), sh.replicas[0].name.clone());
    let opts = || Options {
        timeout: Duration::from_secs(2),
        ..Options::default()
    };
    let addr = sh.address.clone().unwrap();
    let mut c = Client::connect(&addr, opts()).await.unwrap();
    for n in 0..1000 {
        c.command(&["SET", &format!("k{n}"), "v"]).await.unwrap();
    }
    let heir_addr = format!("{}:6379", pod_ip(&ns, &heir).await.unwrap());
    ns.wait_for(&format!("{heir} has the 1000 keys"), MINUTE, || async {
        let mut c = Client::connect(&heir_addr, opts()).await.ok()?;
        let n = c.command(&["DBSIZE"]).await.ok()?;
        (n == Value::Integer(1000)).then_some(())
    })
    .await;

    // Redis exits without saving; the kubelet restarts the container.
    let _ = c.command(&["SHUTDOWN", "NOSAVE"]).await;
    let after = ns
        .wait_for(
            &format!("{old} back as a replica of {heir}"),
            3 * MINUTE,
            || async {
                let s = api.get("volatile").await.ok()?;
                let sh = s.status.as_ref()?.shards.first()?.clone();
                let ip = pod_ip(&ns, &old).await?;
                let mut c = Client::connect(&format!("{ip}:6379"), opts()).await.ok()?;
                let i = c.info(Some("replication")).await.ok()?;
                (sh.primary.as_deref() == Some(heir.as_str())
                    && i.get("master_host") == Some(dns(&ns, "volatile", &heir).as_str())
                    && i.get("master_link_status") == Some("up"))
                .then_some(s)
            },
        )
        .await;
    let sh = &after.status.as_ref().unwrap().shards[0];
    let mut c = Client::connect(sh.address.as_deref().unwrap(), opts())
        .await
        .unwrap();
    assert_eq!(
        c.command(&["DBSIZE"]).await.unwrap(),
        Value::Integer(1000),
        "the promoted replica lost keys"
    );
    let old_addr = format!("{}:6379", pod_ip(&ns, &old).await.unwrap());
    ns.wait_for(&format!("{old} resynced the 1000 keys"), MINUTE, || async {
        let mut c = Client::connect(&old_addr, opts()).await.ok()?;
        let n = c.command(&["DBSIZE"]).await.ok()?;
        (n == Value::Integer(1000)).then_some(())
    })
    .await;
}

/// A config change rolls through a Redis shard under a steady writer:
/// the replica first, then the primary hands its role over (`FAILOVER`)
/// and is replaced as a replica; no acknowledged write is lost, and every
/// pod runs the new setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_rolls_the_replica_first_and_hands_the_primary_over_without_losing_writes()
{
    let (ns, _op) = real_node_setup("sst-roll").await;
    let api: Api<ShardedStore> = ns.api();
    let placed = one_shard_redis(&ns, "rolling", json!({"maxmemory-policy": "allkeys-lru"})).await;
    let (old_primary, _) = first_primary(&placed).unwrap();

    let writer = Writer::start(&ns, "rolling");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let changed_at = writer.since_start();
    api.patch(
        "rolling",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"config": {"maxmemory-policy": "volatile-lru"}}})),
    )
    .await
    .unwrap();
    // Ready again only once every pod runs the new revision.
    let rolled = wait_placed(&ns, "rolling", 6 * MINUTE).await;
    let written = writer.stop_once_writing(changed_at).await;
    eprintln!(
        "roll under a writer: {} writes acknowledged, {} failed, longest gap {:?}",
        written.acked.len(),
        written.failed,
        written.gap
    );
    assert_eq!(
        lost_writes(&ns, "rolling", &written.acked).await,
        0,
        "acknowledged writes lost in the roll"
    );
    assert!(
        written.gap < Duration::from_secs(20),
        "writes stopped for {:?} during the roll",
        written.gap
    );
    let (new_primary, _) = first_primary(&rolled).unwrap();
    assert_ne!(new_primary, old_primary, "the primary was not handed over");
    let sh = &rolled.status.as_ref().unwrap().shards[0];
    for pod in std::iter::once(&new_primary).chain(sh.replicas.iter().map(|r| &r.name)) {
        let ip = pod_ip(&ns, pod).await.unwrap();
        let mut c = Client::connect(&format!("{ip}:6379"), loss_opts())
            .await
            .unwrap();
        let v = c
            .command(&["CONFIG", "GET", "maxmemory-policy"])
            .await
            .unwrap();
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Bulk("maxmemory-policy".into()),
                Value::Bulk("volatile-lru".into())
            ]),
            "{pod}"
        );
    }
    let events = kubectl_ok(&["-n", &ns.name, "get", "events", "-o", "yaml"]);
    assert!(events.contains("reason: Switchover"), "no Switchover event");
    assert_eq!(
        events.matches("reason: MemberReplaced").count(),
        2,
        "one MemberReplaced event per pod"
    );
}

/// `make bench-shardedstore`: redis-benchmark in the app pod, through the
/// ambassador (keys spread over the 3 shards) and straight to one primary,
/// without and with pipelining. Prints the lines for docs/benchmarks.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: make bench-shardedstore"]
async fn bench_ambassador_against_direct_primaries() {
    let (ns, _op) = real_node_setup("sst-bench").await;
    let store = redis_example(&ns, 1).await;
    app_with_ambassador(&ns, "cache", "redis").await;
    let primary = store.status.unwrap().shards[0].address.clone().unwrap();
    let (host, port) = primary.split_once(':').unwrap();
    for pipeline in ["1", "16"] {
        for (what, target) in [
            ("ambassador", "-h 127.0.0.1 -p 6379".to_string()),
            ("direct, one primary", format!("-h {host} -p {port}")),
        ] {
            let run = kubectl(&[
                "-n",
                &ns.name,
                "exec",
                "app",
                "-c",
                "app",
                "--",
                "sh",
                "-c",
                &format!(
                    "redis-benchmark {target} -a \"$REDISCLI_AUTH\" -t set,get -n 100000 \
                     -c 50 -r 100000 -P {pipeline} -q 2>&1"
                ),
            ]);
            let out = String::from_utf8_lossy(&run.stdout);
            if !run.status.success() {
                // Reported, not fatal: one failed configuration should not
                // hide the others' numbers.
                eprintln!("BENCH -P {pipeline} {what}: FAILED ({}): {out}", run.status);
            }
            // redis-benchmark redraws its progress with \r: the summary is
            // the last piece of each line.
            for line in out.lines().filter_map(|l| l.rsplit('\r').next()) {
                if line.contains("requests per second") {
                    eprintln!("BENCH -P {pipeline} {what}: {}", line.trim());
                }
            }
        }
    }
}

/// A writer in the test process: `SET w:<seq> <seq>` to shard 0's primary
/// as the status names it (asked again after each failed write), each
/// sequence number tried once, bounded to 5 minutes.
struct Writer {
    stop: std::sync::Arc<AtomicBool>,
    /// Milliseconds since `started` of the last acknowledged and the last
    /// failed write (0: none yet).
    last_ack: std::sync::Arc<std::sync::atomic::AtomicU64>,
    last_fail: std::sync::Arc<std::sync::atomic::AtomicU64>,
    started: Instant,
    task: tokio::task::JoinHandle<(Vec<(u64, Duration)>, usize)>,
}

/// What a writer saw: acknowledged writes (sequence, when), how many
/// failed, and the longest time between two acknowledged writes.
struct Written {
    acked: Vec<(u64, Duration)>,
    failed: usize,
    gap: Duration,
}

fn first_primary(s: &ShardedStore) -> Option<(String, String)> {
    let sh = s.status.as_ref()?.shards.first()?;
    Some((sh.primary.clone()?, sh.address.clone()?))
}

fn loss_opts() -> Options {
    Options {
        timeout: Duration::from_secs(1),
        ..Options::default()
    }
}

impl Writer {
    fn start(ns: &TestNs, store: &str) -> Writer {
        use std::sync::Arc;
        use std::sync::atomic::AtomicU64;
        let api: Api<ShardedStore> = ns.api();
        let stop = Arc::new(AtomicBool::new(false));
        let (last_ack, last_fail) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let started = Instant::now();
        let task = {
            let (stop, last_ack, last_fail) = (stop.clone(), last_ack.clone(), last_fail.clone());
            let store = store.to_string();
            tokio::spawn(async move {
                let mut acked: Vec<(u64, Duration)> = Vec::new();
                let mut failed = 0;
                let mut client: Option<Client> = None;
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) && started.elapsed() < 5 * MINUTE {
                    if client.is_none() {
                        let addr = api.get(&store).await.ok().and_then(|s| first_primary(&s));
                        if let Some((_, addr)) = addr {
                            client = Client::connect(&addr, loss_opts()).await.ok();
                        }
                        if client.is_none() {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    }
                    seq += 1;
                    let c = client.as_mut().unwrap();
                    let r = c
                        .command(&["SET", &format!("w:{seq}"), &seq.to_string()])
                        .await;
                    let now = started.elapsed();
                    let ms = now.as_millis() as u64;
                    match r {
                        Ok(_) => {
                            acked.push((seq, now));
                            last_ack.store(ms, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed += 1;
                            last_fail.store(ms, Ordering::Relaxed);
                            client = None;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                (acked, failed)
            })
        };
        Writer {
            stop,
            last_ack,
            last_fail,
            started,
            task,
        }
    }

    fn since_start(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until writes have succeeded for 3 s in a row after `after`
    /// (time since the writer started), then stops the writer.
    async fn stop_once_writing(self, after: Duration) -> Written {
        let deadline = Instant::now() + 3 * MINUTE;
        loop {
            let (ack, fail) = (
                self.last_ack.load(Ordering::Relaxed),
                self.last_fail.load(Ordering::Relaxed),
            );
            let calm_since = fail.max(after.as_millis() as u64);
            if ack > calm_since + 3000 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.stop.store(true, Ordering::Relaxed);
        let (acked, failed) = self.task.await.unwrap();
        let gap = acked
            .windows(2)
            .map(|w| w[1].1.saturating_sub(w[0].1))
            .max()
            .unwrap_or_default();
        Written { acked, failed, gap }
    }
}

/// How many of `acked` the store's shard 0 primary does not hold.
async fn lost_writes(ns: &TestNs, store: &str, acked: &[(u64, Duration)]) -> usize {
    let after = wait_placed(ns, store, 3 * MINUTE).await;
    let (_, addr) = first_primary(&after).unwrap();
    let mut c = Client::connect(&addr, loss_opts()).await.unwrap();
    let mut lost = 0;
    for chunk in acked.chunks(500) {
        let mut args = vec!["MGET".to_string()];
        args.extend(chunk.iter().map(|(s, _)| format!("w:{s}")));
        let Value::Array(values) = c.command(&args).await.unwrap() else {
            panic!("MGET is not an array");
        };
        for ((seq, _), v) in chunk.iter().zip(values) {
            lost += usize::from(v.as_bytes().map(|b| &b[..]) != Some(seq.to_string().as_bytes()));
        }
    }
    lost
}

/// One failover under a steady writer: `fail` is started after 3 s of
/// writes; the writer stops once writes have succeeded for 3 s again, and
/// every acknowledged key is then read from the new primary. Returns the
/// writes, how many acknowledged ones were lost, and the primaries.
async fn failover_cost(ns: &TestNs, store: &str, fail: &str) -> (Written, usize, String, String) {
    let api: Api<ShardedStore> = ns.api();
    let writer = Writer::start(ns, store);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = api.get(store).await.unwrap();
    let (old, old_addr) = first_primary(&before).unwrap();
    let failed_at = writer.since_start();
    if fail == "delete" {
        kubectl_ok(&["-n", &ns.name, "delete", "pod", &old, "--wait=false"]);
    } else {
        // Exits at once, without waiting for its replicas to catch up: the
        // closest a client can come to a crash.
        let mut c = Client::connect(&old_addr, loss_opts()).await.unwrap();
        // Success is the connection closing: SHUTDOWN never replies OK.
        match c.command(&["SHUTDOWN", "NOSAVE", "NOW"]).await {
            Ok(v) => panic!("SHUTDOWN NOSAVE NOW on {old}: {v:?}"),
            Err(e) if e.label() == "server_error" => panic!("SHUTDOWN NOSAVE NOW on {old}: {e}"),
            Err(_) => {}
        }
    }
    let new = ns
        .wait_for("another primary", 3 * MINUTE, || async {
            let (p, _) = first_primary(&api.get(store).await.ok()?)?;
            (p != old).then_some(p)
        })
        .await;
    let written = writer.stop_once_writing(failed_at).await;
    assert!(
        written.acked.iter().any(|(_, t)| *t > failed_at),
        "no write was acknowledged after the failure"
    );
    let lost = lost_writes(ns, store, &written.acked).await;
    (written, lost, old, new)
}

/// `make bench-shardedstore`: acknowledged writes lost when a shard's
/// primary fails under a steady writer, with `min-replicas-to-write` unset
/// and set to 1, for a deleted pod and for a primary that exits without
/// waiting for its replica. Prints the lines for docs/benchmarks.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: make bench-shardedstore"]
async fn bench_writes_lost_in_a_failover() {
    let (ns, _op) = real_node_setup("sst-loss").await;
    for (name, min_replicas) in [("plain", None), ("guarded", Some("1"))] {
        let mut config = json!({});
        if let Some(n) = min_replicas {
            config["min-replicas-to-write"] = json!(n);
        }
        one_shard_redis(&ns, name, config).await;
        for fail in ["delete", "SHUTDOWN NOSAVE NOW"] {
            let (w, lost, from, to) = failover_cost(&ns, name, fail).await;
            eprintln!(
                "BENCH min-replicas-to-write={} {fail} ({from} -> {to}): {} writes acknowledged, {} failed, {lost} lost, longest gap {:?}",
                min_replicas.unwrap_or("unset"),
                w.acked.len(),
                w.failed,
                w.gap
            );
        }
    }
}
