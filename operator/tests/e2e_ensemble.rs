//! End-to-end: Ensembles reconciled by the operator binary, running under
//! the ServiceAccount and ClusterRole of charts/tessera/files/operator-rbac.yaml,
//! against the real local control plane (hack/controlplane.sh up).

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use support::*;
use tessera_api::Ensemble;

const MINUTE: Duration = Duration::from_secs(60);

async fn setup(test: &str) -> (Client, TestNs, std::path::PathBuf) {
    let client = admin().await;
    install_crds(&client).await;
    let kc = operator_kubeconfig(&client).await;
    let ns = TestNs::new(&client, test).await;
    (client, ns, kc)
}

/// Ready=True with `n` ready members, for the current generation.
async fn wait_ready(ns: &TestNs, name: &str, n: i32) -> Ensemble {
    let api: Api<Ensemble> = ns.api();
    ns.wait_for(&format!("ensemble/{name}"), 2 * MINUTE, || {
        let api = api.clone();
        async move {
            let e = api.get(name).await.ok()?;
            let s = e.status.as_ref()?;
            let current = s.common.observed_generation == e.metadata.generation;
            let ready = condition(&e, "Ready")
                .is_some_and(|c| c.0 == "True" && c.3 == e.metadata.generation);
            (current && ready && s.common.ready_replicas == n).then_some(e)
        }
    })
    .await
}

fn owned_by(meta: &kube::api::ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.controller == Some(true) && r.kind == "Ensemble")
}

/// The sorted names of the objects in `api` that the Ensemble `uid` controls.
async fn owned_names<K>(api: &Api<K>, uid: &str) -> Vec<String>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|o| owned_by(o.meta(), uid))
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect();
    names.sort();
    names
}

fn example(name: &str) -> std::path::PathBuf {
    repo_root().join("examples").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_lifecycle() {
    let (client, ns, kc) = setup("zk").await;
    let op = Operator::start(
        &kc,
        &ns.name,
        "op",
        &["--resync-seconds", "5", "--leader-elect", "false"],
    );

    // 1. The example creates every child, owned by the Ensemble, and gets Ready.
    ns.apply_file(&example("ensemble-zookeeper.yaml"));
    let ens = wait_ready(&ns, "zk", 3).await;
    let uid = ens.uid().unwrap();
    let s = ens.status.clone().unwrap();
    assert_eq!(s.common.replicas, 3);
    assert_eq!(s.members.len(), 3, "{s:?}");
    assert!(s.members.iter().all(|m| m.ready));
    assert_eq!(
        s.common.selector.as_deref(),
        Some(
            "app.kubernetes.io/component=server,app.kubernetes.io/instance=zk,app.kubernetes.io/name=zookeeper"
        )
    );
    let sts: Api<StatefulSet> = ns.api();
    let svc: Api<Service> = ns.api();
    let cms: Api<ConfigMap> = ns.api();
    let pdbs: Api<PodDisruptionBudget> = ns.api();
    assert!(owned_by(&sts.get("zk").await.unwrap().metadata, &uid));
    assert!(owned_by(&svc.get("zk").await.unwrap().metadata, &uid));
    assert!(owned_by(
        &svc.get("zk-headless").await.unwrap().metadata,
        &uid
    ));
    assert!(owned_by(
        &cms.get("zk-config").await.unwrap().metadata,
        &uid
    ));
    assert!(owned_by(&pdbs.get("zk").await.unwrap().metadata, &uid));
    let pods: Api<Pod> = ns.api();
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=zk"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 3);
    for p in &list.items {
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        assert!(node.starts_with("kwok-"), "{} on {node}", p.name_any());
        assert_eq!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Running")
        );
    }
    let table = kubectl_ok(&["-n", &ns.name, "get", "ens"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "ENGINE", "DESIRED", "READY", "LEADER", "STATUS", "AGE"
        ],
        "{table}"
    );
    // Columns by the header's offsets: LEADER stays empty, kwok pods run no engine to ask.
    let head = table.lines().next().unwrap();
    let line = table.lines().nth(1).unwrap();
    let starts: Vec<usize> = header.iter().map(|h| head.find(h).unwrap()).collect();
    let row: Vec<&str> = (0..starts.len())
        .map(|i| {
            let end = starts
                .get(i + 1)
                .copied()
                .unwrap_or(line.len())
                .min(line.len());
            line[starts[i].min(end)..end].trim()
        })
        .collect();
    assert_eq!(&row[..4], ["zk", "zookeeper", "3", "3"], "{table}");
    assert_eq!(row[5], "AllMembersReady", "{table}");

    // 3. Scale to 5 through the scale subresource; 4 is refused by CEL.
    kubectl_ok(&["-n", &ns.name, "scale", "ens/zk", "--replicas=5"]);
    wait_ready(&ns, "zk", 5).await;
    // kwok pods run no engine: the pods are added, the member list a new
    // server starts with names all five; membership is left to the engine.
    let members = cms.get("zk-members").await.unwrap().data.unwrap()["zoo.cfg.dynamic"].clone();
    assert_eq!(
        members.lines().filter(|l| l.starts_with("server.")).count(),
        5,
        "{members}"
    );
    assert!(members.contains(&format!(
        "server.5=zk-4.zk-headless.{}.svc:2888:3888:participant;2181",
        ns.name
    )));
    let cfg = cms.get("zk-config").await.unwrap().data.unwrap()["zoo.cfg"].clone();
    assert!(!cfg.contains("server."), "{cfg}");
    let out = kubectl(&["-n", &ns.name, "scale", "ens/zk", "--replicas=4"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("replicas must be odd"), "{err}");

    // 4. Hand edits of owned children are reverted.
    sts.patch(
        "zk",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    ns.wait_for("statefulset/zk", MINUTE, || {
        let sts = sts.clone();
        async move {
            let s = sts.get("zk").await.ok()?;
            (s.spec?.replicas == Some(5)).then_some(())
        }
    })
    .await;
    let old_uid = svc.get("zk-headless").await.unwrap().uid();
    svc.delete("zk-headless", &DeleteParams::default())
        .await
        .unwrap();
    ns.wait_for("service/zk-headless", MINUTE, || {
        let svc = svc.clone();
        let old_uid = old_uid.clone();
        async move {
            let s = svc.get_opt("zk-headless").await.ok()??;
            (s.uid() != old_uid).then_some(())
        }
    })
    .await;
    wait_ready(&ns, "zk", 5).await;

    // 8. Steady state writes nothing over more than two resync periods.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = op.writes().await;
    let reconciles = op
        .metric("tessera_operator_reconciles_total", &["ensemble"])
        .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        op.writes().await,
        writes,
        "steady state wrote:\n{}",
        op.get("/metrics").await.unwrap().1
    );
    let after = op
        .metric("tessera_operator_reconciles_total", &["ensemble"])
        .await;
    assert!(
        after >= reconciles + 2.0,
        "resync did not run: {reconciles} -> {after}"
    );

    // Health endpoints.
    assert_eq!(op.get("/healthz").await.map(|r| r.0), Some(200));
    assert_eq!(op.get("/readyz").await.map(|r| r.0), Some(200));

    // 5. Deleting the Ensemble collects every child; claims stay by default.
    let ens_api: Api<Ensemble> = ns.api();
    ens_api
        .delete("zk", &DeleteParams::default())
        .await
        .unwrap();
    ns.wait_for("children of zk gone", 2 * MINUTE, || {
        let (sts, svc, cms, pdbs) = (sts.clone(), svc.clone(), cms.clone(), pdbs.clone());
        async move {
            let gone = sts.get_opt("zk").await.ok()?.is_none()
                && svc.get_opt("zk").await.ok()?.is_none()
                && svc.get_opt("zk-headless").await.ok()?.is_none()
                && cms.get_opt("zk-config").await.ok()?.is_none()
                && pdbs.get_opt("zk").await.ok()?.is_none();
            gone.then_some(())
        }
    })
    .await;
    let pvcs: Api<PersistentVolumeClaim> = ns.api();
    let claims = pvcs.list(&ListParams::default()).await.unwrap();
    let names: Vec<String> = claims.items.iter().map(|c| c.name_any()).collect();
    assert_eq!(names.len(), 5, "claims kept: {names:?}");
    assert!(names.iter().all(|n| n.starts_with("data-zk-")));
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_ready_and_claims_deleted_with_it() {
    let (_client, ns, kc) = setup("etcd").await;
    let _op = Operator::start(&kc, &ns.name, "op", &["--leader-elect", "false"]);

    // 2. The etcd example gets Ready the same way.
    ns.apply_file(&example("ensemble-etcd.yaml"));
    let ens = wait_ready(&ns, "etcd", 3).await;
    assert!(
        ens.finalizers()
            .iter()
            .any(|f| f == "tessera.dev/delete-claims")
    );
    let cms: Api<ConfigMap> = ns.api();
    // The membership ConfigMap: "new" until a leader is seen, which on
    // kwok nodes (no engine runs) is never.
    let data = cms.get("etcd-members").await.unwrap().data.unwrap();
    assert_eq!(data["ETCD_INITIAL_CLUSTER_STATE"], "new");
    assert_eq!(data["ETCD_INITIAL_CLUSTER"].split(',').count(), 3);
    let pvcs: Api<PersistentVolumeClaim> = ns.api();
    assert_eq!(
        pvcs.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );

    // 5. With deleteClaimsOnDelete the claims go too.
    let ens_api: Api<Ensemble> = ns.api();
    ens_api
        .delete("etcd", &DeleteParams::default())
        .await
        .unwrap();
    ns.wait_for(
        "ensemble/etcd gone and its claims deleted",
        2 * MINUTE,
        || {
            let (ens_api, pvcs) = (ens_api.clone(), pvcs.clone());
            async move {
                let gone = ens_api.get_opt("etcd").await.ok()?.is_none();
                let claims = pvcs.list(&ListParams::default()).await.ok()?;
                let deleting = claims
                    .items
                    .iter()
                    .all(|c| c.metadata.deletion_timestamp.is_some());
                (gone && deleting).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_config_key_degrades_without_a_hot_loop() {
    let (_client, ns, kc) = setup("invalid").await;
    let op = Operator::start(&kc, &ns.name, "op", &["--leader-elect", "false"]);
    // 6. The API server accepts it; the operator refuses it.
    ns.apply_file(&example("invalid/ensemble-owned-config-key.yaml"));
    let api: Api<Ensemble> = ns.api();
    let degraded = ns
        .wait_for("ensemble/datadir Degraded", MINUTE, || {
            let api = api.clone();
            async move {
                let e = api.get("datadir").await.ok()?;
                condition(&e, "Degraded").filter(|c| c.0 == "True")
            }
        })
        .await;
    assert_eq!(degraded.1, "OwnedConfigKey");
    assert!(degraded.2.contains("\"dataDir\""), "{}", degraded.2);
    let events = ns
        .wait_for("Warning event naming dataDir", MINUTE, || {
            let name = ns.name.clone();
            async move {
                let out = kubectl(&[
                    "-n",
                    &name,
                    "get",
                    "events",
                    "--field-selector",
                    "type=Warning",
                    "-o",
                    "yaml",
                ]);
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                (text.contains("OwnedConfigKey") && text.contains("dataDir")).then_some(text)
            }
        })
        .await;
    assert!(events.contains("datadir"));
    // Nothing was created from the invalid spec.
    let sts: Api<StatefulSet> = ns.api();
    assert!(sts.get_opt("datadir").await.unwrap().is_none());
    // No hot loop, and the operator stays healthy.
    let before = op
        .metric("tessera_operator_reconciles_total", &["ensemble"])
        .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = op
        .metric("tessera_operator_reconciles_total", &["ensemble"])
        .await;
    assert!(
        after - before <= 1.0,
        "reconciled {} times in 8s",
        after - before
    );
    assert_eq!(op.get("/healthz").await.map(|r| r.0), Some(200));
    assert!(
        op.metric(
            "tessera_operator_reconcile_errors_total",
            &["OwnedConfigKey"]
        )
        .await
            >= 1.0
    );

    // Fixing the spec clears Degraded and creates the children.
    api.patch(
        "datadir",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"config": {"dataDir": null}}})),
    )
    .await
    .unwrap();
    wait_ready(&ns, "datadir", 3).await;
    let e = api.get("datadir").await.unwrap();
    assert_eq!(condition(&e, "Degraded").unwrap().0, "False");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_stops_writes_to_children() {
    let (_client, ns, kc) = setup("paused").await;
    let _op = Operator::start(&kc, &ns.name, "op", &["--leader-elect", "false"]);
    ns.apply_file(&example("ensemble-zookeeper.yaml"));
    wait_ready(&ns, "zk", 3).await;
    let sts: Api<StatefulSet> = ns.api();
    let before = sts.get("zk").await.unwrap();

    // 7. Paused: a spec change leaves the StatefulSet alone, status still reports.
    let api: Api<Ensemble> = ns.api();
    api.patch(
        "zk",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": true, "replicas": 5}})),
    )
    .await
    .unwrap();
    let generation = api.get("zk").await.unwrap().metadata.generation;
    ns.wait_for("ensemble/zk Paused", MINUTE, || {
        let api = api.clone();
        async move {
            let e = api.get("zk").await.ok()?;
            let p = condition(&e, "Progressing")?;
            (p.1 == "Paused" && e.status?.common.observed_generation == generation).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = sts.get("zk").await.unwrap();
    assert_eq!(
        after.resource_version(),
        before.resource_version(),
        "paused StatefulSet changed"
    );
    assert_eq!(after.spec.unwrap().replicas, Some(3));

    // Unpausing applies the pending change.
    api.patch(
        "zk",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": false}})),
    )
    .await
    .unwrap();
    wait_ready(&ns, "zk", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_crash_converges() {
    let (_client, ns, kc) = setup("leader").await;
    let lease = ["--lease-seconds", "5"];
    let mut a = Operator::start(&kc, &ns.name, "op-a", &lease);
    // Let A take the lease before B starts.
    ns.wait_for("op-a leading", MINUTE, || {
        let a = &a;
        async move { (a.metric("tessera_operator_leader", &[]).await == 1.0).then_some(()) }
    })
    .await;
    let mut b = Operator::start(&kc, &ns.name, "op-b", &lease);
    ns.apply_file(&example("ensemble-zookeeper.yaml"));
    wait_ready(&ns, "zk", 3).await;
    assert!(a.writes().await > 0.0);
    assert_eq!(b.writes().await, 0.0, "the standby wrote");
    assert_eq!(b.metric("tessera_operator_leader", &[]).await, 0.0);

    // 9. Kill the leader in the middle of reconciling a new Ensemble.
    ns.apply_file(&example("ensemble-etcd.yaml"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.kill();
    ns.wait_for("op-b leading", MINUTE, || {
        let b = &b;
        async move { (b.metric("tessera_operator_leader", &[]).await == 1.0).then_some(()) }
    })
    .await;
    let etcd = wait_ready(&ns, "etcd", 3).await;
    let uid = etcd.uid().unwrap();
    let sts: Api<StatefulSet> = ns.api();
    let svc: Api<Service> = ns.api();
    let cms: Api<ConfigMap> = ns.api();
    let pdbs: Api<PodDisruptionBudget> = ns.api();
    assert_eq!(owned_names(&sts, &uid).await, ["etcd"]);
    assert_eq!(owned_names(&svc, &uid).await, ["etcd", "etcd-headless"]);
    assert_eq!(owned_names(&cms, &uid).await, ["etcd-config"]);
    assert_eq!(owned_names(&pdbs, &uid).await, ["etcd"]);
    // The survivor converged to exactly what build() wants: one more pass writes nothing.
    let settled = b.writes().await;
    let s = sts.get("etcd").await.unwrap();
    assert_eq!(s.spec.as_ref().unwrap().replicas, Some(3));
    assert!(
        s.meta()
            .annotations
            .as_ref()
            .unwrap()
            .contains_key("tessera.dev/applied-hash")
    );

    // A restarted A is a standby and writes nothing.
    let mut a2 = Operator::start(&kc, &ns.name, "op-a", &lease);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(a2.writes().await, 0.0, "restarted standby wrote");
    assert_eq!(b.writes().await, settled, "leader wrote in steady state");

    // Losing the Lease (here: someone else takes it) stops the leader
    // promptly: it exits non-zero within a renew period or two.
    // MicroTime serializes with the microsecond precision the API wants.
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    );
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = ns.api();
    leases
        .patch(
            "tessera-operator",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"holderIdentity": "intruder", "renewTime": now, "leaseDurationSeconds": 60}})),
        )
        .await
        .unwrap();
    let status = b
        .wait_exit(Duration::from_secs(10))
        .expect("the leader exits after losing the lease");
    assert!(!status.success(), "{status}");
    assert!(b.logs().contains("another process took the leader lease"));

    // SIGTERM: a standby exits cleanly.
    let status = a2.terminate().expect("graceful exit on SIGTERM");
    assert!(status.success(), "{status}");

    // No operator is left to run the claims finalizer of etcd: drop it so
    // that the namespace can be deleted.
    let ensembles: Api<Ensemble> = ns.api();
    ensembles
        .patch(
            "etcd",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
}

/// An operator that cannot watch its kinds (here: a token the API server
/// rejects; in life, CRDs not installed yet or RBAC missing) says so and
/// still stops promptly on SIGTERM, instead of waiting for caches that
/// never sync until the kubelet kills it.
#[tokio::test]
async fn an_operator_that_cannot_watch_says_so_and_stops_on_sigterm() {
    let client = admin().await;
    let ns = TestNs::new(&client, "cannot-watch").await;
    let kc = kubeconfig_with_token("not-a-valid-token", "rejected");
    let mut op = Operator::start(&kc, &ns.name, "op", &["--leader-elect", "false"]);
    ns.wait_for(
        "the operator to report the failing watch",
        Duration::from_secs(30),
        || {
            let logs = op.logs();
            async move { logs.contains("cannot watch the resources").then_some(()) }
        },
    )
    .await;
    let started = std::time::Instant::now();
    let status = op.terminate().expect("exits on SIGTERM");
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?} to stop",
        started.elapsed()
    );
}
