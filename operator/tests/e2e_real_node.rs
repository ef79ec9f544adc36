//! End-to-end on the real node: Ensembles whose pods actually run, from the
//! images hack/images.sh builds from Debian packages, with the sidecar's
//! probes deciding readiness and the adapter serving metrics.
//!
//! Needs `hack/controlplane.sh up` with the real node (the default) and the
//! images loaded (`make images`).

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::Value;
use support::*;
use tessera_api::Ensemble;
use tessera_operator::reconcile::status::pod_ready;

const MINUTE: Duration = Duration::from_secs(60);

/// Ready=True for the current generation with `n` ready members.
async fn wait_ready(ns: &TestNs, name: &str, n: i32, timeout: Duration) -> Ensemble {
    ns.wait_ready_and(name, n, timeout, |_| true).await
}

fn restarts(pod: &Pod, container: &str) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == container))
        .map(|c| c.restart_count)
        .unwrap_or_default()
}

/// One member's metrics from its adapter, through the API server's pod proxy.
fn adapter_metrics(ns: &TestNs, pod: &str) -> String {
    kubectl_ok(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/{}/pods/{pod}:9121/proxy/metrics",
            ns.name
        ),
    ])
}

/// The value of the first sample of `name` (no labels filter).
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split(['{', ' ']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Every member's adapter reports its live engine; exactly one is leader.
fn assert_adapters(ns: &TestNs, name: &str, engine: &str) {
    let mut leaders = 0.0;
    for i in 0..3 {
        let pod = format!("{name}-{i}");
        let m = adapter_metrics(ns, &pod);
        assert_eq!(sample(&m, "tessera_up"), Some(1.0), "{pod}:\n{m}");
        assert!(
            m.contains(&format!("engine=\"{engine}\"")),
            "{pod} metrics carry engine={engine}:\n{m}"
        );
        leaders += sample(&m, "tessera_is_leader").unwrap_or_else(|| panic!("{pod}:\n{m}"));
    }
    assert_eq!(leaders, 1.0, "exactly one {engine} leader by the adapters");
}

/// The pod's name resolves inside another pod, to that pod's IP.
async fn assert_dns(ns: &TestNs, name: &str, container: &str) {
    let pods: Api<Pod> = ns.api();
    let ip = pods
        .get(&format!("{name}-1"))
        .await
        .unwrap()
        .status
        .and_then(|s| s.pod_ip)
        .expect("pod IP");
    let fqdn = format!("{name}-1.{name}-headless.{}.svc.cluster.local", ns.name);
    let out = exec(
        ns,
        &format!("{name}-0"),
        container,
        &["getent", "hosts", &fqdn],
    );
    assert!(out.starts_with(&ip), "{fqdn} resolves to {ip}: {out}");
}

/// Stops the engine of `{name}-1` and checks that the sidecar takes the pod
/// out of readiness within one probe period, that the Ensemble names the
/// member, and that the liveness probe's restart brings everything back.
async fn stopped_engine_is_noticed_and_recovers(ns: &TestNs, name: &str, container: &str) {
    let pods: Api<Pod> = ns.api();
    let member = format!("{name}-1");
    let pod = pods.get(&member).await.unwrap();
    let before = restarts(&pod, container);
    signal_container(&container_id(&pod, container), "SIGSTOP");
    let stopped = Instant::now();

    // Readiness: period 10 s, timeout 2 s, one failure is enough.
    ns.wait_for(
        &format!("{member} NotReady"),
        Duration::from_secs(25),
        || {
            let pods = pods.clone();
            let member = member.clone();
            async move { (!pod_ready(&pods.get(&member).await.ok()?)).then_some(()) }
        },
    )
    .await;
    let took = stopped.elapsed();
    assert!(
        took <= Duration::from_secs(13),
        "{member} became NotReady {took:?} after its engine stopped: more than one probe period"
    );

    let api: Api<Ensemble> = ns.api();
    let e = ns
        .wait_for(
            &format!("ensemble/{name} reporting {member}"),
            MINUTE,
            || {
                let api = api.clone();
                let member = member.clone();
                async move {
                    let e = api.get(name).await.ok()?;
                    let (status, _, message, _) = condition(&e, "Ready")?;
                    (status == "False"
                        && message.contains(&member)
                        && e.status.as_ref()?.common.ready_replicas == 2)
                        .then_some(e)
                }
            },
        )
        .await;
    let s = e.status.unwrap();
    assert!(
        s.members.iter().any(|m| m.name == member && !m.ready),
        "{:?}",
        s.members
    );

    // Liveness (3 failures) restarts the container; the member rejoins.
    wait_ready(ns, name, 3, 4 * MINUTE).await;
    let after = restarts(&pods.get(&member).await.unwrap(), container);
    assert!(
        after > before,
        "{member}'s {container} container was restarted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_runs_answers_and_recovers() {
    let (ns, _op) = real_node_setup("node-zk").await;
    ns.apply_file(&repo_root().join("examples/ensemble-zookeeper.yaml"));
    wait_ready(&ns, "zk", 3, 5 * MINUTE).await;

    // Every member serves: one leader, two followers.
    let mut modes = Vec::new();
    for i in 0..3 {
        let out = exec(
            &ns,
            &format!("zk-{i}"),
            "zookeeper",
            &[
                "bash",
                "-c",
                "exec 3<>/dev/tcp/127.0.0.1/2181; echo srvr >&3; cat <&3",
            ],
        );
        let mode = out
            .lines()
            .find_map(|l| l.strip_prefix("Mode: "))
            .unwrap_or_else(|| panic!("zk-{i} srvr: {out}"))
            .to_string();
        modes.push(mode);
    }
    modes.sort();
    assert_eq!(modes, ["follower", "follower", "leader"]);

    // A znode written through one member is read back through the others.
    let zkcli = |pod: &str, cmd: &str| {
        exec(
            &ns,
            pod,
            "zookeeper",
            &[
                "bash",
                "-c",
                &format!("zkCli.sh -server 127.0.0.1:2181 {cmd} 2>&1"),
            ],
        )
    };
    let out = zkcli("zk-0", "create /tessera-e2e written-by-zk-0");
    assert!(out.contains("Created /tessera-e2e"), "{out}");
    for pod in ["zk-1", "zk-2"] {
        let out = zkcli(pod, "get /tessera-e2e");
        assert!(out.contains("written-by-zk-0"), "{pod}: {out}");
    }

    assert_dns(&ns, "zk", "zookeeper").await;
    assert_adapters(&ns, "zk", "zookeeper");
    stopped_engine_is_noticed_and_recovers(&ns, "zk", "zookeeper").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_runs_answers_and_recovers() {
    let (ns, _op) = real_node_setup("node-etcd").await;
    ns.apply_file(&repo_root().join("examples/ensemble-etcd.yaml"));
    wait_ready(&ns, "etcd", 3, 5 * MINUTE).await;

    let etcdctl = |pod: &str, args: &[&str]| {
        let mut cmd = vec!["etcdctl", "--endpoints=http://127.0.0.1:2379"];
        cmd.extend_from_slice(args);
        exec(&ns, pod, "etcd", &cmd)
    };
    // Every member serves, and all agree on one leader.
    let mut leaders = std::collections::BTreeSet::new();
    let mut members = std::collections::BTreeSet::new();
    for i in 0..3 {
        let pod = format!("etcd-{i}");
        let out = etcdctl(&pod, &["endpoint", "status", "-w", "json"]);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{pod}: {e}: {out}"));
        let status = &v[0]["Status"];
        leaders.insert(status["leader"].as_u64().expect("leader id"));
        members.insert(status["header"]["member_id"].as_u64().expect("member id"));
    }
    assert_eq!(members.len(), 3, "three distinct members");
    assert_eq!(leaders.len(), 1, "one leader for all: {leaders:?}");
    assert!(members.is_superset(&leaders));

    // A key written through one member is read back through the others.
    assert_eq!(
        etcdctl("etcd-0", &["put", "/tessera/e2e", "written-by-etcd-0"]).trim(),
        "OK"
    );
    for pod in ["etcd-1", "etcd-2"] {
        let out = etcdctl(pod, &["get", "--print-value-only", "/tessera/e2e"]);
        assert_eq!(out.trim(), "written-by-etcd-0", "{pod}");
    }

    // The members found each other by their headless DNS names (the etcd
    // image, like the official one, has no resolver tools to ask directly).
    let list = etcdctl("etcd-0", &["member", "list"]);
    for i in 0..3 {
        let peer = format!("http://etcd-{i}.etcd-headless.{}.svc:2380", ns.name);
        assert!(
            list.lines()
                .any(|l| l.contains(", started, ") && l.contains(&peer)),
            "etcd-{i} started with peer URL {peer}:\n{list}"
        );
    }
    assert_adapters(&ns, "etcd", "etcd");
    stopped_engine_is_noticed_and_recovers(&ns, "etcd", "etcd").await;
}
