//! Benchmark: 200 Ensembles on the local control plane, against the floor
//! of that control plane: the same number of plain StatefulSets (same pod
//! count, one claim each) created directly and waited on, in the same run.
//! Ignored by default; run it with
//!   cargo test --release -p tessera-operator --features e2e --test bench_ensembles -- --ignored --nocapture
//! TESSERA_BENCH_COUNT and TESSERA_BENCH_REPLICAS change the load;
//! TESSERA_BENCH_ALONE=1 also creates the Ensembles once with no operator
//! running, to compare the create latency; TESSERA_BENCH_FLOOR_CHILDREN=1
//! gives each floor StatefulSet an Ensemble's other children (ConfigMap,
//! two Services, PDB), created directly; TESSERA_BENCH_FLOOR=built makes
//! the floor the operator's own children of each Ensemble (its pure
//! `build`), created directly in the order the operator applies them: what
//! the objects cost the control plane, without any reconciling.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use support::*;
use tessera_api::Ensemble;
use tessera_operator::reconcile::child::{BuildContext, Child};
use tessera_operator::reconcile::{Managed, Observed};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Latencies of the creates, and how long the whole batch took.
struct Creates {
    total: Duration,
    latencies: Vec<Duration>,
}

impl Creates {
    fn pct(&self, p: f64) -> f64 {
        let mut l = self.latencies.clone();
        l.sort();
        let i = ((l.len() as f64 - 1.0) * p).round() as usize;
        l.get(i).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
    }

    fn report(&self, what: &str) {
        println!(
            "BENCH {what}_created_in_s={:.1} create_p50_ms={:.0} create_p90_ms={:.0} create_max_ms={:.0}",
            self.total.as_secs_f64(),
            self.pct(0.5),
            self.pct(0.9),
            self.pct(1.0)
        );
    }
}

/// Runs `one(i)` for `i` in `0..count`, 16 at a time, as the bench always
/// has, timing each and the whole batch.
async fn timed<F, Fut>(count: usize, one: F) -> Creates
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    let latencies = futures::stream::iter(0..count)
        .map(|i| {
            let fut = one(i);
            async move {
                let t = Instant::now();
                fut.await;
                t.elapsed()
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    Creates {
        total: start.elapsed(),
        latencies,
    }
}

/// Creates `count` objects, 16 at a time.
async fn create_all<K, F>(api: &Api<K>, count: usize, make: F) -> Creates
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
    F: Fn(usize) -> K,
{
    timed(count, |i| {
        let api = api.clone();
        let obj = make(i);
        async move {
            api.create(&PostParams::default(), &obj)
                .await
                .expect("create");
        }
    })
    .await
}

fn ensemble(i: usize, replicas: usize) -> Ensemble {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "tessera.dev/v1alpha1",
        "kind": "Ensemble",
        "metadata": {"name": format!("zk-{i:03}")},
        "spec": {"engine": if i.is_multiple_of(2) { "zookeeper" } else { "etcd" }, "replicas": replicas},
    }))
    .unwrap()
}

/// A StatefulSet shaped like an Ensemble's where it costs the control plane
/// work: `replicas` pods in parallel, one claim each. kwok never runs the
/// container, so its image does not matter.
fn plain_statefulset(i: usize, replicas: usize) -> StatefulSet {
    let labels = serde_json::json!({"bench": format!("sts-{i:03}")});
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": format!("sts-{i:03}")},
        "spec": {
            "replicas": replicas,
            "serviceName": format!("sts-{i:03}"),
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "floor:bench"}]}
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    }))
    .unwrap()
}

/// Every child the operator builds for Ensemble `i` in namespace `ns`, in
/// the order it applies them, without owner references.
fn built_children(i: usize, replicas: usize, ns: &str) -> Vec<Child> {
    let mut e = ensemble(i, replicas);
    e.metadata.namespace = Some(ns.into());
    let ctx = BuildContext::for_tests();
    let valid = e.validate(&ctx, &Observed::default()).expect("valid");
    Ensemble::build(&valid, &ctx).children
}

/// Creates the operator's children of `count` Ensembles directly, one
/// Ensemble's children in order, 16 Ensembles at a time.
async fn create_built(client: &Client, ns: &str, count: usize, replicas: usize) -> Creates {
    use k8s_openapi::api::core::v1::{ConfigMap, Service};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let pp = PostParams::default();
    timed(count, |i| {
        let children = built_children(i, replicas, ns);
        let pp = pp.clone();
        async move {
            for child in children {
                let c = client.clone();
                let created = match child {
                    Child::StatefulSet(o) => Api::<StatefulSet>::namespaced(c, ns)
                        .create(&pp, &o)
                        .await
                        .map(drop),
                    Child::Service(o) => Api::<Service>::namespaced(c, ns)
                        .create(&pp, &o)
                        .await
                        .map(drop),
                    Child::ConfigMap(o) => Api::<ConfigMap>::namespaced(c, ns)
                        .create(&pp, &o)
                        .await
                        .map(drop),
                    Child::PodDisruptionBudget(o) => Api::<PodDisruptionBudget>::namespaced(c, ns)
                        .create(&pp, &o)
                        .await
                        .map(drop),
                };
                created.expect("create a built child");
            }
        }
    })
    .await
}

/// The ConfigMap, the headless and client Services and the PDB of each
/// floor StatefulSet, shaped like an Ensemble's.
async fn floor_children(ns: &TestNs, count: usize) {
    use k8s_openapi::api::core::v1::{ConfigMap, Service};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let obj = |i: usize, kind: &str| -> serde_json::Value {
        let name = format!("sts-{i:03}");
        let selector = serde_json::json!({"bench": name});
        match kind {
            "cm" => {
                serde_json::json!({"metadata": {"name": format!("{name}-config")}, "data": {"zoo.cfg": "tickTime=2000\n"}})
            }
            "headless" => {
                serde_json::json!({"metadata": {"name": format!("{name}-headless")}, "spec": {
                "clusterIP": "None", "publishNotReadyAddresses": true, "selector": selector,
                "ports": [{"name": "client", "port": 2181}, {"name": "peer", "port": 2888}]}})
            }
            "client" => serde_json::json!({"metadata": {"name": name}, "spec": {
                "selector": selector, "ports": [{"name": "client", "port": 2181}]}}),
            _ => serde_json::json!({"metadata": {"name": name}, "spec": {
                "maxUnavailable": 1, "selector": {"matchLabels": selector}}}),
        }
    };
    let cms: Api<ConfigMap> = ns.api();
    let svcs: Api<Service> = ns.api();
    let pdbs: Api<PodDisruptionBudget> = ns.api();
    create_all(&cms, count, |i| {
        serde_json::from_value(obj(i, "cm")).unwrap()
    })
    .await;
    create_all(&svcs, count, |i| {
        serde_json::from_value(obj(i, "headless")).unwrap()
    })
    .await;
    create_all(&svcs, count, |i| {
        serde_json::from_value(obj(i, "client")).unwrap()
    })
    .await;
    create_all(&pdbs, count, |i| {
        serde_json::from_value(obj(i, "pdb")).unwrap()
    })
    .await;
}

/// Polls `ready` once a second until it counts `count`, calling `each`
/// every round; returns the time since `start`.
async fn wait_ready<K, F>(
    api: &Api<K>,
    count: usize,
    start: Instant,
    what: &str,
    ready: F,
    mut each: impl FnMut(),
) -> Duration
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    F: Fn(&K) -> bool,
{
    loop {
        each();
        let list = api.list(&ListParams::default()).await.expect("list");
        let n = list.items.iter().filter(|o| ready(o)).count();
        if n == count {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "only {n}/{count} {what} ready after 600s"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The API server's own view of request latency: sum and count of
/// `apiserver_request_duration_seconds` for POSTs of `resource`, and the
/// total time requests waited in priority-and-fairness queues, by
/// priority level.
async fn server_figures(client: &Client, resource: &str) -> (f64, f64, BTreeMap<String, f64>) {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap_or_default();
    let label = |l: &str, key: &str| -> Option<String> {
        let start = l.find(&format!("{key}=\""))? + key.len() + 2;
        Some(l[start..].split('"').next()?.to_string())
    };
    let value = |l: &str| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
    let (mut sum, mut count) = (0.0, 0.0);
    let mut waits = BTreeMap::new();
    for l in text.lines() {
        let post = l.contains("verb=\"POST\"") && label(l, "resource").as_deref() == Some(resource);
        if l.starts_with("apiserver_request_duration_seconds_sum{") && post {
            sum += value(l).unwrap_or(0.0);
        } else if l.starts_with("apiserver_request_duration_seconds_count{") && post {
            count += value(l).unwrap_or(0.0);
        } else if l.starts_with("apiserver_flowcontrol_request_wait_duration_seconds_sum{") {
            let level = label(l, "priority_level").unwrap_or_default();
            *waits.entry(level).or_insert(0.0) += value(l).unwrap_or(0.0);
        }
    }
    (sum, count, waits)
}

async fn server_delta<F, Fut, T>(client: &Client, resource: &str, what: &str, f: F) -> T
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let (s0, c0, w0) = server_figures(client, resource).await;
    let out = f().await;
    let (s1, c1, w1) = server_figures(client, resource).await;
    let mean = if c1 > c0 {
        (s1 - s0) / (c1 - c0) * 1000.0
    } else {
        0.0
    };
    let waits: Vec<String> = w1
        .iter()
        .map(|(k, v)| (k, v - w0.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0005)
        .map(|(k, d)| format!("{k}={d:.2}s"))
        .collect();
    println!(
        "BENCH {what}_server_post_mean_ms={mean:.0} apf_queue_wait=[{}]",
        waits.join(" ")
    );
    out
}

/// Deletes a test namespace and waits until it is gone.
async fn remove(client: &Client, ns: TestNs) {
    let name = ns.name.clone();
    let start = Instant::now();
    drop(ns);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    until_none_left(&format!("namespace {name}"), start, 300, || async {
        Ok(usize::from(namespaces.get_opt(&name).await?.is_some()))
    })
    .await;
    println!(
        "BENCH removed_{name}_in_s={:.1}",
        start.elapsed().as_secs_f64()
    );
    // Its claims' volumes outlive it: the controller-manager's volume
    // controller deletes them one at a time, under its own rate limit,
    // and the next phase's claims would queue behind them.
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    until_none_left(&format!("volumes of {name}"), start, 600, || async {
        let of_ns = |pv: &&PersistentVolume| {
            let claim = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
            claim.and_then(|c| c.namespace.as_deref()) == Some(name.as_str())
        };
        Ok(pvs
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(of_ns)
            .count())
    })
    .await;
    println!(
        "BENCH removed_{name}_volumes_in_s={:.1}",
        start.elapsed().as_secs_f64()
    );
}

/// Polls `left` once a second until it counts none. An API error is
/// retried, never taken for "none left": a bench that moved on early
/// would time the next phase behind this one's cleanup. Panics once
/// `limit_s` seconds have passed since `start`.
async fn until_none_left<F, Fut>(what: &str, start: Instant, limit_s: u64, mut left: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize, kube::Error>>,
{
    loop {
        let last = match left().await {
            Ok(0) => return,
            Ok(n) => format!("{n} left"),
            Err(e) => format!("cannot tell: {e}"),
        };
        assert!(
            start.elapsed() < Duration::from_secs(limit_s),
            "{what} still there after {limit_s}s: {last}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Samples the namespace once a second until all `count` StatefulSets
/// exist and have `replicas` ready, printing every 10 s how far the
/// pipeline behind them got: StatefulSets, pods created, pods bound to a
/// node, pods Ready, StatefulSets with their ready replicas. Returns when
/// the last StatefulSet existed and when the last one was ready.
async fn timeline(
    client: Client,
    ns: String,
    phase: &'static str,
    count: usize,
    replicas: i32,
    start: Instant,
) -> (Duration, Duration) {
    use k8s_openapi::api::core::v1::Pod;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let mut created = None;
    let mut printed = Duration::ZERO;
    loop {
        if let (Ok(s), Ok(p)) = (
            sts.list(&ListParams::default()).await,
            pods.list(&ListParams::default()).await,
        ) {
            let at = start.elapsed();
            if created.is_none() && s.items.len() >= count {
                created = Some(at);
            }
            let ready = |s: &&StatefulSet| {
                s.status.as_ref().and_then(|s| s.ready_replicas) == Some(replicas)
            };
            let sts_ready = s.items.iter().filter(ready).count();
            let bound = p
                .items
                .iter()
                .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()));
            let pods_ready = p
                .items
                .iter()
                .filter(|p| tessera_operator::reconcile::status::pod_ready(p));
            if at >= printed || sts_ready >= count {
                printed = at + Duration::from_secs(10);
                println!(
                    "BENCH {phase} t={:>5.1}s statefulsets={} pods={} bound={} pods_ready={} statefulsets_ready={sts_ready}",
                    at.as_secs_f64(),
                    s.items.len(),
                    p.items.len(),
                    bound.count(),
                    pods_ready.count(),
                );
            }
            if let (Some(c), true) = (created, sts_ready >= count) {
                return (c, at);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// CPU seconds (user + system) used so far by a process.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses: utime and
    // stime are the 12th and 13th, in clock ticks (100 a second on Linux).
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: f64 = rest.next()?.parse().ok()?;
    let stime: f64 = rest.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU seconds used so far by each process of the local control plane
/// (its pid files sit beside the kubeconfig), and by `extra`.
fn control_plane_cpu(extra: &[(&str, u32)]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let pids = std::env::var("KUBECONFIG")
        .ok()
        .and_then(|k| Some(std::path::Path::new(&k).parent()?.join("pids")));
    for entry in pids
        .and_then(|d| std::fs::read_dir(d).ok())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry
            .file_name()
            .to_string_lossy()
            .trim_end_matches(".pid")
            .to_string();
        let pid = std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|p| p.trim().parse().ok());
        if let Some(cpu) = pid.and_then(cpu_seconds) {
            out.insert(name, cpu);
        }
    }
    for (name, pid) in extra {
        if let Some(cpu) = cpu_seconds(*pid) {
            out.insert(name.to_string(), cpu);
        }
    }
    out
}

/// Prints the CPU seconds each process used between two readings.
fn report_cpu(phase: &str, before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) {
    let used: Vec<String> = after
        .iter()
        .map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d >= 0.5)
        .map(|(k, d)| format!("{k}={d:.0}"))
        .collect();
    println!("BENCH {phase}_cpu_seconds {}", used.join(" "));
}

fn ensemble_ready(e: &Ensemble) -> bool {
    e.status.as_ref().is_some_and(|s| {
        s.common
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn two_hundred_ensembles() {
    let count = env_or("TESSERA_BENCH_COUNT", 200);
    let replicas = env_or("TESSERA_BENCH_REPLICAS", 1);
    let client = admin().await;
    install_crds(&client).await;
    let kc = operator_kubeconfig(&client).await;

    // The floor: plain StatefulSets, no operator running.
    let floor = {
        let ns = TestNs::new(&client, "bench-floor").await;
        let api: Api<StatefulSet> = ns.api();
        let built = std::env::var("TESSERA_BENCH_FLOOR").is_ok_and(|v| v == "built");
        let cpu = control_plane_cpu(&[]);
        let start = Instant::now();
        let sampler = tokio::spawn(timeline(
            client.clone(),
            ns.name.clone(),
            "floor",
            count,
            replicas as i32,
            start,
        ));
        let creates = server_delta(&client, "statefulsets", "floor", || async {
            if built {
                create_built(&client, &ns.name, count, replicas).await
            } else {
                create_all(&api, count, |i| plain_statefulset(i, replicas)).await
            }
        })
        .await;
        creates.report(if built { "floor_built" } else { "floor" });
        if env_or("TESSERA_BENCH_FLOOR_CHILDREN", 0) == 1 {
            // What an Ensemble adds around its StatefulSet, created directly:
            // the cost of the children themselves, without the operator.
            let t = Instant::now();
            floor_children(&ns, count).await;
            println!(
                "BENCH floor_children_created_in_s={:.1}",
                t.elapsed().as_secs_f64()
            );
        }
        let ready = wait_ready(
            &api,
            count,
            start,
            "StatefulSets",
            |s: &StatefulSet| {
                s.status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0)
                    == replicas as i32
            },
            || {},
        )
        .await;
        println!("BENCH floor_all_ready_in_s={:.1}", ready.as_secs_f64());
        report_cpu("floor", &cpu, &control_plane_cpu(&[]));
        if let Ok(Ok((created, _))) = tokio::time::timeout(Duration::from_secs(30), sampler).await {
            println!(
                "BENCH floor_statefulsets_all_created_at_s={:.1}",
                created.as_secs_f64()
            );
        }
        // Gone before the operator's run: the kwok nodes hold 330 pods, and
        // a namespace being emptied would compete with the measurement.
        remove(&client, ns).await;
        ready
    };

    if env_or("TESSERA_BENCH_ALONE", 0) == 1 {
        // The same creates with no operator: what the API server alone costs.
        let ns = TestNs::new(&client, "bench-alone").await;
        let api: Api<Ensemble> = ns.api();
        let creates = server_delta(&client, "ensembles", "alone", || {
            create_all(&api, count, |i| ensemble(i, replicas))
        })
        .await;
        creates.report("alone");
        remove(&client, ns).await;
    }

    let ns = TestNs::new(&client, "bench").await;
    let op = Operator::start(
        &kc,
        &ns.name,
        "bench",
        &["--leader-elect", "false", "--log-level", "warn"],
    );
    ns.wait_for("operator ready", Duration::from_secs(30), || {
        let op = &op;
        async move { (op.get("/readyz").await?.0 == 200).then_some(()) }
    })
    .await;

    let api: Api<Ensemble> = ns.api();
    let cpu = control_plane_cpu(&[("operator", op.pid())]);
    let start = Instant::now();
    // Where the time goes: when the last StatefulSet exists and when the
    // last one has its ready replicas (the controller-manager's part), as
    // against when the last Ensemble reports Ready (the operator's).
    let timeline = tokio::spawn(timeline(
        client.clone(),
        ns.name.clone(),
        "operator",
        count,
        replicas as i32,
        start,
    ));
    let creates = server_delta(&client, "ensembles", "ensembles", || {
        create_all(&api, count, |i| ensemble(i, replicas))
    })
    .await;
    let applied = creates.total;

    let mut peak_kib = 0;
    let ready_at = wait_ready(&api, count, start, "Ensembles", ensemble_ready, || {
        peak_kib = peak_kib.max(op.peak_rss_kib().unwrap_or(0))
    })
    .await;
    report_cpu(
        "operator",
        &cpu,
        &control_plane_cpu(&[("operator", op.pid())]),
    );
    // Let the last status writes and events settle, then read the counters.
    tokio::time::sleep(Duration::from_secs(5)).await;
    peak_kib = peak_kib.max(op.peak_rss_kib().unwrap_or(0));
    let writes = op.writes().await;
    let reads = op.metric("tessera_operator_api_reads_total", &[]).await;
    let reconciles = op.metric("tessera_operator_reconciles_total", &[]).await;
    let errors = op
        .metric("tessera_operator_reconcile_errors_total", &[])
        .await;
    println!("BENCH ensembles={count} replicas={replicas}");
    println!("BENCH created_in_s={:.1}", applied.as_secs_f64());
    creates.report("ensembles");
    println!("BENCH all_ready_in_s={:.1}", ready_at.as_secs_f64());
    match tokio::time::timeout(Duration::from_secs(30), timeline).await {
        Ok(Ok((created, ready))) => println!(
            "BENCH statefulsets_all_created_at_s={:.1} statefulsets_all_ready_at_s={:.1}",
            created.as_secs_f64(),
            ready.as_secs_f64()
        ),
        _ => println!("BENCH statefulsets: not all seen ready"),
    }
    println!(
        "BENCH ratio_to_floor={:.2} (floor {:.1}s)",
        ready_at.as_secs_f64() / floor.as_secs_f64(),
        floor.as_secs_f64()
    );
    println!("BENCH peak_rss_mib={:.1}", peak_kib as f64 / 1024.0);
    println!("BENCH reconciles={reconciles} errors={errors}");
    println!("BENCH api_writes={writes} api_reads={reads}");
    println!(
        "BENCH api_requests_per_reconcile={:.2} writes_per_ensemble={:.1}",
        (writes + reads) / reconciles.max(1.0),
        writes / count as f64
    );
    let metrics = op.get("/metrics").await.unwrap().1;
    for l in metrics
        .lines()
        .filter(|l| l.starts_with("tessera_operator_api_writes_total"))
    {
        println!("BENCH {l}");
    }
}
