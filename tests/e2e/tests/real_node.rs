//! The real node of hack/controlplane.sh: pods that actually run, cluster
//! DNS, ClusterIP Services, exec/logs/port-forward through the API server,
//! the kwok nodes kept apart by their taint, and the guard that keeps pod
//! traffic on this machine, checked by inspection only.
#![forbid(unsafe_code)]

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use tessera_e2e::{KWOK_TAINT_KEY, Placement, TestEnv, connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE: &str = "tessera-node";

/// The bridge and its address, as hack/controlplane.sh sets them up.
fn bridge() -> (String, String) {
    let name = std::env::var("TESSERA_NODE_BRIDGE").unwrap_or_else(|_| "tessera0".into());
    let cidr = std::env::var("TESSERA_NODE_CIDR").unwrap_or_else(|_| "10.89.0.0/24".into());
    let net = cidr.split('/').next().unwrap();
    let (prefix, last) = net.rsplit_once('.').unwrap();
    let ip = format!("{prefix}.{}", last.parse::<u8>().unwrap() + 1);
    (name, ip)
}

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("test object")
}

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The output of a command run on this machine (the node's host side),
/// which must succeed.
fn host(cmd: &[&str]) -> String {
    let out = std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", cmd[0]));
    ok(out, &cmd.join(" "))
}

/// A Redis pod as Tessera runs its engines: non-root, read-only root
/// filesystem, no capabilities, RuntimeDefault seccomp.
fn redis_pod(name: &str) -> Pod {
    obj(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": tessera_e2e::redis_pod_spec(1),
    }))
}

fn exec(env: &TestEnv, pod: &str, cmd: &[&str]) -> String {
    let mut args = vec!["exec", pod, "-c", "redis", "--"];
    args.extend_from_slice(cmd);
    ok(env.kubectl(&args), &format!("kubectl exec {pod} {cmd:?}"))
}

#[tokio::test]
async fn kwok_nodes_are_tainted_and_the_real_node_is_not() {
    let (client, _) = connect().await;
    let nodes: Api<Node> = Api::all(client);
    let real = nodes.get(NODE).await.expect("the real node is registered");
    let ready = real
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    assert!(ready, "{NODE} is Ready");
    let taints = real.spec.and_then(|s| s.taints).unwrap_or_default();
    assert!(taints.is_empty(), "{NODE} has no taints: {taints:?}");
    let kwok = nodes
        .list(&ListParams::default().labels("type=kwok"))
        .await
        .unwrap();
    assert!(!kwok.items.is_empty(), "kwok nodes exist for benchmarks");
    for n in kwok.items {
        let taints = n.spec.and_then(|s| s.taints).unwrap_or_default();
        assert!(
            taints
                .iter()
                .any(|t| t.key == KWOK_TAINT_KEY && t.effect == "NoSchedule"),
            "kwok node {:?} carries {KWOK_TAINT_KEY}: {taints:?}",
            n.metadata.name
        );
    }
}

#[tokio::test]
async fn pods_run_resolve_names_and_reach_services() {
    let env = TestEnv::placed("real-node", Placement::RealNode).await;
    let pods: Api<Pod> = env.api();
    for name in ["redis-a", "redis-b"] {
        pods.create(&PostParams::default(), &redis_pod(name))
            .await
            .expect("create pod");
    }
    let svc: Service = obj(json!({
        "metadata": {"name": "redis-a"},
        "spec": {"selector": {"app": "redis-a"}, "ports": [{"port": 6379, "targetPort": "redis"}]}
    }));
    let svc = env
        .api::<Service>()
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service");
    let cluster_ip = svc.spec.unwrap().cluster_ip.unwrap();
    for name in ["redis-a", "redis-b"] {
        let pod = env
            .wait_for(
                &pods,
                name,
                Duration::from_secs(90),
                "to be Ready on the real node",
                |p: Option<&Pod>| {
                    p.and_then(|p| p.status.as_ref())
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            pod.spec.unwrap().node_name.as_deref(),
            Some(NODE),
            "{name} runs on the real node"
        );
    }

    // The engine really runs: its log, and an answer through exec.
    let logs = ok(env.kubectl(&["logs", "redis-a"]), "kubectl logs");
    assert!(logs.contains("Ready to accept connections"), "{logs}");
    assert_eq!(exec(&env, "redis-a", &["redis-cli", "ping"]).trim(), "PONG");

    // Cluster DNS: a Service name resolves to its ClusterIP, and kube-proxy
    // carries a connection from another pod to it.
    let fqdn = format!("redis-a.{}.svc.cluster.local", env.namespace);
    let out = exec(&env, "redis-b", &["getent", "hosts", &fqdn]);
    assert!(
        out.starts_with(&cluster_ip),
        "{fqdn} -> {cluster_ip}: {out}"
    );
    let out = exec(&env, "redis-b", &["redis-cli", "-h", "redis-a", "ping"]);
    assert_eq!(out.trim(), "PONG", "through the Service's short name");

    // port-forward through the API server and the kubelet.
    let mut child = tokio::process::Command::new(&tessera_e2e::target().kubectl)
        .args(["-n", &env.namespace, "port-forward", "pod/redis-a", ":6379"])
        .env("KUBECONFIG", &tessera_e2e::target().kubeconfig)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl port-forward");
    let mut stdout = child.stdout.take().unwrap();
    let mut banner = String::new();
    let port = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 256];
        loop {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "port-forward exited: {banner}");
            banner.push_str(&String::from_utf8_lossy(&buf[..n]));
            // "Forwarding from 127.0.0.1:PORT -> 6379"
            if let Some(p) = banner
                .split("127.0.0.1:")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|p| p.parse::<u16>().ok())
            {
                return p;
            }
        }
    })
    .await
    .expect("port-forward announces its port");
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    conn.write_all(b"PING\r\n").await.unwrap();
    let mut reply = [0u8; 7];
    conn.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"+PONG\r\n");
    drop(conn);
    child.kill().await.ok();

    // The guard, by inspection: no default route in pods, only the service
    // CIDR besides the pod subnet; the only resolver is cluster DNS; names
    // outside the cluster do not resolve (CoreDNS has no upstream).
    let routes = exec(&env, "redis-a", &["cat", "/proc/net/route"]);
    let destinations: Vec<&str> = routes
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(
        !destinations.contains(&"00000000"),
        "no default route in the pod:\n{routes}"
    );
    // 10.0.0.0/24 in /proc/net/route's little-endian hex.
    assert!(
        destinations.contains(&"0000000A"),
        "a route to the service CIDR:\n{routes}"
    );
    let resolv = exec(&env, "redis-a", &["cat", "/etc/resolv.conf"]);
    let servers: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .collect();
    let (bridge, bridge_ip) = bridge();
    assert_eq!(servers, [bridge_ip.as_str()], "{resolv}");
    let outside = env.kubectl(&[
        "exec",
        "redis-a",
        "-c",
        "redis",
        "--",
        "getent",
        "hosts",
        "tessera-outside.example",
    ]);
    assert!(
        !outside.status.success(),
        "a name outside the cluster must not resolve"
    );
    let rules = host(&["iptables", "-w", "-t", "mangle", "-S"]);
    assert!(
        rules.contains("-A FORWARD -j TESSERA-NODE-GUARD"),
        "the guard chain is hooked into FORWARD:\n{rules}"
    );
    assert!(
        rules.contains(&format!("-A TESSERA-NODE-GUARD -i {bridge} ! -o {bridge}"))
            && rules.contains("-j DROP"),
        "the guard drops pod traffic leaving the bridge:\n{rules}"
    );
    let host_routes = host(&["ip", "-4", "route", "show", "dev", &bridge]);
    assert!(
        !host_routes.contains("default"),
        "no default route points into the bridge: {host_routes}"
    );
    // The kwok nodes' fake pod IPs: nothing is there, so nothing may leave
    // the machine for them (hack/controlplane/node.sh, KWOK_POD_CIDR).
    let kwok = host(&["ip", "-4", "route", "show", "10.244.0.0/16"]);
    assert!(
        kwok.trim() == "unreachable 10.244.0.0/16",
        "a kwok pod IP must be unreachable from the host: {kwok}"
    );
}

/// `hack/controlplane.sh up` with a state folder of its own and `env`
/// overrides; returns (success, stderr).
fn controlplane_up(state: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
    let out = std::process::Command::new(tessera_e2e::repo_root().join("hack/controlplane.sh"))
        .arg("up")
        .env("TESSERA_CONTROLPLANE_DIR", state)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run hack/controlplane.sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bridge_address_already_taken_is_refused_before_anything_starts() {
    let state = tempfile_dir("taken");
    // 127.0.0.1 is on lo: the node's bridge address must be its own.
    assert_up_refused(
        &state,
        &[("TESSERA_NODE_CIDR", "127.0.0.0/24")],
        &[
            "bridge address 127.0.0.1 is already on interface lo",
            "TESSERA_NODE_CIDR",
        ],
    );
}

#[test]
fn a_taken_api_relay_port_is_refused_before_anything_starts() {
    let state = tempfile_dir("api-port");
    // Listening on every address takes the port on the bridge's too.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").expect("a free port");
    let port = taken.local_addr().unwrap().port().to_string();
    // A subnet of its own, so that only the port is in the way.
    assert_up_refused(
        &state,
        &[
            ("TESSERA_NODE_CIDR", "10.201.0.0/24"),
            ("TESSERA_NODE_API_PORT", &port),
        ],
        &[
            &format!("TCP port {port} on 10.201.0.1 is taken"),
            "TESSERA_NODE_API_PORT",
        ],
    );
}

#[test]
fn udp_53_taken_on_the_bridge_address_is_refused_before_anything_starts() {
    let state = tempfile_dir("dns-port");
    // The address of a subnet of its own, which no interface has yet:
    // IP_FREEBIND lets a socket hold it as another DNS server would.
    let holder = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    holder.set_freebind_v4(true).unwrap();
    holder
        .bind(
            &"10.202.0.1:53"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .expect("bind 10.202.0.1:53");
    assert_up_refused(
        &state,
        &[("TESSERA_NODE_CIDR", "10.202.0.0/24")],
        &["UDP port 53 on 10.202.0.1 is taken", "cluster DNS"],
    );
    drop(holder);
}

#[test]
fn a_missing_debian_package_is_named_before_anything_starts() {
    let state = tempfile_dir("package");
    // A dpkg-query that reports containerd as not installed, first on PATH.
    let fake = tempfile::tempdir().unwrap();
    let script = fake.path().join("dpkg-query");
    std::fs::write(
        &script,
        "#!/bin/sh\nfor a; do :; done\n[ \"$a\" = containerd ] && exit 1\nexec /usr/bin/dpkg-query \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        fake.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    assert_up_refused(
        &state,
        &[("PATH", &path), ("TESSERA_NODE_CIDR", "10.203.0.0/24")],
        &[
            "Debian packages missing for the real node: containerd",
            "hack/install-test-deps.sh",
        ],
    );
}

/// An image that cannot be built (here: its Debian mirror refuses
/// connections) names itself and shows the end of its log, and leaves no
/// archive that `load` would import.
#[test]
fn a_failed_image_build_names_the_image_and_shows_its_log() {
    let cache = tempfile::tempdir().unwrap();
    let sources = cache.path().join("unreachable.sources");
    std::fs::write(
        &sources,
        "Types: deb\nURIs: http://127.0.0.1:9/debian\nSuites: bookworm\nComponents: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
    )
    .unwrap();
    let out = std::process::Command::new(tessera_e2e::repo_root().join("hack/images.sh"))
        .args(["build", "redis"])
        .env("TESSERA_CACHE", cache.path())
        .env("TESSERA_DEBIAN_SOURCES", &sources)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run hack/images.sh");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the build must fail: {err}");
    assert!(
        err.contains("building redis (tessera.local/redis:bookworm) failed")
            && err.contains("logs/redis.log"),
        "{err}"
    );
    assert!(
        err.contains("Could not connect to 127.0.0.1:9"),
        "the log's tail shows the cause: {err}"
    );
    assert!(
        !cache.path().join("images/redis.oci.tar").exists(),
        "a failed build left an archive"
    );
}

#[test]
fn a_second_controlplane_sh_while_one_runs_is_refused() {
    let state = tempfile_dir("second");
    std::fs::create_dir_all(&state).unwrap();
    // Another controlplane.sh holds the state folder's lock.
    let mut holder = std::process::Command::new("flock")
        .arg(state.join(".lock"))
        .args(["sleep", "30"])
        .spawn()
        .expect("flock");
    std::thread::sleep(Duration::from_millis(300));
    let (ok, err) = controlplane_up(&state, &[]);
    holder.kill().ok();
    holder.wait().ok();
    assert!(!ok, "up must fail: {err}");
    assert!(
        err.contains("another 'hack/controlplane.sh' is running"),
        "{err}"
    );
    std::fs::remove_dir_all(&state).ok();
}

/// `up` fails with every phrase in its error, before starting anything;
/// the state folder is removed after.
fn assert_up_refused(state: &std::path::Path, env: &[(&str, &str)], phrases: &[&str]) {
    let (ok, err) = controlplane_up(state, env);
    assert!(!ok, "up must fail: {err}");
    for phrase in phrases {
        assert!(err.contains(phrase), "{phrase:?} not in: {err}");
    }
    assert!(
        !state.join("pids").exists(),
        "nothing was started: {:?}",
        std::fs::read_dir(state).map(|d| d.count())
    );
    std::fs::remove_dir_all(state).ok();
}

fn tempfile_dir(what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "tessera-controlplane-{what}-{}",
        std::process::id()
    ))
}
