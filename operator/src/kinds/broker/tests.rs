//! Tests of the Broker `validate` and `build`: no cluster needed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use tessera_api::{Broker, BrokerStatus, Invalid};

use super::identity::{CLUSTER_ID_ANNOTATION, from_uid};
use crate::reconcile::child::{BuildContext, ChildKind, Desired};
use crate::reconcile::{Managed, Observed};

const UID: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";

fn example(yaml: &str) -> Broker {
    let mut b: Broker = serde_yaml::from_str(yaml).expect("example parses");
    b.metadata.namespace = Some("demo".into());
    b.metadata.uid = Some(UID.into());
    b
}

/// `events`: 3 brokers, the first 3 also controllers.
fn combined() -> Broker {
    example(include_str!("../../../../examples/broker-kafka.yaml"))
}

/// `audit`: 5 brokers and 3 dedicated controllers.
fn dedicated() -> Broker {
    example(include_str!(
        "../../../../examples/broker-kafka-dedicated.yaml"
    ))
}

fn invalid(b: &Broker) -> Invalid {
    b.validate(&BuildContext::for_tests(), &Observed::default())
        .expect_err("invalid")
}

fn desired(b: &Broker) -> Desired {
    let ctx = BuildContext::for_tests();
    let valid = b.validate(&ctx, &Observed::default()).expect("valid");
    Broker::build(&valid, &ctx)
}

fn file(d: &Desired, cm: &str, key: &str) -> String {
    d.configmap(cm).expect("configmap").data.clone().unwrap()[key].clone()
}

fn pod_spec(d: &Desired, sts: &str) -> PodSpec {
    d.statefulset(sts)
        .expect("statefulset")
        .spec
        .clone()
        .unwrap()
        .template
        .spec
        .unwrap()
}

fn container(d: &Desired, sts: &str, name: &str) -> Container {
    pod_spec(d, sts)
        .containers
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("container {name} in {sts}"))
}

fn script(d: &Desired, sts: &str) -> String {
    container(d, sts, "kafka").command.unwrap()[2].clone()
}

#[test]
fn dedicated_controllers_and_brokers_are_two_statefulsets_with_disjoint_ids() {
    let d = desired(&dedicated());
    let names: Vec<(ChildKind, &str)> = d.children.iter().map(|c| (c.kind(), c.name())).collect();
    assert_eq!(
        names,
        vec![
            (ChildKind::ConfigMap, "audit-config"),
            (ChildKind::Service, "audit-headless"),
            (ChildKind::Service, "audit"),
            (ChildKind::PodDisruptionBudget, "audit-broker"),
            (ChildKind::StatefulSet, "audit-broker"),
            (ChildKind::PodDisruptionBudget, "audit-controller"),
            (ChildKind::StatefulSet, "audit-controller"),
        ]
    );
    let replicas = |n: &str| d.statefulset(n).unwrap().spec.as_ref().unwrap().replicas;
    assert_eq!(replicas("audit-broker"), Some(5));
    assert_eq!(replicas("audit-controller"), Some(3));
    // Controllers are 1000.., brokers their ordinal.
    assert!(script(&d, "audit-controller").contains("node_id=$((ordinal + 1000))"));
    assert!(script(&d, "audit-broker").contains("node_id=$((ordinal + 0))"));

    let controller = file(&d, "audit-config", "controller.properties");
    let voters = "controller.quorum.voters=\
        1000@audit-controller-0.audit-headless.demo.svc:9093,\
        1001@audit-controller-1.audit-headless.demo.svc:9093,\
        1002@audit-controller-2.audit-headless.demo.svc:9093\n";
    assert!(controller.contains(voters), "{controller}");
    assert!(
        controller.contains("\nprocess.roles=controller\n"),
        "{controller}"
    );
    assert!(
        controller.contains("\nlisteners=CONTROLLER://:9093\n"),
        "{controller}"
    );
    assert!(
        !controller.contains("inter.broker.listener.name"),
        "{controller}"
    );

    let broker = file(&d, "audit-config", "broker.properties");
    assert!(broker.contains(voters), "{broker}");
    assert!(broker.contains("\nprocess.roles=broker\n"), "{broker}");
    assert!(
        broker.contains("\nlisteners=REPLICATION://:9091,CLIENT://:9092\n"),
        "{broker}"
    );
    assert!(
        broker.contains(
            "\nlistener.security.protocol.map=CONTROLLER:PLAINTEXT,REPLICATION:PLAINTEXT,CLIENT:PLAINTEXT\n"
        ),
        "{broker}"
    );
    assert!(broker.contains("\ninter.broker.listener.name=REPLICATION\n"));
    assert!(broker.contains("\nlog.dirs=/var/lib/kafka/data/kafka-logs\n"));
    // Brokers advertise their own stable name per listener.
    let s = script(&d, "audit-broker");
    assert!(
        s.contains("advertised.listeners=REPLICATION://${host}:9091,CLIENT://${host}:9092"),
        "{s}"
    );
    assert!(
        s.contains(r#"host="${HOSTNAME}.audit-headless.demo.svc""#),
        "{s}"
    );
}

#[test]
fn combined_mode_makes_the_first_brokers_controllers() {
    let d = desired(&combined());
    assert!(d.statefulset("events-controller").is_none());
    assert!(d.statefulset("events-broker").is_some());
    let combined = file(&d, "events-config", "combined.properties");
    assert!(
        combined.contains("\nprocess.roles=broker,controller\n"),
        "{combined}"
    );
    assert!(
        combined.contains("\nlisteners=REPLICATION://:9091,CLIENT://:9092,CONTROLLER://:9093\n"),
        "{combined}"
    );
    assert!(combined.contains(
        "controller.quorum.voters=0@events-broker-0.events-headless.demo.svc:9093,\
         1@events-broker-1.events-headless.demo.svc:9093,\
         2@events-broker-2.events-headless.demo.svc:9093\n"
    ));
    let s = script(&d, "events-broker");
    assert!(
        s.contains(r#"if [ "$ordinal" -lt 3 ]; then role=combined; fi"#),
        "{s}"
    );
    // The example's own settings win over the defaults.
    let broker = file(&d, "events-config", "broker.properties");
    assert!(broker.contains("\nlog.retention.hours=72\n"), "{broker}");
    assert!(broker.contains("\nmin.insync.replicas=2\n"), "{broker}");
}

#[test]
fn replication_defaults_fit_the_number_of_brokers() {
    let mut b = dedicated();
    for (brokers, rf, isr) in [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)] {
        b.spec.replicas = brokers;
        let f = file(&desired(&b), "audit-config", "broker.properties");
        for (key, want) in [
            ("default.replication.factor", rf),
            ("offsets.topic.replication.factor", rf),
            ("transaction.state.log.replication.factor", rf),
            ("min.insync.replicas", isr),
            ("transaction.state.log.min.isr", isr),
        ] {
            assert!(
                f.contains(&format!("\n{key}={want}\n")),
                "{brokers} brokers: {key}={want}\n{f}"
            );
        }
    }
}

#[test]
fn storage_is_formatted_on_every_start_with_the_recorded_cluster_id() {
    let d = desired(&dedicated());
    let id = from_uid(UID).unwrap();
    assert_eq!(id, "a6e4EJ2tEdGAtADAT9QwyA");
    for sts in ["audit-broker", "audit-controller"] {
        let s = script(&d, sts);
        assert!(
            s.contains(
                r#"format --cluster-id="$TESSERA_KAFKA_CLUSTER_ID" -c "$cfg" --ignore-formatted"#
            ),
            "{s}"
        );
        assert!(s.contains("-cp '/opt/kafka/libs/*' kafka.Kafka"), "{s}");
        let env = container(&d, sts, "kafka").env.unwrap();
        let cid = env
            .iter()
            .find(|e| e.name == "TESSERA_KAFKA_CLUSTER_ID")
            .unwrap();
        assert_eq!(cid.value.as_deref(), Some(id.as_str()));
    }
}

#[test]
fn the_cluster_id_is_never_regenerated() {
    // Recorded in status: kept even when the uid would give another.
    let mut b = dedicated();
    b.status = Some(BrokerStatus {
        cluster_id: Some("MkU3OEVBNTcwNTJENDM2Qg".into()),
        ..Default::default()
    });
    let v = b
        .validate(&BuildContext::for_tests(), &Observed::default())
        .unwrap();
    assert_eq!(v.cluster_id.as_str(), "MkU3OEVBNTcwNTJENDM2Qg");

    // An annotation that contradicts the recorded id is refused.
    b.metadata.annotations = Some(BTreeMap::from([(
        CLUSTER_ID_ANNOTATION.to_string(),
        "AAAAAAAAAAAAAAAAAAAAAA".to_string(),
    )]));
    let e = invalid(&b);
    assert_eq!(e.reason(), "RuleViolation");
    assert!(e.to_string().contains("cannot change"), "{e}");

    // Without a status, the annotation adopts an earlier cluster's volumes.
    b.status = None;
    let v = b
        .validate(&BuildContext::for_tests(), &Observed::default())
        .unwrap();
    assert_eq!(v.cluster_id.as_str(), "AAAAAAAAAAAAAAAAAAAAAA");

    // The status reports it.
    let status = b.make_status(
        Default::default(),
        &Observed::default(),
        &Default::default(),
    );
    assert_eq!(status.cluster_id.as_deref(), Some("AAAAAAAAAAAAAAAAAAAAAA"));
}

#[test]
fn bad_cluster_id_annotations_are_refused_naming_the_annotation() {
    for (bad, why) in [
        ("short", "22 characters"),
        ("AAAAAAAAAAAAAAAAAAAA+A", "base64url"),
        ("AAAAAAAAAAAAAAAAAAAAAB", "last character"),
    ] {
        let mut b = dedicated();
        b.metadata.annotations = Some(BTreeMap::from([(
            CLUSTER_ID_ANNOTATION.to_string(),
            bad.to_string(),
        )]));
        let e = invalid(&b).to_string();
        assert!(
            e.contains(CLUSTER_ID_ANNOTATION) && e.contains(why),
            "{bad}: {e}"
        );
    }
    let mut b = dedicated();
    b.metadata.uid = Some("not-a-uuid".into());
    assert!(invalid(&b).to_string().contains("metadata.uid"));
}

#[test]
fn bad_listeners_versions_and_monitors_are_refused() {
    let mut b = dedicated();
    b.spec.listeners[0].tls = true;
    let e = invalid(&b).to_string();
    assert!(e.starts_with("spec.listeners[0].tls:"), "{e}");

    let mut b = dedicated();
    b.spec.listeners[0].port = 8095;
    assert!(
        invalid(&b)
            .to_string()
            .starts_with("spec.listeners[0].port:")
    );
    b.spec.listeners[0].port = 9121;
    assert!(
        invalid(&b)
            .to_string()
            .starts_with("spec.listeners[0].port:")
    );

    for bad in ["2.8.0", "4.0.0", "3", "latest", "3.x"] {
        let mut b = dedicated();
        b.spec.common.version = Some(bad.into());
        let e = invalid(&b).to_string();
        assert!(e.starts_with("spec.version:"), "{bad}: {e}");
    }

    let mut b = dedicated();
    b.spec.common.monitoring.pod_monitor = Some(tessera_api::common::PodMonitor {
        enabled: true,
        ..Default::default()
    });
    assert!(
        invalid(&b)
            .to_string()
            .starts_with("spec.monitoring.podMonitor.enabled:")
    );

    let mut b = dedicated();
    b.spec.common.config = BTreeMap::from([("node.id".into(), "7".into())]);
    assert_eq!(invalid(&b).reason(), "OwnedConfigKey");
}

#[test]
fn pods_run_non_root_read_only_with_the_sidecar_deciding_readiness() {
    let d = desired(&dedicated());
    for sts in ["audit-broker", "audit-controller"] {
        let spec = pod_spec(&d, sts);
        let psc = spec.security_context.unwrap();
        assert_eq!(psc.run_as_user, Some(1000));
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["kafka", "sidecar", "adapter"]);
        for c in &spec.containers {
            let sc = c.security_context.clone().unwrap();
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
            assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".into()]));
        }
        let kafka = container(&d, sts, "kafka");
        assert_eq!(
            kafka
                .readiness_probe
                .unwrap()
                .http_get
                .unwrap()
                .path
                .as_deref(),
            Some("/readyz")
        );
        assert!(kafka.startup_probe.is_some());
    }
    // Brokers: the sidecar checks this broker's own id (its ordinal).
    let sidecar = container(&d, "audit-broker", "sidecar");
    assert!(
        sidecar
            .args
            .as_ref()
            .unwrap()
            .contains(&"127.0.0.1:9091".to_string())
    );
    let env = &sidecar.env.unwrap()[0];
    assert_eq!(env.name, "TESSERA_SIDECAR_KAFKA_NODE_ID");
    assert_eq!(
        env.value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    // Controllers: the sidecar asks the quorum.
    let args = container(&d, "audit-controller", "sidecar").args.unwrap();
    assert!(args.contains(&"127.0.0.1:9093".to_string()), "{args:?}");
    assert!(args.windows(2).any(|w| w == ["--kafka-role", "controller"]));
}

#[test]
fn heap_follows_the_memory_limit() {
    let heap = |b: &Broker| {
        container(&desired(b), "audit-broker", "kafka")
            .env
            .unwrap()
            .into_iter()
            .find(|e| e.name == "KAFKA_HEAP_OPTS")
            .and_then(|e| e.value)
            .unwrap()
    };
    let mut b = dedicated();
    assert_eq!(heap(&b), "-Xmx512m");
    b.spec.common.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
        limits: Some(BTreeMap::from([("memory".into(), Quantity("1Gi".into()))])),
        ..Default::default()
    });
    assert_eq!(heap(&b), "-XX:MaxRAMPercentage=50.0");
}

#[test]
fn a_config_change_rolls_only_the_components_that_read_it() {
    let checksum = |d: &Desired, sts: &str| d.config_checksum(sts);
    let before = desired(&dedicated());
    let mut b = dedicated();
    b.spec.common.config = BTreeMap::from([("log.retention.hours".into(), "1".into())]);
    let after = desired(&b);
    // Every role's file carries the user config: both roll.
    assert_ne!(
        checksum(&before, "audit-broker"),
        checksum(&after, "audit-broker")
    );
    assert_ne!(
        checksum(&before, "audit-controller"),
        checksum(&after, "audit-controller")
    );
    // Adding a listener changes the brokers' file only.
    let mut b = dedicated();
    b.spec.listeners.push(tessera_api::broker::Listener {
        name: "EXTRA".into(),
        port: 9095,
        tls: false,
    });
    let after = desired(&b);
    assert_ne!(
        checksum(&before, "audit-broker"),
        checksum(&after, "audit-broker")
    );
    assert_eq!(
        checksum(&before, "audit-controller"),
        checksum(&after, "audit-controller")
    );
}

#[test]
fn services_give_stable_names_and_a_bootstrap_for_clients() {
    let d = desired(&dedicated());
    let headless = d.service("audit-headless").unwrap().spec.clone().unwrap();
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    assert_eq!(headless.publish_not_ready_addresses, Some(true));
    // Both components, by instance.
    assert!(
        !headless
            .selector
            .unwrap()
            .contains_key("app.kubernetes.io/component")
    );
    let bootstrap = d.service("audit").unwrap().spec.clone().unwrap();
    assert_eq!(
        bootstrap.selector.unwrap()["app.kubernetes.io/component"],
        "broker"
    );
    let ports: Vec<i32> = bootstrap.ports.unwrap().iter().map(|p| p.port).collect();
    assert_eq!(ports, [9092]);
    for pdb in ["audit-broker", "audit-controller"] {
        let spec = d.pdb(pdb).unwrap().spec.clone().unwrap();
        assert_eq!(
            spec.max_unavailable,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
        );
    }
}

#[test]
fn the_operator_reconciles_brokers() {
    let kinds: Vec<&str> = crate::kinds::KINDS.iter().map(|k| k.name).collect();
    assert!(kinds.contains(&"broker"), "{kinds:?}");
}

#[test]
fn brokers_grow_at_once_but_shrink_only_through_the_guarded_scale_down() {
    use kube::ResourceExt;
    let ctx = BuildContext::for_tests();
    let mut b = dedicated();
    b.spec.replicas = 3;
    let brokers = |d: &Desired| {
        d.statefulset(&format!("{}-broker", b.name_any()))
            .unwrap()
            .spec
            .clone()
            .unwrap()
            .replicas
    };
    // Running 4 with the spec at 3: build keeps 4 until orchestrate has
    // checked that broker 3 holds nothing.
    let running = |n| crate::reconcile::tests::running(b.components().remove(0), n);
    let valid = b.validate(&ctx, &running(4)).unwrap();
    assert_eq!((valid.replicas, valid.broker_statefulset_replicas), (3, 4));
    assert_eq!(brokers(&Broker::build(&valid, &ctx)), Some(4));
    // Running 2 with the spec at 3: grown to 3 at once.
    let valid = b.validate(&ctx, &running(2)).unwrap();
    assert_eq!(brokers(&Broker::build(&valid, &ctx)), Some(3));
}
