//! The clients against the real engines (the launchers from tessera-testing).

use std::time::Duration;

use tessera_clients::zookeeper::session::{self, Session};
use tessera_clients::{etcd, kafka, memcached, promtext, redis, zookeeper};
use tessera_testing::{
    Etcd, KafkaBroker, Memcached, RedisServer, ZooKeeperEnsemble, ZooKeeperOptions, free_ports,
};

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn redis_info_role_and_auth() {
    let primary = RedisServer::start_with_password("pw").expect("redis");
    let replica = RedisServer::replica_of(&primary).expect("replica");
    let opts = redis::Options {
        timeout: T,
        password: Some("pw".into()),
        ..redis::Options::default()
    };
    let mut c = redis::Client::connect(&replica.addr(), opts.clone())
        .await
        .unwrap();
    c.ping().await.unwrap();
    let info = c.info(Some("replication")).await.unwrap();
    assert_eq!(info.get("role"), Some("slave"));
    assert_eq!(info.get("master_link_status"), Some("up"));
    let role = c.role().await.unwrap();
    assert!(format!("{role:?}").contains("slave"), "{role:?}");
    let mut p = redis::Client::connect(&primary.addr(), opts).await.unwrap();
    p.command(&["SET", "k", "v"]).await.unwrap();
    let bad = redis::Options {
        timeout: T,
        password: Some("wrong".into()),
        ..redis::Options::default()
    };
    let e = redis::Client::connect(&primary.addr(), bad)
        .await
        .unwrap_err();
    assert_eq!(e.label(), "auth", "{e}");
}

#[tokio::test]
async fn memcached_stats_and_version() {
    let m = Memcached::start().expect("memcached");
    let mut c = memcached::Client::connect(&m.addr(), T).await.unwrap();
    assert_eq!(c.get("tessera:missing").await.unwrap(), None);
    c.set("tessera:k", "a value").await.unwrap();
    assert_eq!(
        c.get("tessera:k").await.unwrap().as_deref(),
        Some("a value")
    );
    assert!(c.version().await.unwrap().starts_with('1'));
    let stats = c.stats().await.unwrap();
    assert_eq!(stats.get("accepting_conns").map(String::as_str), Some("1"));
    assert!(stats.contains_key("curr_connections"));
}

#[tokio::test]
async fn zookeeper_srvr_and_mntr_on_an_ensemble() {
    let ens = ZooKeeperEnsemble::start(3).expect("ensemble");
    let mut leaders = 0;
    for m in &ens.members {
        let s =
            zookeeper::Srvr::parse(&zookeeper::four_letter(&m.addr(), "srvr", T).await.unwrap())
                .unwrap();
        assert!(s.node_count.is_some_and(|n| n > 0));
        if s.mode == zookeeper::Mode::Leader {
            leaders += 1;
        }
        let mntr =
            zookeeper::parse_mntr(&zookeeper::four_letter(&m.addr(), "mntr", T).await.unwrap());
        assert!(mntr.iter().any(|l| l.key == "zk_server_state"), "{mntr:?}");
        assert_eq!(
            zookeeper::four_letter(&m.addr(), "ruok", T).await.unwrap(),
            "imok"
        );
    }
    assert_eq!(leaders, 1);
}

#[tokio::test]
async fn etcd_health_and_metrics() {
    let e = Etcd::start().expect("etcd");
    let c = etcd::Client::new(&e.url(), T, None).unwrap();
    let h = c.health().await.unwrap();
    assert!(h.is_ok() && h.body.contains("true"), "{h:?}");
    let parsed = promtext::parse_counted(&c.metrics().await.unwrap());
    assert_eq!(parsed.skipped, 0);
    let leader = parsed
        .samples
        .iter()
        .find(|s| s.name == "etcd_server_has_leader")
        .expect("has_leader");
    assert_eq!(leader.value, 1.0);
    // The same connection is reused for the next request.
    assert!(c.health().await.unwrap().is_ok());
}

#[tokio::test]
async fn zookeeper_reconfig_needs_the_super_user_and_changes_membership() {
    let password = "s3cret";
    let options = ZooKeeperOptions {
        // standaloneEnabled=false: one member still runs the quorum code,
        // which is what can be reconfigured.
        config: vec![
            "reconfigEnabled=true".into(),
            "standaloneEnabled=false".into(),
        ],
        jvm_flags: vec![format!(
            "-Dzookeeper.DigestAuthenticationProvider.superDigest=super:{}",
            session::super_digest("super", password)
        )],
    };
    let ens = ZooKeeperEnsemble::start_with(1, &options).expect("one-member quorum");
    let addr = ens.members[0].addr();
    let conf = || async { zookeeper::four_letter(&addr, "conf", T).await.unwrap() };
    let before = conf().await;
    let version = before
        .lines()
        .find_map(|l| l.strip_prefix("version="))
        .map(|v| i64::from_str_radix(v.trim(), 16).unwrap())
        .expect("conf has version=");
    assert!(
        before.contains(&ens.members[0].server_spec().unwrap()),
        "{before}"
    );

    // An unknown scheme fails, and the server drops the connection.
    let mut s = Session::connect(&addr, T).await.unwrap();
    let e = s.add_auth("nosuch", b"x").await.unwrap_err();
    assert!(e.to_string().contains("zookeeper auth failed"), "{e}");
    assert!(s.get("/").await.is_err());

    // A second server joins as a non-voting follower.
    let joiner = ens.start_joiner(&options).expect("joining server");
    let spec = joiner.server_spec().unwrap();
    // Adds it with a fresh session authenticated with `auth`; retried
    // while the joiner may still be syncing with the leader.
    let add = |auth: Option<String>| {
        let (addr, spec) = (addr.clone(), spec.clone());
        async move {
            let mut last = None;
            for _ in 0..40 {
                let mut s = Session::connect(&addr, T).await.unwrap();
                if let Some(auth) = &auth {
                    s.add_auth("digest", auth.as_bytes()).await.unwrap();
                }
                let r = s.reconfig(Some(&spec), None, None).await;
                match &r {
                    Err(e) if e.to_string().contains("no quorum") => last = Some(r),
                    _ => return r,
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            last.unwrap()
        }
    };

    // Without the super user (none, or digest with a wrong password, which
    // the digest scheme accepts as another identity), reconfig is refused.
    for auth in [None, Some("super:wrong".to_string())] {
        let e = add(auth).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("no auth (-102): reconfig needs the super user"),
            "{e}"
        );
    }
    assert!(!conf().await.contains("server.2="));

    // The super user adds it as a participant.
    let new_config =
        String::from_utf8(add(Some(format!("super:{password}"))).await.unwrap()).unwrap();
    assert!(new_config.contains(&spec), "{new_config}");
    let after = conf().await;
    assert!(after.contains(&spec), "{after}");

    let super_session = || async {
        let mut s = Session::connect(&addr, T).await.unwrap();
        s.add_auth("digest", format!("super:{password}").as_bytes())
            .await
            .unwrap();
        s
    };
    // A change conditional on the old version is refused.
    let mut s = super_session().await;
    let e = s
        .reconfig(None, Some("2"), Some(version))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("bad version (-103)"), "{e}");

    // And removing it leaves server 1 alone again.
    let mut s = super_session().await;
    let new_config = String::from_utf8(s.reconfig(None, Some("2"), None).await.unwrap()).unwrap();
    assert!(!new_config.contains("server.2="), "{new_config}");
    let after = conf().await;
    assert!(!after.contains("server.2="), "{after}");
    assert!(
        after.contains(&ens.members[0].server_spec().unwrap()),
        "{after}"
    );
}

#[tokio::test]
async fn etcd_member_add_promote_remove() {
    let e = Etcd::start().expect("etcd");
    let c = etcd::Client::new(&e.url(), T, None).unwrap();
    let before = c.member_list().await.unwrap();
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].name, "n1");
    assert_eq!(
        before[0].peer_urls,
        [format!("http://127.0.0.1:{}", e.peer_port)]
    );
    assert_eq!(before[0].client_urls, [e.url()]);
    assert!(!before[0].is_learner);

    // A learner on a port nothing listens on: registered, never started.
    let url = format!("http://127.0.0.1:{}", free_ports(1)[0]);
    let added = c
        .member_add(std::slice::from_ref(&url), true)
        .await
        .unwrap();
    assert!(added.is_learner && added.name.is_empty(), "{added:?}");
    assert_eq!(added.peer_urls, [url]);
    let listed = c.member_list().await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&added), "{listed:?}");

    let err = c.member_promote(added.id).await.unwrap_err();
    assert_eq!(err.label(), "server_error");
    assert!(
        err.to_string()
            .contains("etcdserver: can only promote a learner member which is in sync with leader"),
        "{err}"
    );

    c.member_remove(added.id).await.unwrap();
    assert_eq!(c.member_list().await.unwrap(), before);
    let err = c.member_remove(added.id).await.unwrap_err();
    assert!(
        err.to_string().contains("etcdserver: member not found"),
        "{err}"
    );
}

#[tokio::test]
async fn kafka_metadata_and_log_dirs() {
    let b = KafkaBroker::start().expect("kafka");
    let mut c = kafka::Client::connect(&b.addr(), T).await.unwrap();
    let apis = c.api_versions().await.unwrap();
    assert!(apis.iter().any(|a| a.api_key == 3));
    let md = c.metadata(None).await.unwrap();
    assert_eq!(md.brokers.len(), 1);
    assert_eq!(md.brokers[0].node_id, 1);
    assert_eq!(md.brokers[0].port, i32::from(b.port));
    assert!(md.cluster_id.is_some());
    assert_eq!(md.under_replicated(None), 0);
    let dirs = c.describe_log_dirs().await.unwrap();
    assert_eq!(dirs.len(), 1);
    assert_eq!(dirs[0].error_code, 0);
    assert!(dirs[0].total_bytes > 0);
}

#[tokio::test]
async fn kafka_topic_produce_and_fetch() {
    let b = KafkaBroker::start().expect("kafka");
    let mut c = kafka::Client::connect(&b.addr(), Duration::from_secs(10))
        .await
        .unwrap();
    c.create_topic("t", 1, 1, &[("min.insync.replicas", "1")])
        .await
        .unwrap();
    // Creating it again is not an error.
    c.create_topic("t", 1, 1, &[]).await.unwrap();
    let values: Vec<bytes::Bytes> = [&b"a"[..], b"b", b"c"]
        .map(bytes::Bytes::from_static)
        .to_vec();
    // The leader may take a moment to be elected after creation.
    let mut base = Err(tessera_clients::Error::Closed);
    for _ in 0..50 {
        base = c.produce("t", 0, &values, -1).await;
        if base.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(base.unwrap(), 0);
    assert_eq!(c.produce("t", 0, &values[..1], -1).await.unwrap(), 3);
    let got = c.fetch("t", 0, 1).await.unwrap();
    assert_eq!(
        got,
        vec![
            (1, bytes::Bytes::from_static(b"b")),
            (2, bytes::Bytes::from_static(b"c")),
            (3, bytes::Bytes::from_static(b"a")),
        ]
    );
    // A partition that does not exist is an error naming the operation.
    let e = c.produce("t", 7, &values, -1).await.unwrap_err();
    assert!(e.to_string().contains("Produce error code"), "{e}");
}

#[tokio::test]
async fn kafka_reassignment_unregistration_and_topic_configs() {
    let b = KafkaBroker::start().expect("kafka");
    let mut c = kafka::Client::connect(&b.addr(), Duration::from_secs(10))
        .await
        .unwrap();
    c.create_topic("r", 2, 1, &[]).await.unwrap();
    // Onto the one broker there is: accepted.
    let mut done = Err(tessera_clients::Error::Closed);
    for _ in 0..50 {
        done = c
            .reassign_partitions("r", &[(0, vec![1]), (1, vec![1])])
            .await;
        if done.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done.unwrap();
    // Onto a broker that does not exist: refused, naming the partition.
    let e = c
        .reassign_partitions("r", &[(0, vec![7])])
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("AlterPartitionReassignments of r-0 error code"),
        "{e}"
    );
    // Effective settings: the topic's own, or the broker's.
    c.create_topic(
        "m",
        1,
        1,
        &[("min.insync.replicas", "1"), ("retention.ms", "1000")],
    )
    .await
    .unwrap();
    // A topic just created may not be known to the broker's metadata yet.
    let mut configs = Err(tessera_clients::Error::Closed);
    for _ in 0..50 {
        configs = c
            .topic_configs(
                &["m".to_string(), "r".to_string()],
                &["min.insync.replicas", "retention.ms"],
            )
            .await;
        if configs.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let configs = configs.unwrap();
    assert_eq!(configs["m"]["retention.ms"], "1000");
    assert_eq!(configs["m"]["min.insync.replicas"], "1");
    assert_eq!(configs["r"]["retention.ms"], "604800000");
    let e = c
        .topic_configs(&["missing".to_string()], &["retention.ms"])
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("DescribeConfigs of topic missing"),
        "{e}"
    );
    // A broker id the controller never saw is "not registered", not an error.
    assert_eq!(
        c.unregister_broker(42).await.unwrap(),
        kafka::Unregistered::NotRegistered
    );
}
