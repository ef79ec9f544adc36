//! End-to-end on the real node: the quorum-safe lifecycle of Ensembles.
//! Member roles come from the engines; a config change rolls a 3-member
//! ZooKeeper and etcd ensemble one member at a time, followers first and
//! the leader last, while a client writes and reads continuously, and an
//! operator killed in the middle of the roll is replaced by one that
//! finishes it; scaling 3 → 5 → 3 changes the engines' own membership
//! (ZooKeeper reconfig, etcd learners), one member at a time, under the
//! same client, with the operator killed in the middle again.
//!
//! Needs `hack/controlplane.sh up` with the real node and the images loaded
//! (`make images`). The host reaches pod IPs directly; the client below
//! talks to the members by pod IP, as an application in the cluster would.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::*;
use tessera_api::Ensemble;
use tessera_clients::etcd;
use tessera_clients::zookeeper::{self, session::Session};
use tessera_operator::kinds::ensemble::members::{etcd_ordinals, voting_ordinals};
use tessera_operator::reconcile::status::pod_ready;

const MINUTE: Duration = Duration::from_secs(60);
const OP_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Engine {
    Zookeeper,
    Etcd,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Zookeeper => "zk",
            Engine::Etcd => "etcd",
        }
    }
    fn example(self) -> std::path::PathBuf {
        repo_root().join(match self {
            Engine::Zookeeper => "examples/ensemble-zookeeper.yaml",
            Engine::Etcd => "examples/ensemble-etcd.yaml",
        })
    }
    fn port(self) -> u16 {
        match self {
            Engine::Zookeeper => 2181,
            Engine::Etcd => 2379,
        }
    }
    /// A config change that rolls every member and does no harm.
    fn change(self) -> Value {
        match self {
            Engine::Zookeeper => json!({"spec": {"config": {"tickTime": "2100"}}}),
            Engine::Etcd => json!({"spec": {"config": {"auto-compaction-retention": "2"}}}),
        }
    }
}

/// A namespace on the real node and an operator for it.
async fn setup(test: &str) -> (std::path::PathBuf, TestNs, Operator) {
    let client = admin().await;
    install_crds(&client).await;
    // The file's rules under names of this suite's own: a checkout sharing
    // the control plane cannot swap the role under a roll in progress.
    let kc = operator_kubeconfig_as(&client, "tessera-operator-e2e-lifecycle").await;
    let ns = TestNs::on_real_node(test).await;
    let op = Operator::start_for_real_node(&kc, &ns.name, "op");
    (kc, ns, op)
}

/// Deletes the Ensemble while its operator still runs, so that the
/// finalizer of `deleteClaimsOnDelete` does not hold the namespace.
async fn delete_ensemble(ns: &TestNs, name: &str) {
    let api: Api<Ensemble> = ns.api();
    api.delete(name, &Default::default()).await.unwrap();
    ns.wait_for(&format!("ensemble/{name} deleted"), 2 * MINUTE, || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok()?.is_none().then_some(()) }
    })
    .await;
}

/// Ready=True for the current generation with `n` ready members and a
/// leader named in status.
async fn wait_settled(ns: &TestNs, name: &str, n: i32, timeout: Duration) -> Ensemble {
    ns.wait_ready_and(name, n, timeout, |e| {
        e.status.as_ref().is_some_and(|s| s.leader.is_some())
    })
    .await
}

/// Status names one leader and the others followers, and `kubectl get ens`
/// shows the leader.
fn assert_roles(ns: &TestNs, ens: &Ensemble, n: usize) -> String {
    let s = ens.status.as_ref().unwrap();
    let leader = s.leader.clone().expect("a leader");
    let mut roles: Vec<(String, String)> = s
        .members
        .iter()
        .map(|m| (m.name.clone(), m.role.clone().unwrap_or_default()))
        .collect();
    roles.sort();
    assert_eq!(roles.len(), n, "{roles:?}");
    for (name, role) in &roles {
        let want = if *name == leader {
            "leader"
        } else {
            "follower"
        };
        assert_eq!(role, want, "{name} in {roles:?}");
    }
    let column = kubectl_ok(&[
        "-n",
        &ns.name,
        "get",
        "ens",
        &ens.name_any(),
        "--no-headers",
        "-o",
        "custom-columns=LEADER:.status.leader",
    ]);
    assert_eq!(column.trim(), leader);
    let table = kubectl_ok(&["-n", &ns.name, "get", "ens", &ens.name_any()]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    let at = header.iter().position(|h| *h == "LEADER").unwrap();
    assert_eq!(row[at], leader, "{table}");
    leader
}

/// The pod IPs of the ensemble's members, by pod name.
async fn member_ips(pods: &Api<Pod>, name: &str) -> Vec<String> {
    let list = pods
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect()
}

/// Each member pod's uid, by name: a replaced pod has a new one.
async fn pod_uids(pods: &Api<Pod>, name: &str) -> BTreeMap<String, String> {
    pods.list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}")))
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| (p.name_any(), p.uid().unwrap()))
        .collect()
}

/// What the client saw.
#[derive(Debug, Default)]
struct ClientReport {
    /// Keys whose write the engine acknowledged.
    acked: Vec<u64>,
    /// Writes that failed (and were retried).
    failures: u64,
    /// Reads of a just-acknowledged key that did not return it.
    bad_reads: Vec<String>,
    /// The longest time between two acknowledged writes.
    longest_gap: Duration,
}

/// One connection to one member, for either engine.
enum Conn {
    Zk(Session),
    Etcd(etcd::Client),
}

impl Conn {
    async fn open(engine: Engine, ip: &str) -> Result<Conn, String> {
        let addr = format!("{ip}:{}", engine.port());
        match engine {
            Engine::Zookeeper => Session::connect(&addr, OP_TIMEOUT).await.map(Conn::Zk),
            Engine::Etcd => {
                etcd::Client::new(&format!("http://{addr}"), OP_TIMEOUT, None).map(Conn::Etcd)
            }
        }
        .map_err(|e| format!("{addr}: {e}"))
    }

    /// Writes key `i`. A write retried after a lost reply finds its key
    /// already there: that is an acknowledgement too.
    async fn write(&mut self, i: u64) -> Result<(), String> {
        let (key, value) = (format!("/roll-{i}"), format!("v{i}"));
        match self {
            Conn::Zk(s) => match s.create(&key, value.as_bytes()).await {
                Ok(()) => Ok(()),
                Err(e) if e.to_string().contains("node exists") => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            Conn::Etcd(c) => {
                let body = json!({"key": b64(&key), "value": b64(&value)}).to_string();
                match c.post_json("/v3/kv/put", body).await {
                    Ok(r) if r.is_ok() => Ok(()),
                    Ok(r) => Err(format!("{}: {}", r.status, r.body)),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }

    /// Reads key `i`; `Ok(None)` when it does not exist.
    async fn read(&mut self, i: u64) -> Result<Option<String>, String> {
        let key = format!("/roll-{i}");
        match self {
            Conn::Zk(s) => s
                .get(&key)
                .await
                .map(|d| d.map(|d| String::from_utf8_lossy(&d).into_owned()))
                .map_err(|e| e.to_string()),
            Conn::Etcd(c) => {
                let body = json!({"key": b64(&key)}).to_string();
                let r = c
                    .post_json("/v3/kv/range", body)
                    .await
                    .map_err(|e| e.to_string())?;
                if !r.is_ok() {
                    return Err(format!("{}: {}", r.status, r.body));
                }
                let v: Value = serde_json::from_str(&r.body).map_err(|e| e.to_string())?;
                Ok(v["kvs"][0]["value"]
                    .as_str()
                    .map(|s| String::from_utf8_lossy(&unb64(s)).into_owned()))
            }
        }
    }
}

/// Writes key after key until `stop`, reading each one back, moving to
/// another member whenever one fails. Bounded by `limit` in any case.
async fn client_loop(
    engine: Engine,
    pods: Api<Pod>,
    name: &'static str,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> ClientReport {
    let mut report = ClientReport::default();
    let start = Instant::now();
    let mut last_ack = Instant::now();
    let mut conn: Option<Conn> = None;
    let mut next_member = 0usize;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) && start.elapsed() < limit {
        if conn.is_none() {
            let ips = member_ips(&pods, name).await;
            if !ips.is_empty() {
                next_member = (next_member + 1) % ips.len();
                conn = Conn::open(engine, &ips[next_member]).await.ok();
            }
            if conn.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let c = conn.as_mut().unwrap();
        match c.write(i).await {
            Ok(()) => {
                report.longest_gap = report.longest_gap.max(last_ack.elapsed());
                last_ack = Instant::now();
                report.acked.push(i);
                match c.read(i).await {
                    Ok(Some(v)) if v == format!("v{i}") => {}
                    Ok(other) => report.bad_reads.push(format!("/roll-{i}: {other:?}")),
                    // The member went away between the write and the read.
                    Err(_) => conn = None,
                }
                i += 1;
            }
            Err(_) => {
                report.failures += 1;
                conn = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    report.longest_gap = report.longest_gap.max(last_ack.elapsed());
    report
}

/// Every acknowledged key, read through every member.
async fn assert_no_write_lost(engine: Engine, pods: &Api<Pod>, name: &str, acked: &[u64]) {
    let ips = member_ips(pods, name).await;
    assert_eq!(ips.len(), 3, "{ips:?}");
    for ip in &ips {
        let mut conn = match Conn::open(engine, ip).await {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot connect to {ip}: {e}; the members say {:#?}",
                members_say(engine, &ips).await
            ),
        };
        let mut missing = Vec::new();
        for i in acked {
            match conn.read(*i).await {
                Ok(Some(v)) if v == format!("v{i}") => {}
                other => missing.push(format!("{i}: {other:?}")),
            }
        }
        assert!(
            missing.is_empty(),
            "{ip} lost {} of {} acknowledged writes: {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(10)]
        );
    }
}

/// What each member says of itself (ZooKeeper's `srvr`), for a failure's
/// message.
async fn members_say(engine: Engine, ips: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for ip in ips {
        let addr = format!("{ip}:{}", engine.port());
        out.push(match engine {
            Engine::Zookeeper => match zookeeper::four_letter(&addr, "srvr", OP_TIMEOUT).await {
                Ok(t) => format!("{addr}: {}", t.replace('\n', "; ")),
                Err(e) => format!("{addr}: {e}"),
            },
            Engine::Etcd => addr,
        });
    }
    out
}

/// What a watcher of the pods saw during the roll.
#[derive(Debug, Default)]
struct RollWatch {
    /// Most members being replaced at one time: absent, terminating, or a
    /// new pod not ready yet. (A member that was ready and fails its probe
    /// while the others elect a leader is not being replaced.)
    most_down: usize,
    /// Most members not ready at one time, for whatever reason.
    most_unready: usize,
    /// Progressing reasons and messages seen, in order, without repeats.
    progressing: Vec<(String, String)>,
    /// Ready reasons seen, in order, without repeats.
    ready: Vec<String>,
}

async fn watch_roll(ns_name: String, name: &'static str, stop: Arc<AtomicBool>) -> RollWatch {
    let client = admin().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns_name);
    let ens: Api<Ensemble> = Api::namespaced(client, &ns_name);
    let mut w = RollWatch::default();
    let mut seen_ready = std::collections::BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(list) = pods
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}")))
            .await
        {
            let live: Vec<&Pod> = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            for p in &live {
                if pod_ready(p) {
                    seen_ready.insert(p.uid().unwrap_or_default());
                }
            }
            let up = live
                .iter()
                .filter(|p| seen_ready.contains(&p.uid().unwrap_or_default()))
                .count();
            let ready = live.iter().filter(|p| pod_ready(p)).count();
            w.most_down = w.most_down.max(3usize.saturating_sub(up));
            w.most_unready = w.most_unready.max(3usize.saturating_sub(ready));
        }
        if let Ok(e) = ens.get(name).await {
            if let Some((_, reason, message, _)) = condition(&e, "Progressing")
                && w.progressing.last() != Some(&(reason.clone(), message.clone()))
            {
                w.progressing.push((reason, message));
            }
            if let Some((_, reason, _, _)) = condition(&e, "Ready")
                && w.ready.last() != Some(&reason)
            {
                w.ready.push(reason);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    w
}

/// The namespace's Events that `keep` selects, oldest first.
async fn events_where(ns: &TestNs, keep: impl Fn(&Event) -> bool) -> Vec<Event> {
    let events: Api<Event> = ns.api();
    let mut list: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| keep(e))
        .collect();
    list.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    list
}

/// The operator's MemberReplaced Events, oldest first.
async fn replaced(ns: &TestNs) -> Vec<String> {
    events_where(ns, |e| e.reason.as_deref() == Some("MemberReplaced"))
        .await
        .into_iter()
        .filter_map(|e| e.note)
        .collect()
}

/// Every pod on the StatefulSet's update revision.
async fn all_updated(ns: &TestNs, name: &str) -> bool {
    let sts: Api<StatefulSet> = ns.api();
    let pods: Api<Pod> = ns.api();
    let Ok(s) = sts.get(name).await else {
        return false;
    };
    let Some(rev) = s.status.and_then(|s| s.update_revision) else {
        return false;
    };
    let list = pods
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}")))
        .await
        .unwrap();
    list.items.len() == 3
        && list
            .items
            .iter()
            .all(|p| p.labels().get("controller-revision-hash") == Some(&rev))
}

/// A settled 3-member Ensemble of `engine` in a namespace of its own, with
/// an operator, and a client writing and reading it (for up to `limit`)
/// since a few seconds.
struct Loaded {
    kc: std::path::PathBuf,
    ns: TestNs,
    op: Operator,
    ens: Ensemble,
    pods: Api<Pod>,
    /// Each member pod's uid before anything else happened.
    uids_before: BTreeMap<String, String>,
    /// Stops the client.
    stop: Arc<AtomicBool>,
    writer: tokio::task::JoinHandle<ClientReport>,
}

async fn under_load(engine: Engine, test: &str, limit: Duration) -> Loaded {
    let name = engine.name();
    let (kc, ns, op) = setup(&format!("{test}-{name}")).await;
    ns.apply_file(&engine.example());
    let ens = wait_settled(&ns, name, 3, 6 * MINUTE).await;
    let pods: Api<Pod> = ns.api();
    let uids_before = pod_uids(&pods, name).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(client_loop(engine, pods.clone(), name, stop.clone(), limit));
    tokio::time::sleep(Duration::from_secs(3)).await;
    Loaded {
        kc,
        ns,
        op,
        ens,
        pods,
        uids_before,
        stop,
        writer,
    }
}

async fn roll_under_load(engine: Engine) {
    let name = engine.name();
    // A client writes and reads throughout (from before the checks of 1).
    let Loaded {
        kc,
        ns,
        mut op,
        ens,
        pods,
        uids_before,
        stop,
        writer,
    } = under_load(engine, "roll", 15 * MINUTE).await;
    // 1. Roles from the engines: one leader, followers, the leader column.
    let leader = assert_roles(&ns, &ens, 3);
    // 2. A watcher samples the pods.
    let watcher = tokio::spawn(watch_roll(ns.name.clone(), name, stop.clone()));

    // 3. A config change rolls the members.
    let roll_start = Instant::now();
    let api: Api<Ensemble> = ns.api();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(engine.change()),
    )
    .await
    .unwrap();

    // 4. Killed after the first member is replaced, a new operator finishes.
    ns.wait_for("the first member replaced", 4 * MINUTE, || async {
        (!replaced(&ns).await.is_empty()).then_some(())
    })
    .await;
    op.kill();
    let _op2 = Operator::start_for_real_node(&kc, &ns.name, "op2");

    ns.wait_for("every member on the new revision", 12 * MINUTE, || async {
        all_updated(&ns, name).await.then_some(())
    })
    .await;
    let ens = wait_settled(&ns, name, 3, 5 * MINUTE).await;
    let roll_time = roll_start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let report = writer.await.unwrap();
    let watch = watcher.await.unwrap();
    let notes = replaced(&ns).await;
    println!(
        "{name}: roll {:.1}s, {} writes acknowledged, {} failed attempts, longest write gap {:.2}s, \
         at most {} member(s) replaced and {} not ready at once, events {notes:#?}, progressing {:#?}",
        roll_time.as_secs_f64(),
        report.acked.len(),
        report.failures,
        report.longest_gap.as_secs_f64(),
        watch.most_down,
        watch.most_unready,
        watch.progressing
    );

    // Every pod was replaced once, one at a time, the leader last.
    let uids_after = pod_uids(&pods, name).await;
    for (pod, uid) in &uids_before {
        assert_ne!(uids_after.get(pod), Some(uid), "{pod} was not replaced");
    }
    assert_eq!(watch.most_down, 1, "at most one member down at a time");
    assert_eq!(notes.len(), 3, "one Event per member: {notes:#?}");
    assert!(
        notes[..2].iter().all(|n| n.contains("(follower)")),
        "followers first: {notes:#?}"
    );
    assert!(
        notes[2].starts_with(&format!("Deleted {leader} (leader)")),
        "the leader {leader} last: {notes:#?}"
    );
    assert!(
        watch
            .progressing
            .iter()
            .any(|(r, m)| r == "RollingUpdate" && m.contains("Replacing member")),
        "{:#?}",
        watch.progressing
    );
    assert!(
        watch.ready.iter().any(|r| r == "MembersOutdated"),
        "{:?}",
        watch.ready
    );
    assert_roles(&ns, &ens, 3);

    // The client kept working: nothing acknowledged was lost, reads saw
    // the writes, and no outage lasted longer than an election and a
    // reconnect.
    assert!(report.acked.len() > 50, "{report:?}");
    assert!(report.bad_reads.is_empty(), "{:?}", report.bad_reads);
    assert!(
        report.longest_gap < Duration::from_secs(15),
        "longest write gap {:?}",
        report.longest_gap
    );
    assert_no_write_lost(engine, &pods, name, &report.acked).await;
    delete_ensemble(&ns, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_rolls_one_member_at_a_time_under_load() {
    roll_under_load(Engine::Zookeeper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_rolls_one_member_at_a_time_under_load() {
    roll_under_load(Engine::Etcd).await;
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64, as etcd's JSON gateway wants keys and values.
fn b64(s: &str) -> String {
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unb64(s: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|c| *c != b'=') {
        let Some(v) = B64.iter().position(|b| *b == c) else {
            continue;
        };
        bits = (bits << 6) | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[test]
fn base64_round_trips() {
    for s in ["", "a", "ab", "abc", "/roll-12345", "v9"] {
        assert_eq!(unb64(&b64(s)), s.as_bytes(), "{s}");
    }
    assert_eq!(b64("/roll-1"), "L3JvbGwtMQ==");
}

/// A change that breaks the engine stops the roll at the first member:
/// the others are left alone and keep the quorum. Fixing the spec replaces
/// the broken member first, then rolls the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_change_stops_at_one_member_and_a_fix_recovers() {
    let engine = Engine::Zookeeper;
    let name = engine.name();
    let (_kc, ns, _op) = setup("roll-broken").await;
    ns.apply_file(&engine.example());
    wait_settled(&ns, name, 3, 6 * MINUTE).await;
    let pods: Api<Pod> = ns.api();
    let before = pod_uids(&pods, name).await;

    // ZooKeeper refuses to start with a non-numeric initLimit.
    let api: Api<Ensemble> = ns.api();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"config": {"initLimit": "ten"}}})),
    )
    .await
    .unwrap();
    ns.wait_for("the first member replaced", 4 * MINUTE, || async {
        (!replaced(&ns).await.is_empty()).then_some(())
    })
    .await;
    // Long enough for a careless roll to have moved on twice.
    tokio::time::sleep(Duration::from_secs(40)).await;
    let notes = replaced(&ns).await;
    assert_eq!(notes.len(), 1, "the roll went on: {notes:#?}");
    let broken = notes[0]
        .strip_prefix("Deleted ")
        .and_then(|n| n.split(' ').next())
        .unwrap()
        .to_string();
    let during = pod_uids(&pods, name).await;
    for (pod, uid) in &before {
        if *pod != broken {
            assert_eq!(during.get(pod), Some(uid), "{pod} was touched");
        }
    }
    let e = api.get(name).await.unwrap();
    let (status, reason, message, _) = condition(&e, "Progressing").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "RollingUpdate")
    );
    assert!(
        message.contains(&format!("Waiting for {broken} to be ready")),
        "{message}"
    );
    assert_eq!(condition(&e, "Ready").unwrap().0, "False");
    // The two members left keep the quorum: a client still writes.
    let ips = member_ips(&pods, name).await;
    let mut wrote = false;
    for ip in &ips {
        if let Ok(mut c) = Conn::open(engine, ip).await {
            wrote |= c.write(1).await.is_ok();
        }
    }
    assert!(wrote, "no member accepted a write");

    // The fix (a value that differs from the default, so that every
    // member has a change to roll) replaces the broken member first, then
    // the others.
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"config": {"initLimit": "12"}}})),
    )
    .await
    .unwrap();
    ns.wait_for("every member on the fixed revision", 8 * MINUTE, || async {
        all_updated(&ns, name).await.then_some(())
    })
    .await;
    let e = wait_settled(&ns, name, 3, 5 * MINUTE).await;
    assert_roles(&ns, &e, 3);
    let notes = replaced(&ns).await;
    assert_eq!(notes.len(), 4, "{notes:#?}");
    assert!(
        notes[1].starts_with(&format!("Deleted {broken} (role unknown)")),
        "{notes:#?}"
    );
    let mut c = Conn::open(engine, &member_ips(&pods, name).await[0])
        .await
        .unwrap();
    assert_eq!(c.read(1).await.unwrap().as_deref(), Some("v1"));
    delete_ensemble(&ns, name).await;
}

/// The engine's own member list, asked of every member: the voting
/// ordinals and the learners, when all members that answer agree.
async fn engine_members(
    engine: Engine,
    pods: &Api<Pod>,
    name: &str,
) -> Option<(Vec<i32>, Vec<i32>)> {
    let mut seen = None;
    for ip in member_ips(pods, name).await {
        let addr = format!("{ip}:{}", engine.port());
        let view = match engine {
            Engine::Zookeeper => {
                let conf = zookeeper::four_letter(&addr, "conf", OP_TIMEOUT)
                    .await
                    .ok()?;
                (voting_ordinals(&conf).into_iter().collect(), vec![])
            }
            Engine::Etcd => {
                let c = etcd::Client::new(&format!("http://{addr}"), OP_TIMEOUT, None).ok()?;
                let (v, l) = etcd_ordinals(&c.member_list().await.ok()?);
                (v.into_iter().collect(), l.into_iter().collect())
            }
        };
        if seen.as_ref().is_some_and(|s| *s != view) {
            return None;
        }
        seen = Some(view);
    }
    seen
}

/// The operator's scale Events, oldest first, as "Reason: note".
async fn scale_events(ns: &TestNs) -> Vec<String> {
    events_where(ns, |e| e.action.as_deref() == Some("Scale"))
        .await
        .into_iter()
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default()
            )
        })
        .collect()
}

/// The members an operator's log says it took a `reason` step for, in
/// order (every step when `reason` is empty). The line is written before
/// the engine call.
fn steps_logged(log: &str, reason: &str) -> Vec<String> {
    let field = format!("reason=\"{reason}\"");
    log.lines()
        .filter(|l| l.contains("taking a membership step"))
        .filter(|l| reason.is_empty() || l.contains(&field))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("member=")))
        .map(str::to_string)
        .collect()
}

/// Every `reason` step the operators took (members 3 and 4) has exactly
/// one Event, except possibly the last step of an operator that the test
/// killed: it may have changed the engine and died before publishing the
/// Event, and the operator that follows finds the change made.
async fn assert_one_event_per_step(
    ns: &TestNs,
    name: &str,
    reason: &str,
    logs: &[&String],
    killed: &[String],
) {
    let evented: Vec<String> = events_where(ns, |e| e.reason.as_deref() == Some(reason))
        .await
        .into_iter()
        .filter_map(|e| e.related?.name)
        .collect();
    let taken: std::collections::BTreeSet<String> =
        logs.iter().flat_map(|l| steps_logged(l, reason)).collect();
    let expected = [format!("{name}-3"), format!("{name}-4")];
    assert_eq!(
        taken.iter().collect::<Vec<_>>(),
        expected.iter().collect::<Vec<_>>(),
        "{reason} steps logged"
    );
    let mut once = evented.clone();
    once.sort();
    once.dedup();
    assert_eq!(
        once.len(),
        evented.len(),
        "one {reason} Event per member: {evented:?}"
    );
    let last_of_killed: Vec<String> = killed
        .iter()
        .filter_map(|l| steps_logged(l, "").pop())
        .collect();
    for member in &taken {
        assert!(
            evented.contains(member) || last_of_killed.contains(member),
            "{reason} {member}: a step taken without its Event; Events {evented:?}, \
             last steps of the killed operators {last_of_killed:?}"
        );
    }
    for member in &evented {
        assert!(
            taken.contains(member),
            "{reason} Event for {member}, no step logged"
        );
    }
}

/// 3 → 5 → 3 under a client that writes and reads throughout, with the
/// operator killed after the first membership change: every step ends
/// with the engine's own member list at the spec's size, and nothing
/// acknowledged is lost.
async fn scale_under_load(engine: Engine) {
    let name = engine.name();
    let Loaded {
        kc,
        ns,
        mut op,
        pods,
        uids_before,
        stop,
        writer,
        ..
    } = under_load(engine, "scale", 20 * MINUTE).await;

    let api: Api<Ensemble> = ns.api();
    let scale = |n: i32| {
        let api = api.clone();
        async move {
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": n}})),
            )
            .await
            .unwrap();
        }
    };
    let members_are = |n: i32| {
        let pods = pods.clone();
        async move {
            let want: Vec<i32> = (0..n).collect();
            let (voting, learners) = engine_members(engine, &pods, name).await?;
            (voting == want && learners.is_empty()).then_some(())
        }
    };

    // Up, with the operator killed after the first member is added.
    let up_start = Instant::now();
    scale(5).await;
    ns.wait_for("the first member added", 5 * MINUTE, || async {
        scale_events(&ns)
            .await
            .iter()
            .any(|e| e.starts_with("MemberAdded"))
            .then_some(())
    })
    .await;
    op.kill();
    let op2 = Operator::start_for_real_node(&kc, &ns.name, "op2");
    ns.wait_for("five voting members in the engine", 10 * MINUTE, || {
        members_are(5)
    })
    .await;
    let ens = wait_settled(&ns, name, 5, 5 * MINUTE).await;
    let up_time = up_start.elapsed();
    assert_roles(&ns, &ens, 5);
    // No running member was restarted by the scale.
    let uids = pod_uids(&pods, name).await;
    for (pod, uid) in &uids_before {
        assert_eq!(
            uids.get(pod),
            Some(uid),
            "{pod} was restarted by the scale-up"
        );
    }

    // Down, with the operator killed after the first member is removed.
    let down_start = Instant::now();
    scale(3).await;
    ns.wait_for("the first member removed", 5 * MINUTE, || async {
        scale_events(&ns)
            .await
            .iter()
            .any(|e| e.starts_with("MemberRemoved"))
            .then_some(())
    })
    .await;
    let mut op2 = op2;
    op2.kill();
    let op3 = Operator::start_for_real_node(&kc, &ns.name, "op3");
    ns.wait_for("three voting members in the engine", 10 * MINUTE, || {
        members_are(3)
    })
    .await;
    ns.wait_for("three member pods", 5 * MINUTE, || async {
        (pod_uids(&pods, name).await.len() == 3).then_some(())
    })
    .await;
    let ens = wait_settled(&ns, name, 3, 5 * MINUTE).await;
    let down_time = down_start.elapsed();
    assert_roles(&ns, &ens, 3);
    let sts: Api<StatefulSet> = ns.api();
    let replicas = sts.get(name).await.unwrap().spec.unwrap().replicas;
    assert_eq!(replicas, Some(3));
    // The removed members' claims follow storage.deleteClaimsOnDelete:
    // true in the etcd example, false (kept) in the ZooKeeper one.
    let claims: Api<PersistentVolumeClaim> = ns.api();
    let removed = [format!("data-{name}-3"), format!("data-{name}-4")];
    if engine == Engine::Etcd {
        ns.wait_for(
            "the removed members' claims deleted",
            2 * MINUTE,
            || async {
                let mut left = 0;
                for c in &removed {
                    left += usize::from(claims.get_opt(c).await.ok()?.is_some());
                }
                (left == 0).then_some(())
            },
        )
        .await;
    } else {
        for c in &removed {
            assert!(
                claims.get_opt(c).await.unwrap().is_some(),
                "{c} was not kept"
            );
        }
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let report = writer.await.unwrap();
    let events = scale_events(&ns).await;
    println!(
        "{name}: 3→5 in {:.1}s, 5→3 in {:.1}s, {} writes acknowledged, {} failed attempts, \
         longest write gap {:.2}s, events {events:#?}",
        up_time.as_secs_f64(),
        down_time.as_secs_f64(),
        report.acked.len(),
        report.failures,
        report.longest_gap.as_secs_f64(),
    );
    let mut reasons = vec!["MemberAdded", "MemberRemoved"];
    if engine == Engine::Etcd {
        reasons.push("MemberPromoted");
    }
    let killed = [op.logs(), op2.logs()];
    let logs = [&killed[0], &killed[1], &op3.logs()];
    for reason in reasons {
        assert_one_event_per_step(&ns, name, reason, &logs, &killed).await;
    }
    assert!(report.acked.len() > 50, "{report:?}");
    assert!(report.bad_reads.is_empty(), "{:?}", report.bad_reads);
    assert!(
        report.longest_gap < Duration::from_secs(15),
        "longest write gap {:?}",
        report.longest_gap
    );
    assert_no_write_lost(engine, &pods, name, &report.acked).await;
    delete_ensemble(&ns, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_scales_3_5_3_through_reconfig() {
    scale_under_load(Engine::Zookeeper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_scales_3_5_3_through_learners() {
    scale_under_load(Engine::Etcd).await;
}
