//! End-to-end on the real node: a Broker (Kafka in KRaft mode) whose pods
//! run, from the locally built Kafka image, with the sidecar deciding
//! readiness through the Kafka protocol; records are written with
//! `acks=all` and read back through the project's own Kafka client.
//!
//! Needs `hack/controlplane.sh up` with the real node and the images loaded
//! (`make images`). The host reaches pod IPs directly; the brokers'
//! advertised names resolve only inside the cluster, so the test maps a
//! node id to its pod's IP (a broker's node id is its ordinal).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use support::*;
use tessera_api::Broker;
use tessera_clients::kafka::{Client, ClusterMetadata};

const MINUTE: Duration = Duration::from_secs(60);
const T: Duration = Duration::from_secs(10);

/// The dedicated example, made small enough for a shared test machine:
/// 3 brokers and 3 controllers, each JVM with half of 640 MiB, and a
/// cluster-wide `min.insync.replicas` of 1.
fn small_dedicated() -> Broker {
    let mut b: Broker =
        serde_yaml::from_str(include_str!("../../examples/broker-kafka-dedicated.yaml")).unwrap();
    b.spec.replicas = 3;
    // The cluster asks for one copy in sync, the `orders` topic for two:
    // only a roll that reads each topic's own setting keeps its writes
    // going (the roll test refuses a single NOT_ENOUGH_REPLICAS).
    b.spec
        .common
        .config
        .insert("min.insync.replicas".into(), "1".into());
    b.spec.common.storage.size =
        k8s_openapi::apimachinery::pkg::api::resource::Quantity("256Mi".into());
    b.spec.common.resources = Some(
        serde_json::from_value(serde_json::json!({
            "requests": {"cpu": "50m", "memory": "256Mi"},
            "limits": {"memory": "640Mi"}
        }))
        .unwrap(),
    );
    b
}

/// A Broker's condition of `type_`: status, reason, message.
fn condition(b: &Broker, type_: &str) -> Option<(String, String, String)> {
    let (status, reason, message, _) =
        status_condition(&b.status.as_ref()?.common.conditions, type_)?;
    Some((status, reason, message))
}

/// Ready=True for the current generation with every pod ready.
async fn wait_ready(ns: &TestNs, name: &str, brokers: i32, controllers: i32) -> Broker {
    let api: Api<Broker> = ns.api();
    ns.wait_for(&format!("broker/{name} Ready"), 8 * MINUTE, || {
        let api = api.clone();
        async move {
            let b = api.get(name).await.ok()?;
            let s = b.status.as_ref()?;
            let ready = condition(&b, "Ready").is_some_and(|c| c.0 == "True");
            (s.common.observed_generation == b.metadata.generation
                && ready
                && s.ready_brokers == brokers
                && s.common.ready_replicas == brokers + controllers)
                .then_some(b)
        }
    })
    .await
}

/// The replication listener of broker `id` (pod `<name>-broker-<id>`).
async fn broker_addr(ns: &TestNs, name: &str, id: i32) -> String {
    addr_of(&ns.api(), name, id).await.expect("pod IP")
}

/// The same, None while the pod has no IP (it is being replaced).
async fn addr_of(pods: &Api<Pod>, name: &str, id: i32) -> Option<String> {
    let pod = pods.get(&format!("{name}-broker-{id}")).await.ok()?;
    let ip = pod.status.and_then(|s| s.pod_ip)?;
    Some(format!("{ip}:9091"))
}

async fn metadata(ns: &TestNs, name: &str, topics: Option<Vec<String>>) -> ClusterMetadata {
    let mut c = Client::connect(&broker_addr(ns, name, 0).await, T)
        .await
        .unwrap();
    c.metadata(topics).await.unwrap()
}

/// Waits until every partition of `topic` has a leader and `isr` in-sync
/// replicas, and returns the leaders by partition.
async fn settled_leaders(ns: &TestNs, name: &str, topic: &str, isr: usize) -> BTreeMap<i32, i32> {
    ns.wait_for(
        &format!("{topic}: leaders and {isr} in sync"),
        2 * MINUTE,
        || async {
            let md = metadata(ns, name, Some(vec![topic.to_string()])).await;
            let t = md.topics.first()?;
            (!t.partitions.is_empty()
                && t.partitions
                    .iter()
                    .all(|p| p.error_code == 0 && p.leader >= 0 && p.isr.len() == isr))
            .then(|| t.partitions.iter().map(|p| (p.index, p.leader)).collect())
        },
    )
    .await
}

/// Creates the small dedicated Broker `audit` and waits until it is Ready
/// with a topic `orders` (3 partitions, replication factor 3,
/// `min.insync.replicas=2`) that takes and returns records with `acks=all`.
async fn ready_cluster_with_a_topic(test: &str) -> (TestNs, Operator) {
    let (ns, op) = real_node_operator_as(test, "tessera-operator-e2e-broker").await;
    let name = "audit";
    let api: Api<Broker> = ns.api();
    let created = std::time::Instant::now();
    api.create(&PostParams::default(), &small_dedicated())
        .await
        .unwrap();
    let b = wait_ready(&ns, name, 3, 3).await;
    println!("BENCH broker 3+3 apply to Ready: {:?}", created.elapsed());
    let status = b.status.clone().unwrap();
    let (_, _, message) = condition(&b, "Ready").unwrap();
    assert_eq!(message, "3/3 brokers ready, 3/3 controllers ready");

    // The quorum: three static voters, one active controller among them.
    let quorum = status.controller_quorum.clone().unwrap();
    assert_eq!(quorum.ready_controllers, 3);
    assert_eq!(
        quorum.voters[0],
        format!(
            "1000@{name}-controller-0.{name}-headless.{}.svc:9093",
            ns.name
        )
    );
    assert!(
        (1000..1003).contains(&quorum.leader_id.expect("a leader")),
        "{quorum:?}"
    );

    // The cluster id in status is the one the volumes were formatted with.
    let cluster_id = status.cluster_id.clone().expect("status.clusterId");
    for pod in [format!("{name}-broker-2"), format!("{name}-controller-0")] {
        let meta = exec(
            &ns,
            &pod,
            "kafka",
            &["cat", "/var/lib/kafka/data/kafka-logs/meta.properties"],
        );
        assert!(
            meta.contains(&format!("cluster.id={cluster_id}\n")),
            "{pod}: {meta}"
        );
    }

    // Every broker is registered, under its ordinal.
    let md = metadata(&ns, name, Some(Vec::new())).await;
    let mut ids: Vec<i32> = md.brokers.iter().map(|b| b.node_id).collect();
    ids.sort();
    assert_eq!(ids, [0, 1, 2]);
    assert_eq!(md.cluster_id.as_deref(), Some(cluster_id.as_str()));
    assert_eq!(
        md.brokers.iter().find(|b| b.node_id == 1).unwrap().host,
        format!("{name}-broker-1.{name}-headless.{}.svc", ns.name)
    );

    // A topic replicated on every broker, two copies needed for a write.
    let mut admin = Client::connect(&broker_addr(&ns, name, 0).await, T)
        .await
        .unwrap();
    admin
        .create_topic("orders", 3, 3, &[("min.insync.replicas", "2")])
        .await
        .unwrap();
    let leaders = settled_leaders(&ns, name, "orders", 3).await;
    assert_eq!(leaders.len(), 3);

    // acks=all, through each partition's leader, and read back.
    for (partition, leader) in &leaders {
        let mut c = Client::connect(&broker_addr(&ns, name, *leader).await, T)
            .await
            .unwrap();
        let values: Vec<Bytes> = (0..20)
            .map(|i| Bytes::from(format!("p{partition}-{i}")))
            .collect();
        let base = c.produce("orders", *partition, &values, -1).await.unwrap();
        assert_eq!(base, 0);
        let got: Vec<Bytes> = c
            .fetch("orders", *partition, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(got, values, "partition {partition}");
    }
    (ns, op)
}

/// A 3+3 cluster reaches Ready with a replicated topic (the checks in
/// `ready_cluster_with_a_topic`), then a config change rolls every pod
/// while a producer writes with `acks=all`.
///
/// Its read-back found the front of a partition's log gone while the Kafka
/// client stamped records 0 (1970), and passes since they carry their
/// creation time. That fits: a 1970 record is past any retention, and a
/// restarted broker runs its first retention check 30 seconds after start.
#[tokio::test]
async fn a_config_change_rolls_every_pod_under_acks_all_writes() {
    let (ns, _op) = ready_cluster_with_a_topic("kafka-roll").await;
    let name = "audit";
    let api: Api<Broker> = ns.api();
    // A config change rolls every pod, one at a time, while a producer
    // writes with acks=all: no acknowledged record may be lost, and no
    // write may be refused for want of in-sync replicas (that would mean
    // a broker was restarted while a partition was at min.insync).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let producer = tokio::spawn(produce_until(
        ns.api(),
        name.to_string(),
        "orders".to_string(),
        stop_rx,
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = revisions(&ns, name).await;
    let start = std::time::Instant::now();
    // Creation timestamps have whole seconds.
    let changed_at = k8s_openapi::jiff::Timestamp::now()
        .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(1))
        .unwrap();
    let mut changed = api.get(name).await.unwrap();
    changed
        .spec
        .common
        .config
        .insert("log.retention.hours".into(), "100".into());
    api.replace(name, &PostParams::default(), &changed)
        .await
        .unwrap();
    ns.wait_for(
        "every pod restarted on the new template",
        15 * MINUTE,
        || async { rolled(&ns, name, &before).await.then_some(()) },
    )
    .await;
    wait_ready(&ns, name, 3, 3).await;
    println!("BENCH broker roll 3+3: {:?}", start.elapsed());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_tx.send(true).unwrap();
    let produced = producer.await.unwrap();
    assert!(
        produced.acked.len() > 50,
        "the producer kept writing: {} acknowledged, errors {:?}",
        produced.acked.len(),
        produced.errors
    );
    for e in produced.errors.keys() {
        assert!(
            !e.contains("error code 19") && !e.contains("error code 20"),
            "a write was refused for want of in-sync replicas: {:?}",
            produced.errors
        );
    }
    for partition in 0..3 {
        let through = produced
            .acked
            .keys()
            .filter(|(p, _)| *p == partition)
            .map(|(_, o)| *o)
            .max()
            .unwrap_or(0);
        let stored = read_all(&ns, name, "orders", partition, through).await;
        for ((p, offset), value) in produced.acked.iter().filter(|((p, _), _)| *p == partition) {
            assert_eq!(
                stored.get(offset),
                Some(value),
                "acknowledged record {p}/{offset} lost"
            );
        }
    }
    // Every pod was replaced after the change, each with an Event.
    let pods: Api<Pod> = ns.api();
    for pod in pods.list(&Default::default()).await.unwrap() {
        let created = pod.metadata.creation_timestamp.clone().unwrap().0;
        assert!(
            created > changed_at,
            "{} was not restarted by the roll (created {created})",
            pod.name_any()
        );
    }
    let events = events_by_reason(&ns, "RestartedMember", "name");
    // One per restarted pod: each Event is related to its pod, so the
    // Recorder does not fold them into one series.
    assert!(
        events.lines().count() >= 6,
        "a RestartedMember Event per pod of 3 controllers and 3 brokers:\n{events}"
    );

    // The same cluster scales its brokers up and, guarded, back down.
    scale_brokers_3_4_3(&ns, name).await;
    // And a broker's volume goes wrong, twice.
    volumes_are_never_reformatted(&ns, name).await;
}

/// A broker whose volume says another cluster is refused, loudly, with the
/// volume untouched; a broker whose claim is deleted starts on a new,
/// empty volume formatted for this cluster and copies its partitions back.
async fn volumes_are_never_reformatted(ns: &TestNs, name: &str) {
    let api: Api<Broker> = ns.api();
    let pods: Api<Pod> = ns.api();
    let claims: Api<PersistentVolumeClaim> = ns.api();
    let pod = format!("{name}-broker-2");
    let claim = format!("data-{pod}");
    let cluster_id = api
        .get(name)
        .await
        .unwrap()
        .status
        .unwrap()
        .cluster_id
        .unwrap();

    // What each partition of `orders` holds, through a last record written
    // with acks=all.
    let mut before = BTreeMap::new();
    for partition in 0..3 {
        let leader = leader_of(&pods, name, "orders", partition).await.unwrap();
        let mut c = Client::connect(&broker_addr(ns, name, leader).await, T)
            .await
            .unwrap();
        let last = c
            .produce("orders", partition, &[Bytes::from("marker")], -1)
            .await
            .unwrap();
        before.insert(
            partition,
            (last, read_all(ns, name, "orders", partition, last).await),
        );
    }

    // 1. The volume now names another cluster: the broker refuses to
    //    start, status quotes why, and the volume is not reformatted.
    let foreign = "AAAAAAAAAAAAAAAAAAAAAA";
    exec(
        ns,
        &pod,
        "kafka",
        &[
            "sed",
            "-i",
            &format!("s/^cluster.id=.*/cluster.id={foreign}/"),
            "/var/lib/kafka/data/kafka-logs/meta.properties",
        ],
    );
    let claim_uid = claims.get(&claim).await.unwrap().uid();
    pods.delete(&pod, &Default::default()).await.unwrap();
    let message = ns
        .wait_for("the foreign volume reported", 4 * MINUTE, || {
            let api = api.clone();
            async move {
                let b = api.get(name).await.ok()?;
                let (status, reason, message) = condition(&b, "Degraded")?;
                (status == "True" && reason == "MemberFailing").then_some(message)
            }
        })
        .await;
    assert!(
        message.starts_with(&format!("{pod} (kafka): The volume was left untouched")),
        "{message}"
    );
    assert!(
        message.contains(foreign) && message.contains(&cluster_id),
        "{message}"
    );
    assert_eq!(claims.get(&claim).await.unwrap().uid(), claim_uid);

    // 2. The claim deleted with its pod: a new, empty volume.
    claims.delete(&claim, &Default::default()).await.unwrap();
    pods.delete(&pod, &Default::default()).await.unwrap();
    ns.wait_for("the broker back on a new volume", 5 * MINUTE, || async {
        let c = claims.get_opt(&claim).await.ok()??;
        if c.uid() == claim_uid {
            return None;
        }
        let p = pods.get_opt(&pod).await.ok()??;
        // A pod made while the old claim was still being deleted waits for
        // it forever: replace it.
        let stuck = p.status.as_ref()?.phase.as_deref() == Some("Pending")
            && p.metadata.creation_timestamp.as_ref()?.0
                < c.metadata.creation_timestamp.as_ref()?.0;
        if stuck {
            let _ = pods.delete(&pod, &Default::default()).await;
            return None;
        }
        tessera_operator::reconcile::status::pod_ready(&p).then_some(())
    })
    .await;
    let meta = exec(
        ns,
        &pod,
        "kafka",
        &["cat", "/var/lib/kafka/data/kafka-logs/meta.properties"],
    );
    assert!(
        meta.contains(&format!("cluster.id={cluster_id}\n")),
        "{meta}"
    );
    wait_ready(ns, name, 3, 3).await;
    // Every partition back on three in-sync replicas, holding what it held.
    settled_leaders(ns, name, "orders", 3).await;
    for (partition, (last, held)) in before {
        assert_eq!(
            read_all(ns, name, "orders", partition, last).await,
            held,
            "orders-{partition}"
        );
    }
    let b = api.get(name).await.unwrap();
    assert_eq!(condition(&b, "Degraded").unwrap().0, "False");
}

/// `kubectl get events` of one reason in the test's namespace, in `output`.
fn events_by_reason(ns: &TestNs, reason: &str, output: &str) -> String {
    kubectl_ok(&[
        "-n",
        &ns.name,
        "get",
        "events",
        "--field-selector",
        &format!("reason={reason}"),
        "-o",
        output,
    ])
}

/// The Broker's `spec.replicas` set to `n`.
async fn scale_brokers(ns: &TestNs, name: &str, n: i32) {
    let api: Api<Broker> = ns.api();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": n}})),
    )
    .await
    .unwrap();
}

/// The brokers' StatefulSet's `spec.replicas`.
async fn broker_statefulset(ns: &TestNs, name: &str) -> Option<i32> {
    let sets: Api<StatefulSet> = ns.api();
    sets.get(&format!("{name}-broker"))
        .await
        .ok()?
        .spec?
        .replicas
}

/// The partitions of `topic` that have a replica on broker `id`, with
/// their replicas.
async fn held_by(ns: &TestNs, name: &str, topic: &str, id: i32) -> Vec<(i32, Vec<i32>)> {
    let md = metadata(ns, name, Some(vec![topic.to_string()])).await;
    md.topics
        .iter()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.replicas.contains(&id))
        .map(|p| (p.index, p.replicas.clone()))
        .collect()
}

/// 3 → 4 adds a registered broker; 4 → 3 is refused while broker 3 holds
/// replicas, goes on once they are moved, and unregisters broker 3.
async fn scale_brokers_3_4_3(ns: &TestNs, name: &str) {
    let api: Api<Broker> = ns.api();
    let start = std::time::Instant::now();
    scale_brokers(ns, name, 4).await;
    let b = wait_ready(ns, name, 4, 3).await;
    println!(
        "BENCH broker scale 3 to 4 brokers, to Ready: {:?}",
        start.elapsed()
    );
    let md = metadata(ns, name, Some(Vec::new())).await;
    let mut ids: Vec<i32> = md.brokers.iter().map(|b| b.node_id).collect();
    ids.sort();
    assert_eq!(ids, [0, 1, 2, 3], "broker 3 registered");
    assert_eq!(b.status.unwrap().registered_broker_ids, [0, 1, 2, 3]);

    // A topic with replicas on broker 3: placed there on purpose.
    let mut admin = Client::connect(&broker_addr(ns, name, 0).await, T)
        .await
        .unwrap();
    admin.create_topic("spread", 4, 3, &[]).await.unwrap();
    settled_leaders(ns, name, "spread", 3).await;
    admin
        .reassign_partitions("spread", &[(0, vec![3, 0, 1]), (1, vec![1, 2, 3])])
        .await
        .unwrap();
    ns.wait_for(
        "broker 3 holding spread-0 and spread-1",
        2 * MINUTE,
        || async {
            let held: Vec<i32> = held_by(ns, name, "spread", 3)
                .await
                .iter()
                .map(|p| p.0)
                .collect();
            (held.contains(&0) && held.contains(&1)).then_some(())
        },
    )
    .await;

    // 4 → 3: refused, saying why, and broker 3 stays.
    scale_brokers(ns, name, 3).await;
    let blocked = ns
        .wait_for("the scale-down refused", 2 * MINUTE, || {
            let api = api.clone();
            async move {
                let b = api.get(name).await.ok()?;
                let (status, reason, message) = condition(&b, "Degraded")?;
                (status == "True" && reason == "ScaleDownBlocked").then_some(message)
            }
        })
        .await;
    assert!(
        blocked.contains("broker 3 still holds") && blocked.contains("spread-0"),
        "{blocked}"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        broker_statefulset(ns, name).await,
        Some(4),
        "shrunk while blocked"
    );
    let pods: Api<Pod> = ns.api();
    assert!(
        pods.get_opt(&format!("{name}-broker-3"))
            .await
            .unwrap()
            .is_some()
    );

    // Moved away: the scale-down goes on and broker 3 is unregistered.
    let moves: Vec<(i32, Vec<i32>)> = held_by(ns, name, "spread", 3)
        .await
        .into_iter()
        .map(|(p, _)| (p, vec![0, 1, 2]))
        .collect();
    admin.reassign_partitions("spread", &moves).await.unwrap();
    let start = std::time::Instant::now();
    ns.wait_for("broker 3 removed", 5 * MINUTE, || async {
        let gone = broker_statefulset(ns, name).await == Some(3)
            && pods
                .get_opt(&format!("{name}-broker-3"))
                .await
                .ok()?
                .is_none();
        gone.then_some(())
    })
    .await;
    let b = ns
        .wait_for("broker 3 unregistered", 2 * MINUTE, || {
            let api = api.clone();
            async move {
                let b = api.get(name).await.ok()?;
                (b.status.as_ref()?.registered_broker_ids == [0, 1, 2]).then_some(b)
            }
        })
        .await;
    assert_ne!(
        condition(&b, "Degraded").map(|c| c.1),
        Some("ScaleDownBlocked".to_string())
    );
    // The controller no longer knows broker 3.
    let mut admin = Client::connect(&broker_addr(ns, name, 0).await, T)
        .await
        .unwrap();
    assert_eq!(
        admin.unregister_broker(3).await.unwrap(),
        tessera_clients::kafka::Unregistered::NotRegistered
    );
    let events = events_by_reason(ns, "BrokerUnregistered", "jsonpath={.items[*].message}");
    assert!(events.contains("Unregistered broker 3"), "{events}");
    wait_ready(ns, name, 3, 3).await;
    println!(
        "BENCH broker scale 4 to 3 brokers, from the replicas moved to Ready: {:?}",
        start.elapsed()
    );
}

/// What a producer with `acks=all` saw: every acknowledged record by
/// partition and offset, and the errors by message.
#[derive(Default)]
struct Produced {
    acked: BTreeMap<(i32, i64), Bytes>,
    errors: BTreeMap<String, u32>,
}

/// Writes one record at a time to `topic` (3 partitions, round robin)
/// until `stop`, following leadership changes.
async fn produce_until(
    pods: Api<Pod>,
    name: String,
    topic: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Produced {
    let mut out = Produced::default();
    let mut n = 0u64;
    let mut clients: BTreeMap<i32, Client> = BTreeMap::new();
    while !*stop.borrow() {
        let partition = (n % 3) as i32;
        let value = Bytes::from(format!("r-{n}"));
        let result = async {
            let leader = leader_of(&pods, &name, &topic, partition).await?;
            let c = match clients.entry(leader) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let addr = addr_of(&pods, &name, leader)
                        .await
                        .ok_or_else(|| "no pod IP".to_string())?;
                    e.insert(Client::connect(&addr, T).await.map_err(|e| e.to_string())?)
                }
            };
            c.produce(&topic, partition, std::slice::from_ref(&value), -1)
                .await
                .map_err(|e| {
                    clients.remove(&leader);
                    e.to_string()
                })
        }
        .await;
        match result {
            Ok(offset) => {
                out.acked.insert((partition, offset), value);
                n += 1;
            }
            Err(e) => {
                *out.errors.entry(e).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    out
}

/// The leader of a partition, asked of any broker that answers.
async fn leader_of(
    pods: &Api<Pod>,
    name: &str,
    topic: &str,
    partition: i32,
) -> Result<i32, String> {
    for id in 0..3 {
        let Some(addr) = addr_of(pods, name, id).await else {
            continue;
        };
        let Ok(mut c) = Client::connect(&addr, T).await else {
            continue;
        };
        if let Ok(md) = c.metadata(Some(vec![topic.to_string()])).await {
            let leader = md
                .topics
                .first()
                .and_then(|t| t.partitions.iter().find(|p| p.index == partition))
                .map(|p| p.leader)
                .unwrap_or(-1);
            if leader >= 0 {
                return Ok(leader);
            }
        }
    }
    Err("no leader known".into())
}

/// Every record of a partition up to offset `through`, read from whichever
/// broker the metadata names as its leader.
///
/// Right after a roll that answer can be stale: a broker that just lost the
/// leadership still serves consumer fetches as a follower (fetch from
/// follower, Fetch v11+), but only up to its own high watermark, which lags
/// while it catches up. So an empty answer or an error is not the end of
/// the log: ask again, for up to a minute, until the read reaches
/// `through`. A lost record then shows as a missing offset below records
/// that were read, which the caller checks; a lost tail shows as the read
/// never reaching `through`.
async fn read_all(
    ns: &TestNs,
    name: &str,
    topic: &str,
    partition: i32,
    through: i64,
) -> BTreeMap<i64, Bytes> {
    let pods: Api<Pod> = ns.api();
    let mut out: BTreeMap<i64, Bytes> = BTreeMap::new();
    let deadline = std::time::Instant::now() + MINUTE;
    let mut last = String::new();
    while out.keys().last().is_none_or(|o| *o < through) {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic}-{partition}: read up to {:?} of {through} in a minute; last answer: {last}",
            out.keys().last()
        );
        let next: i64 = out.keys().last().map_or(0, |o: &i64| o + 1);
        let got = async {
            let leader = leader_of(&pods, name, topic, partition).await?;
            let mut c = Client::connect(&broker_addr(ns, name, leader).await, T)
                .await
                .map_err(|e| e.to_string())?;
            c.fetch(topic, partition, next)
                .await
                .map_err(|e| format!("broker {leader}: {e}"))
        }
        .await;
        match got {
            Ok(records) if !records.is_empty() => {
                out.extend(records);
                continue;
            }
            Ok(_) => last = format!("nothing at offset {next}"),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    out
}

/// The update revision of each StatefulSet, as its controller last saw it.
async fn revisions(ns: &TestNs, name: &str) -> Vec<Option<String>> {
    let sets: Api<k8s_openapi::api::apps::v1::StatefulSet> = ns.api();
    let mut out = Vec::new();
    for component in ["broker", "controller"] {
        let sts = sets.get(&format!("{name}-{component}")).await.ok();
        out.push(sts.and_then(|s| s.status?.update_revision));
    }
    out
}

/// Every pod on a revision of its StatefulSet other than `before`, the
/// StatefulSets' latest spec observed.
async fn rolled(ns: &TestNs, name: &str, before: &[Option<String>]) -> bool {
    let sets: Api<k8s_openapi::api::apps::v1::StatefulSet> = ns.api();
    let pods: Api<Pod> = ns.api();
    for (component, old) in ["broker", "controller"].iter().zip(before) {
        let Ok(sts) = sets.get(&format!("{name}-{component}")).await else {
            return false;
        };
        let generation = sts.metadata.generation;
        let Some(status) = sts.status else {
            return false;
        };
        if status.observed_generation < generation || status.update_revision == *old {
            return false;
        }
        for i in 0..3 {
            let Ok(pod) = pods.get(&format!("{name}-{component}-{i}")).await else {
                return false;
            };
            if pod.labels().get("controller-revision-hash") != status.update_revision.as_ref() {
                return false;
            }
        }
    }
    true
}
