//! Benchmark: 200 Ensembles on the local control plane. Ignored by default;
//! run it with
//!   cargo test --release -p tessera-operator --test bench_ensembles -- --ignored --nocapture
//! TESSERA_BENCH_COUNT and TESSERA_BENCH_REPLICAS change the load.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ListParams, PostParams};
use support::*;
use tessera_api::Ensemble;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn two_hundred_ensembles() {
    let count = env_or("TESSERA_BENCH_COUNT", 200);
    let replicas = env_or("TESSERA_BENCH_REPLICAS", 1);
    let client = admin().await;
    install_crds(&client).await;
    let kc = operator_kubeconfig(&client).await;
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
    let start = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            async move {
                let e: Ensemble = serde_json::from_value(serde_json::json!({
                    "apiVersion": "tessera.dev/v1alpha1",
                    "kind": "Ensemble",
                    "metadata": {"name": format!("zk-{i:03}")},
                    "spec": {"engine": if i % 2 == 0 { "zookeeper" } else { "etcd" }, "replicas": replicas},
                }))
                .unwrap();
                api.create(&PostParams::default(), &e).await.expect("create ensemble");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let applied = start.elapsed();

    let mut peak_kib = 0;
    let ready_at = loop {
        peak_kib = peak_kib.max(op.peak_rss_kib().unwrap_or(0));
        let list = api.list(&ListParams::default()).await.expect("list");
        let ready = list
            .items
            .iter()
            .filter(|e| {
                e.status.as_ref().is_some_and(|s| {
                    s.common
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        if ready == count {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "only {ready}/{count} Ready after 600s; operator log: {}",
            op.log.display()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
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
    println!("BENCH all_ready_in_s={:.1}", ready_at.as_secs_f64());
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
