//! End-to-end: the sidecar-injection webhook served by the operator binary
//! (under the ServiceAccount and roles of
//! charts/tessera/files/operator-rbac.yaml), called by the real API server
//! at https://127.0.0.1:<port>/inject.
//!
//! The webhook configuration and the certificate Secret have fixed names
//! (the RBAC grants them by name), so these tests take turns. Each test
//! selects only its own namespace (`--namespaces` plus the opt-in label),
//! so nobody else's pods are ever sent to it.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::*;
use tessera_operator::reconcile::status::pod_ready;

const MINUTE: Duration = Duration::from_secs(60);
const CONFIG: &str = "tessera-operator";
const SECRET: &str = "tessera-operator-webhook-certs";
const SIDECAR: &str = "tessera-sidecar";
const ADAPTER: &str = "tessera-adapter";
use tessera_e2e::REDIS_IMAGE;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Deletes the cluster-scoped configuration when the test ends, however it
/// ends, so that no dead webhook stays registered.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = kubectl(&[
            "delete",
            "mutatingwebhookconfiguration",
            CONFIG,
            "--ignore-not-found",
            "--wait=false",
        ]);
    }
}

struct Setup {
    client: Client,
    ns: TestNs,
    kc: std::path::PathBuf,
    port: u16,
    _cleanup: Cleanup,
}

async fn setup(test: &str, real_node: bool) -> Setup {
    let client = admin().await;
    let kc = operator_kubeconfig(&client).await;
    let ns = if real_node {
        TestNs::on_real_node(test).await
    } else {
        TestNs::new(&client, test).await
    };
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.patch(
        &ns.name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tessera.dev/injection": "enabled"}}})),
    )
    .await
    .unwrap();
    Setup {
        client,
        ns,
        kc,
        port: free_port(),
        _cleanup: Cleanup,
    }
}

impl Setup {
    fn operator(&self, name: &str, extra: &[&str]) -> Operator {
        let addr = format!("127.0.0.1:{}", self.port);
        let url = format!("https://127.0.0.1:{}", self.port);
        let mut args = vec![
            "--leader-elect",
            "false",
            "--resync-seconds",
            "30",
            "--webhook",
            "true",
            "--webhook-addr",
            &addr,
            "--webhook-url",
            &url,
            "--webhook-namespaces",
            "opt-in",
        ];
        args.extend_from_slice(extra);
        Operator::start(&self.kc, &self.ns.name, name, &args)
    }

    /// The configuration carries the Secret's CA, and the webhook answers
    /// the API server: a dry-run create of an annotated pod comes back
    /// injected.
    async fn wait_serving(&self, op: &Operator) {
        let pods: Api<Pod> = self.ns.api();
        let deadline = Instant::now() + MINUTE;
        loop {
            let pod = annotated_pod("probe", &[]);
            let pp = PostParams {
                dry_run: true,
                ..Default::default()
            };
            if let Ok(p) = pods.create(&pp, &pod).await
                && !injected(&p).is_empty()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the webhook did not serve within a minute; operator log:\n{}",
                op.logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// A bare pod (kwok namespaces: never runs) asking for Redis injection.
/// Its container asks for resources, as a real Redis's does: a BestEffort
/// pod turns Burstable with our containers, and where the API server runs
/// PodTolerationRestriction (as ours does) that plugin then adds a
/// toleration on its second pass, which calls the webhook a second time.
fn annotated_pod(name: &str, extra: &[(&str, &str)]) -> Pod {
    let mut annotations = serde_json::Map::new();
    annotations.insert("tessera.dev/inject".into(), json!("redis"));
    for (k, v) in extra {
        annotations.insert((*k).into(), json!(v));
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": [{
            "name": "redis",
            "image": REDIS_IMAGE,
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}
        }]}
    }))
    .unwrap()
}

/// Names of our containers in the pod, in `containers` and `initContainers`.
fn injected(pod: &Pod) -> Vec<String> {
    let spec = pod.spec.as_ref().unwrap();
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c: &Container| c.name.clone())
        .filter(|n| n == SIDECAR || n == ADAPTER)
        .collect()
}

fn annotation(pod: &Pod, key: &str) -> Option<String> {
    pod.metadata.annotations.as_ref()?.get(key).cloned()
}

fn redis_deployment(name: &str) -> Deployment {
    let mut spec = tessera_e2e::redis_pod_spec(2);
    spec["terminationGracePeriodSeconds"] = json!(2);
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": spec,
            }
        }
    }))
    .unwrap()
}

/// The Deployment's pods that are not being deleted.
async fn live_pods(pods: &Api<Pod>, app: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_redis_deployment_gets_readiness_and_metrics() {
    let _turn = TURN.lock().await;
    let s = setup("inject-redis", true).await;
    let ns = &s.ns;
    let deployments: Api<Deployment> = ns.api();
    let pods: Api<Pod> = ns.api();

    // A Redis that Tessera did not create, running before the webhook.
    deployments
        .create(&PostParams::default(), &redis_deployment("cache"))
        .await
        .unwrap();
    ns.wait_for("2 plain Redis pods Ready", 3 * MINUTE, || {
        let pods = pods.clone();
        async move {
            let ps = live_pods(&pods, "cache").await;
            (ps.len() == 2 && ps.iter().all(pod_ready) && ps.iter().all(|p| injected(p).is_empty()))
                .then_some(())
        }
    })
    .await;

    let op = s.operator("op", &[]);
    s.wait_serving(&op).await;

    // Annotate the template, which also rolls the pods.
    kubectl_ok(&[
        "-n",
        &ns.name,
        "patch",
        "deployment",
        "cache",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"metadata":{"annotations":{"tessera.dev/inject":"redis"}}}}}"#,
    ]);
    let new = ns
        .wait_for("2 injected Redis pods Ready", 3 * MINUTE, || {
            let pods = pods.clone();
            async move {
                let ps = live_pods(&pods, "cache").await;
                (ps.len() == 2
                    && ps.iter().all(pod_ready)
                    && ps.iter().all(|p| injected(p) == [SIDECAR, ADAPTER]))
                .then_some(ps)
            }
        })
        .await;
    for p in &new {
        let spec = p.spec.as_ref().unwrap();
        // Native sidecars: the node's kubelet is 1.34 (kwok's "fake"
        // versions are ignored).
        let init: Vec<&str> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(init, [SIDECAR, ADAPTER], "{}", p.name_any());
        assert!(
            spec.init_containers
                .iter()
                .flatten()
                .all(|c| c.restart_policy.as_deref() == Some("Always") && c.startup_probe.is_some())
        );
        assert_eq!(
            annotation(p, "tessera.dev/injected").as_deref(),
            Some("tessera-sidecar,tessera-adapter")
        );
        // Both helpers run.
        let statuses = p
            .status
            .as_ref()
            .unwrap()
            .init_container_statuses
            .clone()
            .unwrap();
        assert!(
            statuses
                .iter()
                .all(|c| c.ready && c.state.as_ref().is_some_and(|s| s.running.is_some())),
            "{statuses:?}"
        );
        // The adapter serves Redis's metrics.
        let m = kubectl_ok(&[
            "get",
            "--raw",
            &format!(
                "/api/v1/namespaces/{}/pods/{}:9121/proxy/metrics",
                ns.name,
                p.name_any()
            ),
        ]);
        assert!(
            m.lines()
                .any(|l| l.starts_with("tessera_up") && l.ends_with(" 1")),
            "{}: adapter metrics:\n{m}",
            p.name_any()
        );
        assert!(m.contains("engine=\"redis\""), "{m}");
    }

    // Redis stopped in one pod (its container stays): only the sidecar's
    // protocol check can notice, and the pod goes NotReady.
    let victim = new[0].name_any();
    let id = container_id(&new[0], "redis");
    signal_container(&id, "SIGSTOP");
    let stopped = Instant::now();
    ns.wait_for(&format!("{victim} NotReady"), MINUTE, || {
        let pods = pods.clone();
        let victim = victim.clone();
        async move { (!pod_ready(&pods.get(&victim).await.ok()?)).then_some(()) }
    })
    .await;
    let took = stopped.elapsed();
    let other = pods.get(&new[1].name_any()).await.unwrap();
    assert!(pod_ready(&other), "the other pod stays Ready");
    let p = pods.get(&victim).await.unwrap();
    let sidecar = p
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == SIDECAR))
        .cloned()
        .unwrap();
    assert!(
        !sidecar.ready,
        "the sidecar is what went unready: {sidecar:?}"
    );
    signal_container(&id, "SIGCONT");
    ns.wait_for(&format!("{victim} Ready again"), MINUTE, || {
        let pods = pods.clone();
        let victim = victim.clone();
        async move { pod_ready(&pods.get(&victim).await.ok()?).then_some(()) }
    })
    .await;
    eprintln!("NotReady {took:?} after Redis was stopped");
    let injections = op
        .metric(
            "tessera_operator_admission_requests_total",
            &["result=\"injected\""],
        )
        .await;
    assert!(
        injections >= 2.0,
        "injections counted: {injections}; metrics:\n{}",
        op.get("/metrics").await.unwrap_or_default().1
    );
}

/// A second webhook that runs after ours and changes the pod, so that the
/// API server calls ours again (reinvocationPolicy IfNeeded).
fn add_label_webhook(ca: &str, url: &str, ns: &str) -> MutatingWebhookConfiguration {
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": format!("zz-tessera-e2e-{ns}")},
        "webhooks": [{
            "name": "label.e2e.tessera.dev",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "clientConfig": {"url": format!("{url}/label"), "caBundle": k8s_openapi::ByteString(ca.as_bytes().to_vec())},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]
        }]
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinvocation_and_recreation_inject_once() {
    let _turn = TURN.lock().await;
    let s = setup("inject-once", false).await;
    let pods: Api<Pod> = s.ns.api();
    let op = s.operator("op", &[]);
    s.wait_serving(&op).await;

    // Alone, ours is called once per pod: the API server's ServiceAccount
    // plugin, run again after our patch, finds a mount at the token's path
    // in our containers and changes nothing, so nothing calls us again.
    // Our containers get no API token; the app container keeps its own.
    let reviews = || op.metric("tessera_operator_admission_requests_total", &[]);
    let before = reviews().await;
    let single = pods
        .create(&PostParams::default(), &annotated_pod("single", &[]))
        .await
        .unwrap();
    assert_eq!(reviews().await - before, 1.0, "one call for one pod");
    let spec = single.spec.as_ref().unwrap();
    let token = "/var/run/secrets/kubernetes.io/serviceaccount";
    let mounts = |c: &Container| -> Vec<(String, String)> {
        let m = c.volume_mounts.iter().flatten();
        m.map(|m| (m.name.clone(), m.mount_path.clone())).collect()
    };
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let m = mounts(c);
        if c.name == "redis" {
            assert!(
                m.iter()
                    .any(|(n, p)| p == token && n.starts_with("kube-api-access-")),
                "the app keeps its token: {m:?}"
            );
        } else {
            let empty = ("tessera-no-api-token".to_string(), token.to_string());
            assert_eq!(m, [empty], "{}", c.name);
        }
    }

    // The other webhook adds a label once (it patches only when the label
    // is missing, as an idempotent webhook must).
    let other = tessera_e2e::webhook::WebhookServer::start(Arc::new(|req: &Value| {
        let labelled = req["object"]["metadata"]["labels"]["e2e-reinvoked"].is_string();
        (!labelled).then(|| {
            json!([{"op": "add", "path": "/metadata/labels", "value": {"e2e-reinvoked": "yes"}}])
        })
    }))
    .await
    .unwrap();
    let configs: Api<MutatingWebhookConfiguration> = Api::all(s.client.clone());
    let cfg = add_label_webhook(&other.ca_pem, &other.base_url, &s.ns.name);
    configs.create(&PostParams::default(), &cfg).await.unwrap();
    let before = op
        .metric(
            "tessera_operator_admission_requests_total",
            &["result=\"already_injected\""],
        )
        .await;

    let created = pods
        .create(&PostParams::default(), &annotated_pod("once", &[]))
        .await;
    let _ = configs
        .delete(&cfg.name_any(), &DeleteParams::default())
        .await;
    let created = created.unwrap();
    assert_eq!(
        annotation(&created, "tessera.dev/injected").as_deref(),
        Some("tessera-sidecar,tessera-adapter")
    );
    assert_eq!(
        created.labels().get("e2e-reinvoked").map(String::as_str),
        Some("yes"),
        "the other webhook ran"
    );
    assert_eq!(injected(&created), [SIDECAR, ADAPTER], "injected once");
    let after = op
        .metric(
            "tessera_operator_admission_requests_total",
            &["result=\"already_injected\""],
        )
        .await;
    assert!(
        after > before,
        "ours was called again and added nothing ({before} -> {after})"
    );

    // Re-applying the pod is an update: nothing is added.
    let mut applied = annotated_pod("once", &[]);
    applied.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
    let again = pods
        .patch(
            "once",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    assert_eq!(injected(&again), [SIDECAR, ADAPTER]);

    // The same pod created again from its own stored spec, with and
    // without our annotation: the containers are there once.
    for keep_annotation in [true, false] {
        let name = format!("copy-{keep_annotation}");
        let mut copy = created.clone();
        copy.metadata = kube::api::ObjectMeta {
            name: Some(name.clone()),
            annotations: created.metadata.annotations.clone(),
            ..Default::default()
        };
        if !keep_annotation {
            copy.metadata
                .annotations
                .as_mut()
                .unwrap()
                .remove("tessera.dev/injected");
        }
        copy.spec.as_mut().unwrap().node_name = None;
        copy.status = None;
        let made = pods.create(&PostParams::default(), &copy).await.unwrap();
        assert_eq!(injected(&made), [SIDECAR, ADAPTER], "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_annotations_are_denied_naming_the_problem() {
    let _turn = TURN.lock().await;
    let s = setup("inject-bad", false).await;
    let pods: Api<Pod> = s.ns.api();
    let op = s.operator("op", &[]);
    s.wait_serving(&op).await;
    for (name, extra, wanted) in [
        (
            "engine",
            vec![("tessera.dev/inject", "redix")],
            "unknown engine \"redix\"",
        ),
        (
            "port",
            vec![("tessera.dev/inject-port", "70000")],
            "tessera.dev/inject-port: \"70000\" is not a port number",
        ),
        (
            "secret",
            vec![("tessera.dev/inject-password-secret", "nope")],
            "Secret \"nope\" not found",
        ),
    ] {
        let err = pods
            .create(&PostParams::default(), &annotated_pod(name, &extra))
            .await
            .expect_err(name);
        let msg = err.to_string();
        assert!(
            msg.contains("denied the request") && msg.contains(wanted),
            "{name}: {msg}"
        );
    }
    // With the Secret there, the same pod is admitted with the password.
    let secrets: Api<Secret> = s.ns.api();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "auth"}, "stringData": {"password": "x"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let p = pods
        .create(
            &PostParams::default(),
            &annotated_pod("auth", &[("tessera.dev/inject-password-secret", "auth")]),
        )
        .await
        .unwrap();
    let spec = p.spec.unwrap();
    let sidecar = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .find(|c| c.name == SIDECAR)
        .unwrap();
    let env = &sidecar.env.as_ref().unwrap()[0];
    assert_eq!(env.name, "TESSERA_REDIS_PASSWORD");
    assert_eq!(
        env.value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        "auth"
    );
}

/// Waits up to a minute for `tessera_operator_injection_missing_pods` to
/// read `want`; on timeout, fails with the operator's metrics.
async fn wait_missing(op: &Operator, want: f64, what: &str) {
    let deadline = Instant::now() + MINUTE;
    while op
        .metric("tessera_operator_injection_missing_pods", &[])
        .await
        != want
    {
        assert!(
            Instant::now() < deadline,
            "{what}: the gauge is not {want}:\n{}",
            op.get("/metrics").await.unwrap_or_default().1
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_webhook_down_pods_are_created_and_reported() {
    let _turn = TURN.lock().await;
    let s = setup("inject-down", false).await;
    let pods: Api<Pod> = s.ns.api();
    let mut op = s.operator("op", &[]);
    s.wait_serving(&op).await;
    op.kill();

    // Ignore: the API server cannot reach the webhook and creates the pod
    // as it is.
    let p = pods
        .create(&PostParams::default(), &annotated_pod("uninjected", &[]))
        .await
        .expect("created despite the webhook being down");
    assert!(injected(&p).is_empty());
    assert!(annotation(&p, "tessera.dev/injected").is_none());

    // Back up, the operator reports it: a Warning Event and the gauge.
    let op = s.operator("op2", &[]);
    let events: Api<k8s_openapi::api::events::v1::Event> = s.ns.api();
    s.ns.wait_for("an InjectionMissing Event", MINUTE, || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("InjectionMissing")
                        && e.type_.as_deref() == Some("Warning")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                            == Some("uninjected")
                })
                .map(|_| ())
        }
    })
    .await;
    wait_missing(&op, 1.0, "the uninjected pod counted").await;
    // A pod created now is injected, and not counted.
    s.wait_serving(&op).await;
    pods.create(&PostParams::default(), &annotated_pod("injected", &[]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        op.metric("tessera_operator_injection_missing_pods", &[])
            .await,
        1.0
    );
    // Deleting the uninjected pod clears the gauge.
    pods.delete("uninjected", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_missing(&op, 0.0, "the uninjected pod deleted").await;

    // A namespace no longer opted in (this test runs the webhook in opt-in
    // mode): the API server does not call the webhook, and the reporter,
    // which reads the label, does not count the pod as missing its
    // injection...
    let namespaces: Api<Namespace> = Api::all(s.ns.client.clone());
    let label = |value: &'static str| {
        let namespaces = namespaces.clone();
        let name = s.ns.name.clone();
        async move {
            let patch = json!({"metadata": {"labels": {"tessera.dev/injection": value}}});
            namespaces
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .unwrap();
        }
    };
    label("disabled").await;
    let p = pods
        .create(&PostParams::default(), &annotated_pod("opted-out", &[]))
        .await
        .unwrap();
    assert!(injected(&p).is_empty(), "the namespace is opted out");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        op.metric("tessera_operator_injection_missing_pods", &[])
            .await,
        0.0,
        "a pod in an opted-out namespace is not missing anything"
    );
    // ...until it is opted in again: the same pod is then one the webhook
    // should have seen (which also shows the reporter had the pod all along).
    label("enabled").await;
    wait_missing(
        &op,
        1.0,
        "the pod was not counted once its namespace was opted back in",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_keeps_the_api_server_calling() {
    let _turn = TURN.lock().await;
    let s = setup("inject-rotate", false).await;
    let pods: Api<Pod> = s.ns.api();
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), "tessera-system");
    // Failures would block creates, so that none goes unnoticed; a 30 s
    // certificate is renewed every 20 s.
    let op = s.operator(
        "op",
        &[
            "--webhook-failure-policy",
            "fail",
            "--webhook-cert-validity",
            "30s",
        ],
    );
    s.wait_serving(&op).await;
    let cert = |s: &Secret| {
        s.data
            .as_ref()
            .and_then(|d| d.get("tls.crt"))
            .map(|b| b.0.clone())
    };
    let mut seen = std::collections::BTreeSet::new();
    let start = Instant::now();
    let mut i = 0;
    while seen.len() < 4 || start.elapsed() < Duration::from_secs(45) {
        assert!(
            start.elapsed() < 3 * MINUTE,
            "only {} certificates in 3 minutes",
            seen.len()
        );
        if let Some(c) = secrets.get(SECRET).await.ok().as_ref().and_then(cert) {
            seen.insert(c);
        }
        let p = pods
            .create(
                &PostParams::default(),
                &annotated_pod(&format!("p-{i}"), &[]),
            )
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "pod {i} after {:?}, {} certificates seen: {e}\n{}",
                    start.elapsed(),
                    seen.len(),
                    op.logs()
                )
            });
        assert_eq!(injected(&p), [SIDECAR, ADAPTER], "pod {i}");
        i += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let renewed = op
        .metric(
            "tessera_operator_webhook_certificate_changes_total",
            &["change=\"leaf_renewed\""],
        )
        .await;
    assert!(
        renewed >= 2.0,
        "renewed {renewed} times; {} certificates seen",
        seen.len()
    );
    eprintln!(
        "{i} pods admitted across {} serving certificates",
        seen.len()
    );
}

/// p50 and p99 of `samples`, in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.99))
}

/// The API server's own histogram of its calls to our webhook: (upper
/// bound in seconds, cumulative count) per bucket.
fn apiserver_webhook_buckets() -> Vec<(f64, f64)> {
    let metrics = kubectl_ok(&["get", "--raw", "/metrics"]);
    buckets(
        &metrics,
        "apiserver_admission_webhook_admission_duration_seconds",
        &["name=\"inject.tessera.dev\"", "rejected=\"false\""],
    )
}

/// The buckets of histogram `name` in a Prometheus text exposition, of the
/// series carrying every label of `filters`.
fn buckets(text: &str, name: &str, filters: &[&str]) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix) && filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// Observations at most `le` between two readings of a histogram's
/// [`buckets`].
fn bucket_count(before: &[(f64, f64)], after: &[(f64, f64)], le: f64) -> f64 {
    let count = |b: &[(f64, f64)]| {
        b.iter()
            .find(|(l, _)| *l == le)
            .map(|(_, c)| *c)
            .unwrap_or(0.0)
    };
    count(after) - count(before)
}

/// The smallest bucket bound holding quantile `q` of the observations made
/// between two readings of a histogram's [`buckets`].
fn bucket_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> f64 {
    let total = bucket_count(before, after, f64::INFINITY);
    after
        .iter()
        .map(|(le, _)| (*le, bucket_count(before, after, *le)))
        .find(|(_, c)| *c >= total * q)
        .map(|(le, _)| le)
        .unwrap_or(f64::INFINITY)
}

/// An HTTPS connection to the webhook, trusting the CA of the Secret, as
/// the API server makes one (HTTP/1.1, kept alive).
async fn webhook_connection(
    port: u16,
    ca_pem: &str,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(pem.contents))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    let name =
        rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// Benchmark (docs/benchmarks.md): admission latency of the webhook over
/// 500 pod creates, on the kwok nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn admission_latency_over_500_pod_creates() {
    use http_body_util::BodyExt;

    let n: usize = std::env::var("TESSERA_BENCH_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let _turn = TURN.lock().await;
    // A namespace still being emptied (an earlier run's 1,500 pods) would
    // share the cores with the creates being measured.
    let nss: Api<Namespace> = Api::all(admin().await);
    let terminating = |n: &Namespace| {
        let phase = n.status.as_ref().and_then(|s| s.phase.as_deref());
        phase == Some("Terminating")
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .any(terminating)
    {
        if Instant::now() > deadline {
            eprintln!("(a namespace was still terminating after 5 minutes; measuring anyway)");
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let s = setup("inject-bench", false).await;
    let pods: Api<Pod> = s.ns.api();
    let log_level = std::env::var("TESSERA_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let op = s.operator("bench", &["--log-level", &log_level]);
    s.wait_serving(&op).await;

    // 1. The webhook alone: AdmissionReviews of a real pod, posted over
    // one kept-alive HTTPS connection.
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), "tessera-system");
    let secret = secrets.get(SECRET).await.unwrap();
    let ca = String::from_utf8(secret.data.unwrap()["ca.crt"].0.clone()).unwrap();
    let review = serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "bench",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": s.ns.name,
            "operation": "CREATE",
            "object": serde_json::to_value(annotated_pod("bench", &[])).unwrap(),
        }
    }))
    .unwrap();
    let request = || {
        hyper::Request::post("/inject")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(hyper::body::Bytes::from(
                review.clone(),
            )))
            .unwrap()
    };
    let mut conn = webhook_connection(s.port, &ca).await;
    let mut direct = Vec::with_capacity(n);
    for _ in 0..n {
        let req = request();
        conn.ready().await.unwrap();
        let t = Instant::now();
        let resp = conn.send_request(req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        direct.push(t.elapsed());
        assert!(body.windows(9).any(|w| w == b"JSONPatch"));
    }

    // The same with a new TLS connection each time (handshake included).
    let mut fresh = Vec::with_capacity(n);
    for _ in 0..n {
        let req = request();
        let t = Instant::now();
        let mut conn = webhook_connection(s.port, &ca).await;
        conn.ready().await.unwrap();
        let resp = conn.send_request(req).await.unwrap();
        resp.into_body().collect().await.unwrap();
        fresh.push(t.elapsed());
    }

    // 2. Through the API server: pod creates that ask for injection, and
    // two baselines the API server does not call the webhook for (the
    // matchCondition needs the annotation): the same pod without the
    // annotation, and the pod as injection leaves it (its sidecar and
    // adapter already in the spec), so that the difference with the
    // second is the admission step alone, not storing a larger pod.
    // The pods go to no scheduler unless asked: scheduling them (and the
    // kwok nodes' status updates, and the retries once the nodes are
    // full, which they are after 330 pods) would share the 2 cores with
    // the creates being measured. Admission runs before any of it.
    let schedule = std::env::var("TESSERA_BENCH_SCHEDULE").is_ok_and(|v| v == "1");
    let bench_pod = |name: &str| {
        let mut p = annotated_pod(name, &[]);
        if !schedule {
            p.spec.as_mut().unwrap().scheduler_name = Some("tessera-bench-unscheduled".into());
        }
        p
    };
    let template = pods
        .create(&PostParams::default(), &bench_pod("inj-template"))
        .await
        .unwrap();
    let prefilled = |name: String| {
        let mut p = template.clone();
        p.metadata = kube::api::ObjectMeta {
            name: Some(name),
            ..Default::default()
        };
        p.status = None;
        p
    };
    let ours = |text: &str| {
        let name = "tessera_operator_admission_duration_seconds";
        buckets(text, name, &["result=\"injected\""])
    };
    let ours_before = ours(&op.get("/metrics").await.unwrap().1);
    let buckets_before = apiserver_webhook_buckets();
    let mut plain = Vec::with_capacity(n);
    let mut same_size = Vec::with_capacity(n);
    let mut with = Vec::with_capacity(n);
    for i in 0..n {
        let mut p = bench_pod(&format!("plain-{i}"));
        p.metadata.annotations = None;
        let t = Instant::now();
        pods.create(&PostParams::default(), &p).await.unwrap();
        plain.push(t.elapsed());
        let t = Instant::now();
        let made = pods
            .create(&PostParams::default(), &prefilled(format!("full-{i}")))
            .await
            .unwrap();
        same_size.push(t.elapsed());
        assert_eq!(injected(&made), [SIDECAR, ADAPTER]);
        let t = Instant::now();
        let made = pods
            .create(&PostParams::default(), &bench_pod(&format!("inj-{i}")))
            .await
            .unwrap();
        with.push(t.elapsed());
        assert_eq!(injected(&made), [SIDECAR, ADAPTER]);
    }
    let buckets_after = apiserver_webhook_buckets();
    let ours_after = ours(&op.get("/metrics").await.unwrap().1);
    let (d50, d99) = percentiles(direct);
    let (f50, f99) = percentiles(fresh);
    let (p50, p99) = percentiles(plain);
    let (s50, s99) = percentiles(same_size);
    let (w50, w99) = percentiles(with);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let scheduled = if schedule {
        "scheduled"
    } else {
        "not scheduled"
    };
    eprintln!("admission latency over {n} pod creates ({scheduled}; ms); load average now: {load}");
    eprintln!("| what | p50 | p99 |");
    eprintln!("|---|---|---|");
    eprintln!("| webhook alone (AdmissionReview over HTTPS, kept alive) | {d50:.2} | {d99:.2} |");
    eprintln!("| webhook alone, a new TLS connection each time | {f50:.2} | {f99:.2} |");
    eprintln!("| pod create, not annotated (webhook not called) | {p50:.2} | {p99:.2} |");
    eprintln!(
        "| pod create, not annotated, sidecar and adapter already in the spec | {s50:.2} | {s99:.2} |"
    );
    eprintln!("| pod create, annotated (injected) | {w50:.2} | {w99:.2} |");
    eprintln!(
        "| difference with the plain pod | {:.2} | {:.2} |",
        w50 - p50,
        w99 - p99
    );
    eprintln!(
        "| difference with the same-size pod: the admission step | {:.2} | {:.2} |",
        w50 - s50,
        w99 - s99
    );
    eprintln!(
        "| the webhook answering the API server (its own histogram: bucket bound) | <= {:.2} | <= {:.2} |",
        bucket_quantile(&ours_before, &ours_after, 0.5) * 1000.0,
        bucket_quantile(&ours_before, &ours_after, 0.99) * 1000.0
    );
    eprintln!(
        "| the API server's call to the webhook (its histogram: bucket bound) | <= {:.1} | <= {:.1} |",
        bucket_quantile(&buckets_before, &buckets_after, 0.5) * 1000.0,
        bucket_quantile(&buckets_before, &buckets_after, 0.99) * 1000.0
    );
    let calls = bucket_count(&buckets_before, &buckets_after, f64::INFINITY);
    let share = |le: f64| 100.0 * bucket_count(&buckets_before, &buckets_after, le) / calls;
    eprintln!(
        "(the API server called the webhook {calls} times for {n} annotated creates: {:.1}% within 5 ms, {:.1}% within 25 ms)",
        share(0.005),
        share(0.025)
    );
    // One for the kept-alive client, n for the fresh ones, the rest the
    // API server's.
    let connections = op.logs().matches("webhook connection").count();
    eprintln!("(connections accepted, with TESSERA_BENCH_LOG=debug: {connections})");
}
