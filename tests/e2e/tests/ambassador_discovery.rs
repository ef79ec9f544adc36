//! `tessera-ambassador --store <ns>/<name>` against the real API server: the
//! ambassador runs as a child process with a ServiceAccount token whose Role
//! grants only get/list/watch on that one ShardedStore, routes to real
//! redis-server shards on 127.0.0.1 that the test publishes in the store's
//! status, and follows status changes without a restart.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig, NamedAuthInfo};
use kube::{Client, Config};
use serde_json::{Value, json};
use tessera_ambassador::ring::{Distribution, HashFn, Member, Ring};
use tessera_api::ShardedStore;
use tessera_e2e::{TestEnv, install_crds, target};
use tessera_testing::{RedisServer, exchange, free_ports};

const STORE: &str = "cache";

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("test object")
}

/// The tessera-ambassador binary: `TESSERA_AMBASSADOR_BIN` when set, else
/// built (or found up to date) by cargo, which reports where it put it.
///
/// Built for the whole workspace (`--workspace --bin`), not `-p`: `-p`
/// unifies only the ambassador's features, so its dependencies would
/// compile again (over a minute, cold) instead of reusing the binary that
/// `make images` built.
fn ambassador_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TESSERA_AMBASSADOR_BIN") {
        return PathBuf::from(bin);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    // A test runs with the variables cargo sets for it (CARGO_MANIFEST_DIR,
    // CARGO_PKG_NAME...). ring's build script asks cargo to rerun it when
    // they change, so a nested cargo that inherits them rebuilds ring and
    // everything above it, and the next `cargo test` rebuilds them back.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || matches!(
                key,
                "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
            )
        {
            build.env_remove(key);
        }
    }
    let out = build
        .current_dir(tessera_e2e::repo_root())
        .args([
            "build",
            "--locked",
            "--workspace",
            "--bin",
            "tessera-ambassador",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build --bin tessera-ambassador");
    assert!(
        out.status.success(),
        "cargo build --bin tessera-ambassador failed"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["target"]["name"] == "tessera-ambassador")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no tessera-ambassador executable")
}

/// The ambassador child, killed when the test ends (also on panic).
struct Ambassador {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Ambassador {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Ambassador {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `done` for up to 30 s, failing with the log if the ambassador
    /// exits or `done` never holds.
    fn wait(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(self) {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{what}: not within 30 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Still the process the test started: it was never restarted.
    fn assert_running(&mut self) {
        let status = self.child.try_wait().expect("try_wait");
        assert!(
            status.is_none(),
            "the ambassador exited ({status:?}); log:\n{}",
            self.log()
        );
    }
}

/// One RESP command to 127.0.0.1:`port`, the raw reply.
fn resp(port: u16, args: &[&str]) -> String {
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    exchange(port, req.as_bytes(), Duration::from_secs(5), |t| {
        t.ends_with("\r\n")
            && (!t.starts_with('$') || t.starts_with("$-1") || t.lines().count() >= 2)
    })
    .unwrap_or_else(|e| panic!("{args:?} to 127.0.0.1:{port}: {e}"))
}

fn bulk(v: &str) -> String {
    format!("${}\r\n{v}\r\n", v.len())
}

fn ring(names: &[&str]) -> Ring {
    let members: Vec<Member> = names
        .iter()
        .map(|n| Member {
            identity: (*n).to_owned(),
            weight: 1,
            live: true,
        })
        .collect();
    Ring::new(HashFn::Fnv1a64, Distribution::Ketama, None, &members)
}

/// The status the operator would publish: shard `name` at `redis`.
fn status(shards: &[(&str, &RedisServer)]) -> Value {
    let shards: Vec<Value> = shards
        .iter()
        .enumerate()
        .map(|(i, (name, r))| {
            json!({"index": i, "name": name, "primary": format!("{name}-0"),
                   "address": r.addr(), "readyReplicas": 0})
        })
        .collect();
    json!({"status": {"shards": shards, "readyShards": shards.len()}})
}

/// SETs keys through the ambassador, 20 for each shard, and checks on every
/// shard directly that each key is on the shard the ring names and on no other.
fn check_placement(amb: u16, shards: &[(&str, &RedisServer)], all: &[&RedisServer], tag: &str) {
    let names: Vec<&str> = shards.iter().map(|(n, _)| *n).collect();
    let ring = ring(&names);
    let mut per_shard = vec![0; shards.len()];
    for i in 0..20_000 {
        if per_shard.iter().all(|n| *n >= 20) {
            break;
        }
        let key = format!("{tag}:{i}");
        let slot = ring.route(key.as_bytes()).expect("a route");
        if per_shard[slot] >= 20 {
            continue;
        }
        per_shard[slot] += 1;
        let owner = shards[slot].1;
        assert_eq!(resp(amb, &["SET", &key, tag]), "+OK\r\n", "SET {key}");
        assert_eq!(resp(amb, &["GET", &key]), bulk(tag), "GET {key}");
        for r in all {
            let got = r.command(&format!("GET {key}")).expect("GET on a shard");
            if r.port == owner.port {
                assert_eq!(got, bulk(tag), "{key} is not on its shard {}", r.addr());
            } else {
                assert_eq!(got, "$-1\r\n", "{key} is also on {}", r.addr());
            }
        }
    }
    assert!(
        per_shard.iter().all(|n| *n >= 20),
        "the ring gives some shard too few of 20000 keys: {per_shard:?}"
    );
}

/// Repeats SET `key` through the ambassador until it lands on `on`.
fn wait_for_route(amb: &mut Ambassador, key: &str, on: &RedisServer, what: &str) {
    amb.wait(&format!("{what}: {key} to reach {}", on.addr()), |a| {
        assert_eq!(resp(a.port, &["SET", key, "probe"]), "+OK\r\n");
        on.command(&format!("GET {key}")).unwrap() == bulk("probe")
    });
}

/// A kubeconfig for the target cluster that authenticates with `token` only.
fn token_kubeconfig(token: &str, namespace: &str, dir: &Path) -> PathBuf {
    let mut merged: Option<Kubeconfig> = None;
    for path in target().kubeconfig.split(':').filter(|p| !p.is_empty()) {
        let kc = Kubeconfig::read_from(path).expect("read the target kubeconfig");
        merged = Some(match merged {
            None => kc,
            Some(m) => m.merge(kc).expect("merge kubeconfigs"),
        });
    }
    let mut kc = merged.expect("a kubeconfig");
    kc.auth_infos = vec![NamedAuthInfo {
        name: "ambassador".into(),
        auth_info: Some(AuthInfo {
            token: Some(token.to_owned().into()),
            ..Default::default()
        }),
        other: Default::default(),
    }];
    for ctx in &mut kc.contexts {
        if let Some(c) = ctx.context.as_mut() {
            c.user = Some("ambassador".into());
            c.namespace = Some(namespace.into());
        }
    }
    let path = dir.join("ambassador.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&kc).expect("kubeconfig yaml")).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambassador_routes_by_a_sharded_store_with_a_least_privilege_role() {
    let env = TestEnv::new("ambassador-discovery").await;
    install_crds(&env.client).await.expect("install crds/");
    let ns = env.namespace.clone();
    let pp = PostParams::default();
    let stores: Api<ShardedStore> = env.api();

    // The store, as the user writes it; the operator has not published shards yet.
    stores
        .create(
            &pp,
            &obj(json!({
                "apiVersion": "tessera.dev/v1alpha1", "kind": "ShardedStore",
                "metadata": {"name": STORE},
                "spec": {"engine": "redis", "shards": 3,
                         "hashing": {"function": "fnv1a_64", "distribution": "ketama"}}
            })),
        )
        .await
        .expect("create the ShardedStore");

    // Least privilege: get/list/watch on this one ShardedStore, nothing else.
    let sas: Api<ServiceAccount> = env.api();
    sas.create(&pp, &obj(json!({"metadata": {"name": "ambassador"}})))
        .await
        .unwrap();
    let roles: Api<Role> = env.api();
    roles
        .create(
            &pp,
            &obj(json!({
                "metadata": {"name": "ambassador"},
                "rules": [{"apiGroups": ["tessera.dev"], "resources": ["shardedstores"],
                           "resourceNames": [STORE], "verbs": ["get", "list", "watch"]}]
            })),
        )
        .await
        .unwrap();
    let bindings: Api<RoleBinding> = env.api();
    bindings
        .create(&pp, &obj(json!({
            "metadata": {"name": "ambassador"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ambassador"},
            "subjects": [{"kind": "ServiceAccount", "name": "ambassador", "namespace": ns}]
        })))
        .await
        .unwrap();
    let token = sas
        .create_token_request(
            "ambassador",
            &pp,
            &TokenRequest {
                spec: TokenRequestSpec {
                    expiration_seconds: Some(3600),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("TokenRequest")
        .status
        .expect("token status")
        .token;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = token_kubeconfig(&token, &ns, dir.path());

    // The token, through the kubeconfig the ambassador gets, reads the store
    // (once RBAC has caught up) and nothing else.
    let narrow = Client::try_from(
        Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig).unwrap(),
            &KubeConfigOptions::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let as_ambassador: Api<ShardedStore> = Api::namespaced(narrow.clone(), &ns);
    env.wait_until(
        Duration::from_secs(30),
        "the token to get the store",
        || {
            let api = as_ambassador.clone();
            async move { Ok(api.get(STORE).await.map(Some)?) }
        },
    )
    .await
    .unwrap();
    let one = ListParams::default().fields(&format!("metadata.name={STORE}"));
    assert_eq!(
        as_ambassador
            .list(&one)
            .await
            .expect("list by name")
            .items
            .len(),
        1
    );
    let forbidden = |r: Result<(), kube::Error>, what: &str| match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what} must be forbidden, got {other:?}"),
    };
    forbidden(
        as_ambassador.list(&ListParams::default()).await.map(|_| ()),
        "listing every ShardedStore",
    );
    forbidden(
        as_ambassador.get("other").await.map(|_| ()),
        "get another ShardedStore",
    );
    forbidden(
        as_ambassador
            .patch_status(
                STORE,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {}})),
            )
            .await
            .map(|_| ()),
        "writing the store's status",
    );
    forbidden(
        Api::<ConfigMap>::namespaced(narrow, &ns)
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        "listing ConfigMaps",
    );

    // Real shards; the fifth stands in for a new primary after a failover.
    let redis: Vec<RedisServer> = (0..5)
        .map(|_| RedisServer::start().expect("redis-server"))
        .collect();
    let all: Vec<&RedisServer> = redis.iter().collect();
    let three = [
        ("cache-0", &redis[0]),
        ("cache-1", &redis[1]),
        ("cache-2", &redis[2]),
    ];
    stores
        .patch_status(
            STORE,
            &PatchParams::default(),
            &Patch::Merge(status(&three)),
        )
        .await
        .expect("publish three shards");

    let port = free_ports(1)[0];
    let log = dir.path().join("ambassador.log");
    let child = Command::new(ambassador_bin())
        .args([
            "--store",
            &format!("{ns}/{STORE}"),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--timeout-ms",
            "2000",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("TESSERA_LOG_LEVEL", "info")
        .env_remove("TESSERA_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start tessera-ambassador");
    let mut amb = Ambassador { child, port, log };
    amb.wait("the ambassador to listen", |a| {
        std::net::TcpStream::connect(("127.0.0.1", a.port)).is_ok()
    });
    check_placement(port, &three, &all, "three");

    // The operator adds a shard: keys the new ring gives it go there.
    let four = [three[0], three[1], three[2], ("cache-3", &redis[3])];
    stores
        .patch_status(STORE, &PatchParams::default(), &Patch::Merge(status(&four)))
        .await
        .expect("publish four shards");
    let ring4 = ring(&["cache-0", "cache-1", "cache-2", "cache-3"]);
    let probe = (0..20_000)
        .map(|i| format!("probe:{i}"))
        .find(|k| ring4.route(k.as_bytes()) == Some(3))
        .unwrap();
    wait_for_route(&mut amb, &probe, &redis[3], "after adding cache-3");
    check_placement(port, &four, &all, "four");

    // cache-1's primary moves: same ring name, new address; its keys follow.
    let moved = [four[0], ("cache-1", &redis[4]), four[2], four[3]];
    stores
        .patch_status(
            STORE,
            &PatchParams::default(),
            &Patch::Merge(status(&moved)),
        )
        .await
        .expect("move cache-1");
    let probe = (0..20_000)
        .map(|i| format!("failover:{i}"))
        .find(|k| ring4.route(k.as_bytes()) == Some(1))
        .unwrap();
    wait_for_route(&mut amb, &probe, &redis[4], "after moving cache-1");
    check_placement(port, &moved, &all, "moved");

    // A status the ambassador cannot route by (a shard without an address)
    // is refused with a reason, and the last good shards stay in use.
    let mut broken = status(&moved);
    broken["status"]["shards"][2]
        .as_object_mut()
        .unwrap()
        .remove("address");
    stores
        .patch_status(STORE, &PatchParams::default(), &Patch::Merge(broken))
        .await
        .expect("publish a shard without an address");
    amb.wait("the unroutable status to be reported", |a| {
        a.log().contains("cache-2) has no address yet")
    });
    check_placement(port, &moved, &all, "kept");

    // The one narrow Role sufficed: no request was refused, no restart.
    amb.assert_running();
    // A refusal reads "Forbidden" or "Unauthorized" (the status reason kube
    // prints with the code). The bare code is not searched for: ports,
    // timestamps and the namespace's random suffix contain "403" by chance.
    let log = amb.log().replace(&ns, "<namespace>");
    for refusal in ["orbidden", "nauthorized"] {
        assert!(
            !log.contains(refusal),
            "the ambassador was refused ({refusal}):\n{log}"
        );
    }
    assert!(log.contains("watching ShardedStore"), "{log}");
}
