//! Unit tests of the ShardedStore kind: validation, the children `build`
//! makes, and the primary placement rules. No cluster needed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use kube::api::ObjectMeta;
use tessera_api::common::PodMonitor;
use tessera_api::sharded_store::ShardStatus;
use tessera_api::{Invalid, ShardedStore, ShardedStoreStatus, StoreEngine};

use super::build::pod_host;
use super::orchestrate::{ShardMap, lag_kib};
use super::placement::{Answer, PodView, Role, Step, plan};
use super::redis::redis_conf;
use crate::reconcile::child::{BuildContext, Child, Desired};
use crate::reconcile::{Managed, Observed, RefKind, Reference};

fn example(yaml: &str) -> ShardedStore {
    let mut s: ShardedStore = serde_yaml::from_str(yaml).expect("example parses");
    s.metadata.namespace = Some("demo".into());
    s.metadata.uid = Some("0000-1111".into());
    s
}

fn redis() -> ShardedStore {
    example(include_str!("../../../../examples/shardedstore-redis.yaml"))
}

fn memcached() -> ShardedStore {
    example(include_str!(
        "../../../../examples/shardedstore-memcached.yaml"
    ))
}

/// The caches holding the auth Secret `name` at `version`.
fn with_secret(name: &str, version: &str) -> Observed {
    Observed {
        references: BTreeMap::from([(
            Reference {
                kind: RefKind::Secret,
                name: name.into(),
            },
            Some(ObjectMeta {
                name: Some(name.into()),
                resource_version: Some(version.into()),
                ..Default::default()
            }),
        )]),
        ..Default::default()
    }
}

fn validate(s: &ShardedStore, observed: &Observed) -> Result<super::ValidStore, Invalid> {
    s.validate(&BuildContext::for_tests(), observed)
}

fn desired(s: &ShardedStore, observed: &Observed) -> Desired {
    ShardedStore::build(
        &validate(s, observed).expect("valid"),
        &BuildContext::for_tests(),
    )
}

fn pod_spec(d: &Desired, name: &str) -> PodSpec {
    let sts = d.statefulset(name).expect("statefulset");
    sts.spec.clone().unwrap().template.spec.unwrap()
}

fn container<'a>(spec: &'a PodSpec, name: &str) -> &'a Container {
    spec.containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn rule_path(e: Invalid) -> String {
    match e {
        Invalid::Rule { path, .. } => path,
        other => panic!("expected a rule violation, got {other:?}"),
    }
}

#[test]
fn redis_example_validates_with_its_secret_and_resolves_defaults() {
    let v = validate(&redis(), &with_secret("cache-auth", "7")).unwrap();
    assert_eq!(v.engine, StoreEngine::Redis);
    assert_eq!((v.shards, v.members), (3, 2));
    assert_eq!(v.image, "docker.io/library/redis:7.4");
    let auth = v.auth.expect("auth");
    assert_eq!(
        (auth.secret.as_str(), auth.key.as_str()),
        ("cache-auth", "password")
    );
    assert_eq!(auth.version, "7");
}

#[test]
fn a_missing_auth_secret_is_refused_naming_the_field() {
    let e = validate(&redis(), &Observed::default()).unwrap_err();
    assert!(
        e.to_string().contains("\"cache-auth\" does not exist"),
        "{e}"
    );
    assert_eq!(rule_path(e), "spec.auth.secretRef.name");
}

#[test]
fn memcached_with_replicas_or_auth_is_refused() {
    let mut s = memcached();
    s.spec.replicas_per_shard = 1;
    assert_eq!(
        rule_path(validate(&s, &Observed::default()).unwrap_err()),
        "spec.replicasPerShard"
    );
    let mut s = memcached();
    s.spec.auth = redis().spec.auth;
    assert_eq!(
        rule_path(validate(&s, &with_secret("cache-auth", "1")).unwrap_err()),
        "spec.auth"
    );
}

#[test]
fn owned_config_keys_are_refused() {
    for (mut s, key) in [(redis(), "replicaof"), (memcached(), "port")] {
        s.spec.common.config.insert(key.into(), "x".into());
        let e = validate(&s, &with_secret("cache-auth", "1")).unwrap_err();
        assert_eq!(e.reason(), "OwnedConfigKey", "{e}");
        assert!(e.to_string().contains(key), "{e}");
    }
}

#[test]
fn a_pod_monitor_is_refused() {
    let mut s = memcached();
    s.spec.common.monitoring.pod_monitor = Some(PodMonitor {
        enabled: true,
        ..Default::default()
    });
    assert_eq!(
        rule_path(validate(&s, &Observed::default()).unwrap_err()),
        "spec.monitoring.podMonitor.enabled"
    );
}

fn published(s: &mut ShardedStore, n: i32) {
    s.status = Some(ShardedStoreStatus {
        shards: (0..n)
            .map(|index| ShardStatus {
                index,
                name: format!("shard-{index}"),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    });
}

#[test]
fn changing_the_shard_count_of_a_redis_store_needs_the_new_count_acknowledged() {
    let obs = with_secret("cache-auth", "1");
    let mut s = redis();
    published(&mut s, 3);
    s.spec.shards = 4;
    let e = validate(&s, &obs).unwrap_err();
    assert!(e.to_string().contains("acknowledgeKeyRemapping: 4"), "{e}");
    assert_eq!(rule_path(e), "spec.shards");
    // An acknowledgement of another count does not let this one through.
    s.spec.acknowledge_key_remapping = Some(5);
    assert!(validate(&s, &obs).is_err());
    s.spec.acknowledge_key_remapping = Some(4);
    assert_eq!(validate(&s, &obs).unwrap().shards, 4);
    // Unchanged, or nothing published yet: no acknowledgement needed.
    s.spec.acknowledge_key_remapping = None;
    s.spec.shards = 3;
    assert!(validate(&s, &obs).is_ok());
    let mut fresh = redis();
    fresh.spec.shards = 7;
    assert!(validate(&fresh, &obs).is_ok());
    // A cache remaps freely: a moved key is a miss.
    let mut m = memcached();
    published(&mut m, 4);
    m.spec.shards = 2;
    assert!(validate(&m, &Observed::default()).is_ok());
}

#[test]
fn redis_children_are_one_statefulset_and_pdb_per_shard_behind_one_headless_service() {
    let d = desired(&redis(), &with_secret("cache-auth", "1"));
    let names: Vec<(&str, &str)> = d
        .children
        .iter()
        .map(|c| (c.kind().as_str(), c.name()))
        .collect();
    assert_eq!(
        names,
        [
            ("ConfigMap", "cache-config"),
            ("Service", "cache-headless"),
            ("PodDisruptionBudget", "cache-0"),
            ("StatefulSet", "cache-0"),
            ("PodDisruptionBudget", "cache-1"),
            ("StatefulSet", "cache-1"),
            ("PodDisruptionBudget", "cache-2"),
            ("StatefulSet", "cache-2"),
        ]
    );
    let headless = d.service("cache-headless").unwrap().spec.clone().unwrap();
    assert_eq!(headless.publish_not_ready_addresses, Some(true));
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    // Every shard's pods, whatever their component.
    let sel = headless.selector.unwrap();
    assert_eq!(
        sel.get("app.kubernetes.io/instance").map(String::as_str),
        Some("cache")
    );
    assert!(!sel.contains_key("app.kubernetes.io/component"));
    for i in 0..3 {
        let sts = d
            .statefulset(&format!("cache-{i}"))
            .unwrap()
            .spec
            .clone()
            .unwrap();
        assert_eq!(sts.replicas, Some(2));
        assert_eq!(sts.service_name.as_deref(), Some("cache-headless"));
        let component = format!("shard-{i}");
        assert_eq!(
            sts.selector.match_labels.unwrap()["app.kubernetes.io/component"],
            component
        );
        let pdb = d.pdb(&format!("cache-{i}")).unwrap().spec.clone().unwrap();
        assert_eq!(
            pdb.selector.unwrap().match_labels.unwrap()["app.kubernetes.io/component"],
            component
        );
        assert!(sts.volume_claim_templates.is_some(), "Redis keeps its data");
    }
}

#[test]
fn redis_pods_are_locked_down_and_get_the_password_only_from_the_secret() {
    let d = desired(&redis(), &with_secret("cache-auth", "1"));
    let spec = pod_spec(&d, "cache-1");
    let psc = spec.security_context.clone().unwrap();
    assert_eq!(
        (psc.run_as_non_root, psc.run_as_user),
        (Some(true), Some(999))
    );
    assert_eq!(spec.automount_service_account_token, Some(false));
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["redis", "sidecar", "adapter"]);
    for c in &spec.containers {
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        let mounts = c.volume_mounts.clone().unwrap_or_default();
        assert!(
            mounts
                .iter()
                .any(|m| m.name == "redis-auth" && m.read_only == Some(true)),
            "{} lacks the password mount",
            c.name
        );
    }
    for helper in ["sidecar", "adapter"] {
        let env = container(&spec, helper).env.clone().unwrap();
        assert!(env.iter().any(|e| e.name == "TESSERA_REDIS_PASSWORD_FILE"
            && e.value.as_deref() == Some("/var/run/secrets/tessera/redis/password")));
    }
    let vol = spec
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "redis-auth")
        .unwrap();
    let secret = vol.secret.unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("cache-auth"));
    assert_eq!(secret.items.unwrap()[0].key, "password");
    // The script appends the password to its private copy of the config.
    let script = &container(&pod_spec(&d, "cache-0"), "redis")
        .command
        .clone()
        .unwrap()[2];
    assert!(script.contains("requirepass"), "{script}");
    assert!(script.contains("umask 077"), "{script}");
}

#[test]
fn a_new_password_rolls_the_pods_and_no_auth_means_no_secret() {
    let checksum = |d: &Desired| d.config_checksum("cache-0");
    let a = desired(&redis(), &with_secret("cache-auth", "1"));
    let b = desired(&redis(), &with_secret("cache-auth", "2"));
    assert_ne!(checksum(&a), checksum(&b));
    let mut open = redis();
    open.spec.auth = None;
    let d = desired(&open, &Observed::default());
    let spec = pod_spec(&d, "cache-0");
    assert!(
        spec.volumes
            .clone()
            .unwrap()
            .iter()
            .all(|v| v.secret.is_none())
    );
    let script = &container(&spec, "redis").command.clone().unwrap()[2];
    assert!(!script.contains("requirepass"), "{script}");
}

#[test]
fn redis_conf_boots_every_pod_as_a_replica_of_the_placeholder() {
    let user = BTreeMap::from([
        ("maxmemory".to_string(), "256mb".to_string()),
        ("appendonly".to_string(), "no".to_string()),
        ("save".to_string(), String::new()),
        ("min-replicas-to-write".to_string(), "1".to_string()),
        ("notify-keyspace-events".to_string(), "a \"b\"".to_string()),
    ]);
    assert_eq!(
        redis_conf("demo", "cache", &user),
        "# Generated by tessera-operator for ShardedStore demo/cache. Do not edit: changes are overwritten.\n\
         appendfsync everysec\n\
         appendonly no\n\
         maxmemory 256mb\n\
         min-replicas-max-lag 10\n\
         min-replicas-to-write 1\n\
         notify-keyspace-events \"a \\\"b\\\"\"\n\
         protected-mode no\n\
         save \"\"\n\
         bind 0.0.0.0\n\
         port 6379\n\
         dir /data\n\
         daemonize no\n\
         replicaof 127.0.0.1 6379\n"
    );
}

#[test]
fn memcached_shards_are_one_pod_each_without_claims_or_config() {
    let mut s = memcached();
    s.spec.common.config = BTreeMap::from([("memory-limit".into(), "64".into())]);
    let d = desired(&s, &Observed::default());
    assert!(d.configmap("sessions-config").is_none());
    for i in 0..4 {
        let sts = d
            .statefulset(&format!("sessions-{i}"))
            .unwrap()
            .spec
            .clone()
            .unwrap();
        assert_eq!(sts.replicas, Some(1));
        assert_eq!(sts.volume_claim_templates, None);
    }
    let spec = pod_spec(&d, "sessions-3");
    assert_eq!(
        spec.security_context.clone().unwrap().run_as_user,
        Some(11211)
    );
    assert_eq!(
        container(&spec, "memcached").command.clone().unwrap(),
        [
            "memcached",
            "--memory-limit=64",
            "--port=11211",
            "--listen=0.0.0.0",
            "--udp-port=0"
        ]
    );
    let sidecar = container(&spec, "sidecar").args.clone().unwrap();
    assert!(
        sidecar
            .windows(2)
            .any(|w| w == ["--target", "127.0.0.1:11211"]),
        "{sidecar:?}"
    );
}

#[test]
fn status_keeps_the_last_shard_map_when_nothing_was_observed() {
    let mut s = redis();
    published(&mut s, 3);
    s.status.as_mut().unwrap().shards[1].primary = Some("cache-1-1".into());
    let kept = s.make_status(
        Default::default(),
        &Observed::default(),
        &ShardMap::default(),
    );
    assert_eq!(kept.shards, s.status.clone().unwrap().shards);
    assert_eq!(kept.ready_shards, 0, "no pod is ready");
    let live = ShardMap {
        shards: vec![ShardStatus {
            index: 0,
            name: "shard-0".into(),
            ..Default::default()
        }],
    };
    assert_eq!(
        s.make_status(Default::default(), &Observed::default(), &live)
            .shards,
        live.shards
    );
}

// ---- placement ----

const PORT: i32 = 6379;

fn host(pod: &str) -> String {
    pod_host("cache", "demo", pod)
}

fn primary(offset: i64) -> Option<Answer> {
    Some(Answer {
        role: Role::Primary,
        offset,
    })
}

fn replica_of(of: &str, offset: i64) -> Option<Answer> {
    Some(Answer {
        role: Role::Replica {
            host: of.into(),
            port: PORT,
            linked: true,
        },
        offset,
    })
}

/// A pod fresh from boot: a replica of the placeholder, never linked.
fn placeholder(offset: i64) -> Option<Answer> {
    Some(Answer {
        role: Role::Replica {
            host: "127.0.0.1".into(),
            port: PORT,
            linked: false,
        },
        offset,
    })
}

fn shard(answers: Vec<Option<Answer>>) -> Vec<PodView> {
    answers
        .into_iter()
        .enumerate()
        .map(|(i, answer)| {
            let name = format!("cache-0-{i}");
            PodView {
                host: host(&name),
                name,
                ordinal: i as i32,
                // Ready pods answer; these tests' silent pods are gone.
                ready: answer.is_some(),
                terminating: false,
                answer,
            }
        })
        .collect()
}

fn follow(pod: &str, of: &str) -> Step {
    Step::Follow {
        pod: pod.into(),
        host: host(of),
    }
}

#[test]
fn a_new_shard_waits_for_every_pod_then_promotes_the_first() {
    let p = plan(
        &shard(vec![placeholder(0), None, placeholder(0)]),
        None,
        PORT,
    );
    assert_eq!(p.primary, None);
    assert!(p.steps.is_empty());
    assert!(p.waiting.unwrap().contains("cache-0-1"));

    let p = plan(
        &shard(vec![placeholder(0), placeholder(0), placeholder(0)]),
        None,
        PORT,
    );
    assert_eq!(p.primary.as_deref(), Some("cache-0-0"));
    assert_eq!(
        p.steps,
        [
            Step::Promote {
                pod: "cache-0-0".into(),
                offset: 0
            },
            follow("cache-0-1", "cache-0-0"),
            follow("cache-0-2", "cache-0-0"),
        ]
    );
}

#[test]
fn a_healthy_shard_only_repoints_pods_that_do_not_follow_its_primary() {
    let pods = shard(vec![
        replica_of(&host("cache-0-1"), 90),
        primary(100),
        placeholder(0),
    ]);
    let p = plan(&pods, Some("cache-0-1"), PORT);
    assert_eq!(p.primary.as_deref(), Some("cache-0-1"));
    assert_eq!(p.steps, [follow("cache-0-2", "cache-0-1")]);
    // Steady state: nothing to do.
    let pods = shard(vec![replica_of(&host("cache-0-1"), 90), primary(100)]);
    assert!(plan(&pods, Some("cache-0-1"), PORT).steps.is_empty());
}

#[test]
fn a_lost_primary_fails_over_to_the_most_up_to_date_replica() {
    let pods = shard(vec![
        None,
        replica_of(&host("cache-0-0"), 80),
        replica_of(&host("cache-0-0"), 95),
    ]);
    let p = plan(&pods, Some("cache-0-0"), PORT);
    assert_eq!(p.primary.as_deref(), Some("cache-0-2"));
    assert_eq!(
        p.steps,
        [
            Step::Promote {
                pod: "cache-0-2".into(),
                offset: 95
            },
            follow("cache-0-1", "cache-0-2"),
        ]
    );
}

#[test]
fn a_primary_that_is_slow_to_answer_but_still_ready_is_not_failed_over() {
    let mut pods = shard(vec![None, replica_of(&host("cache-0-0"), 80)]);
    pods[0].ready = true;
    let p = plan(&pods, Some("cache-0-0"), PORT);
    assert_eq!(p.primary, None);
    assert!(p.steps.is_empty(), "{:?}", p.steps);
    assert!(p.waiting.unwrap().contains("still Ready"));
}

#[test]
fn a_deleted_primary_hands_over_before_a_replica_is_promoted() {
    // `kubectl delete pod`: the primary still answers while Redis drains
    // (no writes, replicas catching up). Promoting now would leave the
    // writes it acknowledged since the replica's offset on a pod about to
    // exit: the shard waits, still naming it, and changes nothing.
    let mut pods = shard(vec![
        primary(500),
        replica_of(&host("cache-0-0"), 480),
        replica_of(&host("cache-0-0"), 490),
    ]);
    pods[0].terminating = true;
    pods[0].ready = false;
    let p = plan(&pods, Some("cache-0-0"), PORT);
    assert_eq!(p.primary.as_deref(), Some("cache-0-0"));
    assert!(p.steps.is_empty(), "{:?}", p.steps);
    assert!(p.waiting.unwrap().contains("shutting down"));
    // Once it has exited (no answer), the most up-to-date replica, now
    // caught up, is promoted as for any lost primary.
    pods[0].answer = None;
    pods[2].answer = replica_of(&host("cache-0-0"), 500);
    let p = plan(&pods, Some("cache-0-0"), PORT);
    assert_eq!(p.primary.as_deref(), Some("cache-0-2"));
    assert_eq!(
        p.steps[0],
        Step::Promote {
            pod: "cache-0-2".into(),
            offset: 500
        }
    );
}

#[test]
fn a_terminating_pod_that_is_not_the_recorded_primary_waits_like_a_missing_one() {
    // Only a recorded primary is asked while terminating; any other pod
    // being deleted has no answer, so no choice is made without it.
    let mut pods = shard(vec![None, replica_of(&host("cache-0-0"), 80), None]);
    pods[2].terminating = true;
    let p = plan(&pods, Some("cache-0-0"), PORT);
    assert_eq!(p.primary, None);
    assert!(p.waiting.unwrap().contains("cache-0-2"));
}

#[test]
fn a_failover_waits_for_every_replica_that_could_be_more_up_to_date() {
    let pods = shard(vec![None, replica_of(&host("cache-0-0"), 80), None]);
    let p = plan(&pods, Some("cache-0-0"), PORT);
    assert_eq!(p.primary, None);
    assert!(p.waiting.unwrap().contains("cache-0-2"));
}

#[test]
fn a_primary_restarted_empty_never_becomes_the_copy_its_replicas_follow() {
    // Persistence off: it comes back as a replica of the placeholder with
    // nothing; its replica holds the data and is promoted, and the old
    // primary follows it instead of wiping it.
    let pods = shard(vec![placeholder(0), replica_of(&host("cache-0-0"), 500)]);
    let p = plan(&pods, Some("cache-0-0"), PORT);
    assert_eq!(p.primary.as_deref(), Some("cache-0-1"));
    assert_eq!(
        p.steps,
        [
            Step::Promote {
                pod: "cache-0-1".into(),
                offset: 500
            },
            follow("cache-0-0", "cache-0-1"),
        ]
    );
}

#[test]
fn an_old_primary_that_returns_as_a_primary_is_fenced() {
    let pods = shard(vec![primary(300), primary(420)]);
    let p = plan(&pods, Some("cache-0-1"), PORT);
    assert_eq!(p.primary.as_deref(), Some("cache-0-1"));
    assert_eq!(p.steps, [follow("cache-0-0", "cache-0-1")]);
}

#[test]
fn an_operator_restarted_after_a_promotion_keeps_the_promoted_pod() {
    // Status still names the lost primary; the promoted replica already
    // answers as a primary with the highest offset: no second promotion.
    let pods = shard(vec![None, primary(95), replica_of(&host("cache-0-0"), 95)]);
    let p = plan(&pods, Some("cache-0-0"), PORT);
    assert_eq!(p.primary.as_deref(), Some("cache-0-1"));
    assert_eq!(p.steps, [follow("cache-0-2", "cache-0-1")]);
}

#[test]
fn a_single_pod_shard_without_its_pod_waits() {
    let p = plan(&shard(vec![None]), Some("cache-0-0"), PORT);
    assert_eq!(p.primary, None);
    assert!(p.waiting.unwrap().contains("cache-0-0 is lost"));
    let p = plan(&shard(vec![placeholder(0)]), Some("cache-0-0"), PORT);
    assert_eq!(p.primary.as_deref(), Some("cache-0-0"));
}

#[test]
fn the_children_are_pure_functions_of_the_spec() {
    let obs = with_secret("cache-auth", "1");
    assert_eq!(desired(&redis(), &obs), desired(&redis(), &obs));
    assert!(matches!(
        desired(&redis(), &obs).children[0],
        Child::ConfigMap(_)
    ));
}

#[test]
fn lag_is_reported_in_whole_kib_so_pings_do_not_rewrite_status() {
    assert_eq!(lag_kib(1_000_014, 1_000_000), 0);
    assert_eq!(lag_kib(5 * 1024 + 1, 0), 5);
    // A replica ahead of the primary's last answer (read a moment later).
    assert_eq!(lag_kib(100, 400), 0);
}
