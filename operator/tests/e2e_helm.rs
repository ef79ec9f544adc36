//! `helm install` for real: the chart in charts/tessera, the operator running
//! in the cluster from the locally built image on the real node, engines
//! brought to Ready by it, a real Prometheus scraping them as the chart's
//! PodMonitor selects them, then `helm upgrade` and `helm uninstall`.
//!
//! Needs `hack/controlplane.sh up` with the real node and the images loaded
//! (`make images`); helm comes with the control plane's binaries.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::*;
use tessera_testing::{Prometheus, dashboard_queries};

const MINUTE: Duration = Duration::from_secs(60);
/// The chart's default leaderElection.leaseSeconds.
const LEASE_SECONDS: u64 = 15;
/// The Prometheus operator whose CRDs (PodMonitor, ServiceMonitor,
/// PrometheusRule) the server-side dry run needs; its Go module carries them.
const PROMETHEUS_OPERATOR: &str = "github.com/prometheus-operator/prometheus-operator@v0.85.0";

fn chart() -> PathBuf {
    repo_root().join("charts/tessera")
}

fn local_values() -> PathBuf {
    chart().join("ci/local-values.yaml")
}

fn helm(args: &[&str]) -> Output {
    Command::new("helm")
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .stdin(Stdio::null())
        .output()
        .expect("helm (built with the control plane: eval \"$(hack/controlplane.sh env)\")")
}

fn helm_ok(args: &[&str]) -> String {
    let out = helm(args);
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm template` offline; the cluster is 1.34 like the local one.
fn template(extra: &[&str]) -> Output {
    let chart = chart();
    let mut args = vec![
        "template",
        "tessera",
        chart.to_str().unwrap(),
        "--kube-version",
        "1.34.0",
    ];
    args.extend_from_slice(extra);
    helm(&args)
}

/// A value the chart must refuse, with every `expected` phrase in the error.
fn assert_refused(set: &[&str], expected: &[&str]) {
    let out = template(set);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{set:?} was accepted");
    for phrase in expected {
        assert!(err.contains(phrase), "{set:?}: {phrase:?} not in:\n{err}");
    }
}

#[test]
fn the_chart_lints_clean_and_bad_values_are_refused_naming_the_value() {
    let chart = chart();
    let chart = chart.to_str().unwrap();
    helm_ok(&["lint", "--strict", chart]);
    helm_ok(&[
        "lint",
        "--strict",
        chart,
        "-f",
        local_values().to_str().unwrap(),
    ]);
    helm_ok(&["lint", "--strict", chart, "--set", "watchNamespaces={a,b}"]);

    assert_refused(
        &["--set", "replicaCount=0"],
        &["/replicaCount", "minimum: got 0, want 1"],
    );
    assert_refused(
        &["--set", "replicaCount=two"],
        &["/replicaCount", "got string, want integer"],
    );
    assert_refused(
        &["--set", "replicas=2"],
        &["additional properties 'replicas' not allowed"],
    );
    assert_refused(
        &["--set", "engineImages.mysql=mysql:8"],
        &["/engineImages", "'mysql' not allowed"],
    );
    assert_refused(&["--set", "logFormat=xml"], &["/logFormat", "json", "text"]);
    assert_refused(
        &["--set", "watchNamespaces={Not_A_Namespace}"],
        &["/watchNamespaces/0"],
    );
    assert_refused(
        &["--set", "injection.namespaces=all"],
        &["/injection/namespaces", "opt-out", "opt-in"],
    );
    assert_refused(
        &["--set", "injection.timeoutSeconds=0"],
        &["/injection/timeoutSeconds", "minimum: got 0, want 1"],
    );
    assert_refused(
        &["--set", "injection.certValidity=1year"],
        &["/injection/certValidity"],
    );
    // A monitoring object without the Prometheus operator's API: refused
    // with the way out, not silently dropped.
    assert_refused(
        &["--set", "monitoring.podMonitor.enabled=true"],
        &[
            "monitoring.podMonitor.enabled is true",
            "--api-versions monitoring.coreos.com/v1/PodMonitor",
        ],
    );
}

/// The chart's RBAC comes from files/operator-rbac.yaml, minus the Lease
/// rules, which it grants in the release namespace only.
#[test]
fn the_chart_grants_the_rules_of_the_rbac_file_and_leases_only_in_its_namespace() {
    let out = template(&["--namespace", "ops"]);
    assert!(out.status.success(), "{out:?}");
    let docs: Vec<Value> = serde_yaml::Deserializer::from_slice(&out.stdout)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|v: &Value| !v.is_null())
        .collect();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .clone()
    };
    let file: Vec<Value> = serde_yaml::Deserializer::from_str(
        &std::fs::read_to_string(chart().join("files/operator-rbac.yaml")).unwrap(),
    )
    .map(|d| serde::Deserialize::deserialize(d).unwrap())
    .collect();
    let file_rules: Vec<Value> = file
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "tessera-operator")
        .expect("the ClusterRole tessera-operator in the RBAC file")["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["apiGroups"][0] != "coordination.k8s.io")
        .cloned()
        .collect();
    let role = find("ClusterRole", "tessera");
    assert_eq!(role["rules"].as_array().unwrap(), &file_rules);
    let lease = find("Role", "tessera-lease");
    assert_eq!(lease["metadata"]["namespace"], "ops");
    assert_eq!(lease["rules"][1]["resourceNames"], json!(["tessera"]));
    let deploy = find("Deployment", "tessera");
    let env = &deploy["spec"]["template"]["spec"]["containers"][0]["env"];
    let var = |name: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(var("TESSERA_LEASE_NAMESPACE"), Some(json!("ops")));
    assert_eq!(var("TESSERA_LEASE_NAME"), Some(json!("tessera")));

    // Namespaced mode: a Role per watched namespace, no ClusterRole.
    let out = template(&["--namespace", "ops", "--set", "watchNamespaces={a,b}"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("kind: ClusterRole\n"), "{text}");
    assert!(text.contains("namespace: a\n") && text.contains("namespace: b\n"));
    assert!(!text.contains("MutatingWebhookConfiguration"), "{text}");
}

fn rendered(extra: &[&str]) -> Vec<Value> {
    let out = template(extra);
    assert!(out.status.success(), "{out:?}");
    serde_yaml::Deserializer::from_slice(&out.stdout)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn rbac_file_rules(kind: &str, name: &str) -> Vec<Value> {
    let file: Vec<Value> = serde_yaml::Deserializer::from_str(
        &std::fs::read_to_string(chart().join("files/operator-rbac.yaml")).unwrap(),
    )
    .map(|d| serde::Deserialize::deserialize(d).unwrap())
    .collect();
    file.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the RBAC file"))["rules"]
        .as_array()
        .unwrap()
        .clone()
}

/// Injection on: the chart owns the webhook configuration (so uninstall
/// removes it) and grants the file's injection rules less `create` on it;
/// the operator is told not to create it.
#[test]
fn with_injection_the_chart_owns_the_webhook_configuration() {
    let docs = rendered(&["--namespace", "ops", "--set", "injection.enabled=true"]);
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .clone()
    };
    let config = find("MutatingWebhookConfiguration", "tessera-operator");
    assert!(
        config.get("webhooks").is_none(),
        "the operator fills in the webhook: {config}"
    );
    let expected: Vec<Value> = rbac_file_rules("ClusterRole", "tessera-operator-injection")
        .into_iter()
        .filter(|r| {
            !(r["resources"][0] == "mutatingwebhookconfigurations"
                && r["verbs"].as_array().unwrap().contains(&json!("create")))
        })
        .collect();
    let cluster = find("ClusterRole", "tessera-injection");
    assert_eq!(cluster["rules"].as_array().unwrap(), &expected);
    assert!(
        !cluster.to_string().contains("\"create\""),
        "the chart creates the configuration: {cluster}"
    );
    let role = find("Role", "tessera-injection");
    assert_eq!(role["metadata"]["namespace"], "ops");
    assert_eq!(
        role["rules"].as_array().unwrap(),
        &rbac_file_rules("Role", "tessera-operator-injection")
    );
    let svc = find("Service", "tessera-webhook");
    assert_eq!(svc["spec"]["ports"][0]["port"], 443);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "webhook");
    let container = &find("Deployment", "tessera")["spec"]["template"]["spec"]["containers"][0];
    let var = |name: &str| {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(var("TESSERA_WEBHOOK"), Some(json!("true")));
    assert_eq!(
        var("TESSERA_WEBHOOK_CONFIGURATION_OWNER"),
        Some(json!("installer"))
    );
    assert_eq!(
        var("TESSERA_WEBHOOK_SERVICE"),
        Some(json!("tessera-webhook"))
    );
    assert_eq!(var("TESSERA_WEBHOOK_NAMESPACE"), Some(json!("ops")));
    assert!(
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "webhook" && p["containerPort"] == 8443)
    );

    // Without the secrets check, no cluster-wide `get` on Secrets.
    let docs = rendered(&[
        "--set",
        "injection.enabled=true",
        "--set",
        "injection.checkSecrets=false",
    ]);
    let cluster = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "tessera-injection")
        .unwrap();
    assert!(!cluster.to_string().contains("secrets"), "{cluster}");
}

/// charts/tessera/ci/local-values.yaml is what the tests install with: its
/// images must be the ones hack/images.sh builds and loads.
#[test]
fn local_values_name_the_images_built_here() {
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(local_values()).unwrap()).unwrap();
    let images = |arg: &str| {
        let out = Command::new(repo_root().join("hack/images.sh"))
            .arg(arg)
            .output()
            .expect("hack/images.sh");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let map = images("engine-map");
    for pair in map.trim().split(',') {
        let (engine, image) = pair.split_once('=').unwrap();
        assert_eq!(
            values["engineImages"][engine].as_str(),
            Some(image),
            "engineImages.{engine} in {}",
            local_values().display()
        );
    }
    let tessera = format!(
        "{}:{}",
        values["image"]["repository"].as_str().unwrap(),
        values["image"]["tag"].as_str().unwrap()
    );
    assert!(
        images("list").split_whitespace().any(|w| w == tessera),
        "{tessera} is not an image hack/images.sh builds"
    );
    assert_eq!(values["image"]["pullPolicy"], "Never");
}

/// The Prometheus operator's CRDs, from its Go module (cached by Go).
fn install_monitoring_crds() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("go")
        .args(["mod", "download", "-json", PROMETHEUS_OPERATOR])
        .current_dir(dir.path())
        .output()
        .expect("go");
    assert!(out.status.success(), "go mod download: {out:?}");
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    let crds = Path::new(info["Dir"].as_str().unwrap()).join("example/prometheus-operator-crd");
    for kind in ["podmonitors", "servicemonitors", "prometheusrules"] {
        let file = crds.join(format!("monitoring.coreos.com_{kind}.yaml"));
        kubectl_ok(&["apply", "--server-side", "-f", file.to_str().unwrap()]);
    }
    kubectl_ok(&[
        "wait",
        "--for",
        "condition=Established",
        "crd/podmonitors.monitoring.coreos.com",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    ]);
}

/// Pipes `manifests` through `kubectl apply --dry-run=server`.
fn server_dry_run(namespace: &str, manifests: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(["apply", "--dry-run=server", "-n", namespace, "-f", "-"])
        .env("KUBECONFIG", kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child.stdin.take().unwrap().write_all(manifests).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn the_rendered_chart_is_accepted_by_the_api_server_with_monitoring_on_and_off() {
    install_monitoring_crds();
    let client = admin().await;
    let ns = TestNs::new(&client, "helm-dry-run").await;
    let monitoring_on = [
        "--api-versions",
        "monitoring.coreos.com/v1/PodMonitor",
        "--api-versions",
        "monitoring.coreos.com/v1/ServiceMonitor",
        "--api-versions",
        "monitoring.coreos.com/v1/PrometheusRule",
        "--set",
        "monitoring.podMonitor.enabled=true",
        "--set",
        "monitoring.serviceMonitor.enabled=true",
        "--set",
        "monitoring.prometheusRule.enabled=true",
    ];
    let watch = format!("watchNamespaces={{{}}}", ns.name);
    let cases: [(&str, Vec<&str>); 3] = [
        ("monitoring off", vec![]),
        ("monitoring on", monitoring_on.to_vec()),
        (
            "monitoring on, namespaced",
            [&monitoring_on[..], &["--set", &watch]].concat(),
        ),
    ];
    for (what, extra) in cases {
        let mut args = vec!["--namespace", ns.name.as_str()];
        args.extend_from_slice(&extra);
        let out = template(&args);
        assert!(out.status.success(), "{what}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        if what.starts_with("monitoring on") {
            for kind in ["PodMonitor", "ServiceMonitor", "PrometheusRule"] {
                assert!(
                    text.contains(&format!("kind: {kind}\n")),
                    "{what}: no {kind}"
                );
            }
        }
        let applied = server_dry_run(&ns.name, &out.stdout);
        assert!(
            applied.status.success(),
            "{what}: the API server refused the chart:\n{}",
            String::from_utf8_lossy(&applied.stderr)
        );
    }
}

/// The sorted names of the namespace's objects of one type.
async fn names_of<K>(ns: &TestNs) -> Vec<String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = ns.api();
    let mut names: Vec<String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .iter()
        .map(|o| o.name_any())
        .collect();
    names.sort();
    names
}

/// The Lease as seen at one moment: holder and renew time.
async fn lease_record(leases: &Api<Lease>) -> Option<(String, String)> {
    let l = leases.get_opt("tessera").await.ok()??;
    let spec = l.spec?;
    Some((spec.holder_identity?, format!("{:?}", spec.renew_time?.0)))
}

// Multi-threaded: the Lease is watched while `helm upgrade --wait` blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_the_operator_and_prometheus_scrapes_every_engine() {
    let ns = TestNs::on_real_node("helm").await;
    let client = admin().await;
    install_crds(&client).await;
    let chart = chart();
    let values = local_values();
    let watch = format!("watchNamespaces={{{}}}", ns.name);
    // Namespaced: the operator must not touch the other tests' namespaces.
    let install = |verb: &'static str, extra: &'static [&'static str]| {
        let mut args = vec![
            verb,
            "tessera",
            chart.to_str().unwrap(),
            "--namespace",
            ns.name.as_str(),
            "-f",
            values.to_str().unwrap(),
            "--set",
            watch.as_str(),
            "--wait",
            "--timeout",
            "3m",
        ];
        args.extend_from_slice(extra);
        helm_ok(&args)
    };

    // Install: two operator pods from the local image, one leading.
    let notes = install("install", &[]);
    assert!(
        notes.contains("kubectl apply --server-side -f <chart>/crds/"),
        "{notes}"
    );
    let pods: Api<Pod> = ns.api();
    let operator_pods = || async {
        let lp = ListParams::default().labels("app.kubernetes.io/name=tessera-operator");
        pods.list(&lp).await.unwrap().items
    };
    let first = operator_pods().await;
    assert_eq!(first.len(), 2, "operator pods");
    for p in &first {
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("tessera-node"));
        assert_eq!(
            spec.containers[0].image.as_deref(),
            Some("tessera.local/tessera:dev")
        );
        assert!(tessera_operator::reconcile::status::pod_ready(p), "{p:?}");
    }
    let leases: Api<Lease> = ns.api();
    let (leader, _) = ns
        .wait_for("the leader Lease", MINUTE, || async {
            lease_record(&leases).await
        })
        .await;
    let first_names: Vec<String> = first
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert!(
        first_names.contains(&leader),
        "{leader} leads, pods {first_names:?}"
    );

    // Every example, applied as a user does (`kubectl apply -f examples/`),
    // reconciled by the operator in the cluster: all five engines run. The
    // Redis example names a password Secret, created first as
    // docs/shardedstore.md says.
    kubectl_ok(&[
        "-n",
        &ns.name,
        "create",
        "secret",
        "generic",
        "cache-auth",
        "--from-literal=password=helm-e2e-password",
    ]);
    let applied = kubectl_ok(&[
        "-n",
        &ns.name,
        "apply",
        "-f",
        repo_root().join("examples").to_str().unwrap(),
    ]);
    // "ensemble.tessera.dev/zk created" -> "ensemble.tessera.dev/zk"
    let mut resources: Vec<String> = applied
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect();
    resources.sort();
    assert_eq!(
        resources.len(),
        6,
        "one resource per example file:\n{applied}"
    );
    for kind in ["ensemble.", "shardedstore.", "broker."] {
        assert!(
            resources.iter().filter(|r| r.starts_with(kind)).count() == 2,
            "two examples of each kind: {resources:?}"
        );
    }
    // Eleven JVMs among 27 pods start on two cores: give them time.
    let not_ready = || -> Vec<String> {
        resources
            .iter()
            .filter(|r| {
                let status = kubectl(&[
                    "-n",
                    &ns.name,
                    "get",
                    r,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ]);
                String::from_utf8_lossy(&status.stdout).trim() != "True"
            })
            .cloned()
            .collect()
    };
    let deadline = Instant::now() + 12 * MINUTE;
    loop {
        let left = not_ready();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not Ready after 12 minutes: {left:?}\n{}\n{}",
            kubectl_ok(&[
                "-n",
                &ns.name,
                "get",
                "ensembles,shardedstores,brokers,pods",
                "-o",
                "wide"
            ]),
            unready_pods_diagnosis(&ns.name)
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    // A real Prometheus with Kubernetes service discovery against this API
    // server, selecting pods as the chart's PodMonitor does and the operator
    // as its ServiceMonitor does.
    let prom = Prometheus::start_binary(
        &prometheus_binary(),
        &scrape_configs(&ns.name, &kubeconfig()),
        None,
    )
    .expect("prometheus (hack/prometheus/build.sh)");
    let engine_pods: Vec<String> = pods
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=tessera-operator"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    // zk 3, etcd 3, Redis 3 shards of 2, memcached 4, Kafka 3 combined,
    // Kafka 5 brokers and 3 controllers.
    assert_eq!(engine_pods.len(), 27, "{engine_pods:?}");
    let healthy = ns
        .wait_for(
            "every engine pod and operator pod scraped",
            2 * MINUTE,
            || async {
                let targets = prom.targets().ok()?;
                let up = |job: &str| -> Vec<String> {
                    targets
                        .iter()
                        .filter(|t| t["scrapePool"].as_str().is_some_and(|p| p.starts_with(job)))
                        .filter(|t| t["health"] == "up")
                        .filter_map(|t| t["labels"]["pod"].as_str().map(String::from))
                        .collect()
                };
                let engines = up("podMonitor/");
                let operators = up("serviceMonitor/");
                let all_engines = engine_pods.iter().all(|p| engines.contains(p));
                (all_engines && operators.len() == 2).then_some((engines, operators))
            },
        )
        .await;
    assert_eq!(healthy.0.len(), engine_pods.len(), "{healthy:?}");

    // Every panel of the dashboard shows data for these engines. Rates need
    // two samples in their window, hence the wait.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(chart.join("dashboards/tessera-overview.json")).unwrap(),
    )
    .unwrap();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 10, "{queries:?}");
    for q in &queries {
        // Grafana's variables: every engine and instance, a one-minute rate
        // window. A trailing "> 0" only hides quiet series (no scrape
        // errors): without it the series must exist.
        let expr = q
            .replace("$engine", ".*")
            .replace("$instance", ".*")
            .replace("$namespace", &ns.name)
            .replace("$__rate_interval", "1m");
        let expr = expr.strip_suffix(" > 0").unwrap_or(&expr).to_string();
        ns.wait_for(&format!("data for {expr}"), MINUTE, || async {
            let result = prom.query(&expr).ok()?;
            (!result.is_empty()).then_some(())
        })
        .await;
    }

    // An upgrade with a changed value rolls both pods; the Lease is never
    // without a live holder for as long as its duration.
    let watch_lease = {
        let leases = leases.clone();
        tokio::spawn(async move {
            let mut last_change = Instant::now();
            let mut last = lease_record(&leases).await;
            let mut longest = Duration::ZERO;
            let mut holders: Vec<String> = last.iter().map(|(h, _)| h.clone()).collect();
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let now = lease_record(&leases).await;
                if now != last {
                    longest = longest.max(last_change.elapsed());
                    last_change = Instant::now();
                    if let Some((h, _)) = &now
                        && !holders.contains(h)
                    {
                        holders.push(h.clone());
                    }
                    last = now;
                }
                if holders.len() >= 2 && last_change.elapsed() > Duration::from_secs(1) {
                    // Done once a second holder has renewed at least once.
                    return (longest, holders);
                }
            }
        })
    };
    install("upgrade", &["--reuse-values", "--set", "logLevel=info"]);
    let (longest, holders) = tokio::time::timeout(2 * MINUTE, watch_lease)
        .await
        .expect("a new leader after the upgrade")
        .unwrap();
    println!("upgrade: longest time without a Lease renewal {longest:?}, holders {holders:?}");
    assert!(
        longest < Duration::from_secs(LEASE_SECONDS),
        "the Lease went {longest:?} without renewal during the roll (holders {holders:?})"
    );
    // helm's --wait ends once the new pods are available; the last old
    // one may still be shutting down (within its grace period).
    ns.wait_for("only new operator pods", MINUTE, || async {
        let after = operator_pods().await;
        (after.len() == 2
            && after
                .iter()
                .all(|p| !first_names.contains(p.metadata.name.as_ref().unwrap())))
        .then_some(())
    })
    .await;
    let deploys: Api<Deployment> = ns.api();
    let d = deploys.get("tessera").await.unwrap();
    let container = &d.spec.unwrap().template.spec.unwrap().containers[0];
    assert!(
        container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| { e.name == "TESSERA_LOG_LEVEL" && e.value.as_deref() == Some("info") })
    );

    // Uninstall removes the operator; resources, their StatefulSets, pods
    // and volumes stay (docs/helm.md).
    let (sts_before, pvcs_before) = (
        names_of::<StatefulSet>(&ns).await,
        names_of::<PersistentVolumeClaim>(&ns).await,
    );
    assert!(
        pvcs_before.len() >= 20,
        "claims of every stateful engine: {pvcs_before:?}"
    );
    helm_ok(&["uninstall", "tessera", "--namespace", &ns.name, "--wait"]);
    assert!(deploys.get_opt("tessera").await.unwrap().is_none());
    ns.wait_for("the operator pods gone", MINUTE, || async {
        operator_pods().await.is_empty().then_some(())
    })
    .await;
    for r in &resources {
        let out = kubectl(&["-n", &ns.name, "get", r, "-o", "name"]);
        assert!(out.status.success(), "{r} survives the uninstall");
    }
    let (sts_after, pvcs_after) = (
        names_of::<StatefulSet>(&ns).await,
        names_of::<PersistentVolumeClaim>(&ns).await,
    );
    assert_eq!(sts_after, sts_before, "StatefulSets stay");
    assert_eq!(pvcs_after, pvcs_before, "claims stay");

    // Nothing runs the claims finalizer any more: drop it so that the
    // namespace can go.
    for r in &resources {
        kubectl_ok(&[
            "-n",
            &ns.name,
            "patch",
            r,
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]);
    }
}

/// `helm install` with injection: the operator in the cluster serves the
/// webhook through the chart's Service, a pod that asks for it runs with the
/// sidecar, and `helm uninstall` leaves no webhook configuration behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_with_injection_injects_and_uninstall_removes_the_webhook() {
    let ns = TestNs::on_real_node("helm-inj").await;
    let _cleanup = ClusterScoped(&[
        "mutatingwebhookconfiguration/tessera-operator",
        "clusterrole/tessera-injection",
        "clusterrolebinding/tessera-injection",
    ]);
    let app = TestNs::on_real_node("helm-inj-app").await;
    let client = admin().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            &app.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tessera.dev/injection": "enabled"}}})),
        )
        .await
        .unwrap();
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    assert!(
        configs.get_opt("tessera-operator").await.unwrap().is_none(),
        "another test's webhook configuration is still there"
    );
    let chart = chart();
    let values = local_values();
    let watch = format!("watchNamespaces={{{}}}", app.name);
    helm_ok(&[
        "install",
        "tessera",
        chart.to_str().unwrap(),
        "--namespace",
        &ns.name,
        "-f",
        values.to_str().unwrap(),
        "--set",
        &watch,
        "--set",
        "injection.enabled=true",
        "--set",
        "injection.namespaces=opt-in",
        "--wait",
        "--timeout",
        "3m",
    ]);

    // The leader fills in the chart's configuration: the webhook with the
    // CA bundle, the chart's labels kept.
    let config = ns
        .wait_for("the webhook with its CA bundle", MINUTE, || async {
            let c = configs.get("tessera-operator").await.ok()?;
            let w = c.webhooks.as_ref()?.first()?;
            w.client_config.ca_bundle.as_ref()?;
            Some(c)
        })
        .await;
    let labels = config.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("Helm"),
        "{labels:?}"
    );
    let svc = config.webhooks.unwrap()[0]
        .client_config
        .service
        .clone()
        .expect("called through the Service");
    assert_eq!(
        (svc.name.as_str(), svc.namespace.as_str()),
        ("tessera-webhook", ns.name.as_str())
    );

    // A pod that asks for injection gets the sidecar and runs Ready with it.
    let mut spec = tessera_e2e::redis_pod_spec(2);
    spec["containers"][0]["name"] = json!("redis");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "cache", "annotations": {"tessera.dev/inject": "redis"}},
        "spec": spec,
    }))
    .unwrap();
    let pods: Api<Pod> = app.api();
    // The Service's endpoints may lag the Deployment's readiness by a
    // moment; failurePolicy Ignore would then admit the pod uninjected.
    let created = ns
        .wait_for("an injected pod", MINUTE, || async {
            let _ = pods.delete("cache", &Default::default()).await;
            let p = pods.create(&Default::default(), &pod).await.ok()?;
            let spec = p.spec.as_ref()?;
            spec.containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .any(|c| c.name == "tessera-sidecar")
                .then_some(p)
        })
        .await;
    assert!(
        created
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("tessera.dev/injected")),
        "{:?}",
        created.metadata.annotations
    );
    app.wait_for("the injected pod Ready", 2 * MINUTE, || async {
        let p = pods.get("cache").await.ok()?;
        tessera_operator::reconcile::status::pod_ready(&p).then_some(())
    })
    .await;

    // Uninstall: the configuration goes with the release and does not
    // come back (the operator does not create it).
    helm_ok(&["uninstall", "tessera", "--namespace", &ns.name, "--wait"]);
    let op_pods: Api<Pod> = ns.api();
    ns.wait_for("the operator pods gone", MINUTE, || async {
        let lp = ListParams::default().labels("app.kubernetes.io/name=tessera-operator");
        op_pods.list(&lp).await.ok()?.items.is_empty().then_some(())
    })
    .await;
    assert!(
        configs.get_opt("tessera-operator").await.unwrap().is_none(),
        "helm uninstall left the webhook configuration"
    );
}

/// Deletes cluster-scoped objects a failed test would leave behind (the
/// namespaces go with their own guards).
struct ClusterScoped(&'static [&'static str]);

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        let mut args = vec!["delete", "--ignore-not-found", "--wait=false"];
        args.extend_from_slice(self.0);
        let _ = kubectl(&args);
    }
}

/// Prometheus with Kubernetes service discovery, built from its Go module
/// (Debian's is built without it): hack/prometheus/build.sh prints its
/// path, building it first on a cold machine.
fn prometheus_binary() -> String {
    let out = Command::new(repo_root().join("hack/prometheus/build.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run hack/prometheus/build.sh");
    assert!(out.status.success(), "hack/prometheus/build.sh failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Prometheus's scrape configuration: one job as the chart's PodMonitor
/// (engine pods), one as its ServiceMonitor (the operator), named as the
/// Prometheus operator names them, each discovering its targets through
/// this API server with the relabelling docs/helm.md gives for a
/// Prometheus without the Prometheus operator.
fn scrape_configs(namespace: &str, kubeconfig: &Path) -> String {
    let sd = |role: &str| {
        format!(
            "[{{role: {role}, kubeconfig_file: '{}', namespaces: {{names: ['{namespace}']}}}}]",
            kubeconfig.display()
        )
    };
    let common = "      - {source_labels: [__meta_kubernetes_namespace], target_label: namespace}\n      \
                  - {source_labels: [__meta_kubernetes_pod_name], target_label: pod}\n      \
                  - {source_labels: [__meta_kubernetes_pod_container_name], target_label: container}\n";
    format!(
        "  - job_name: podMonitor/{namespace}/tessera-engines/0\n    \
         kubernetes_sd_configs: {pods}\n    \
         relabel_configs:\n      \
         - {{source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_managed_by], regex: tessera-operator, action: keep}}\n      \
         - {{source_labels: [__meta_kubernetes_pod_container_port_name], regex: metrics, action: keep}}\n      \
         - {{source_labels: [__meta_kubernetes_pod_phase], regex: (Failed|Succeeded), action: drop}}\n\
         {common}      \
         - {{source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_instance], target_label: cluster}}\n  \
         - job_name: serviceMonitor/{namespace}/tessera/0\n    \
         kubernetes_sd_configs: {slices}\n    \
         relabel_configs:\n      \
         - {{source_labels: [__meta_kubernetes_service_label_app_kubernetes_io_name], regex: tessera-operator, action: keep}}\n      \
         - {{source_labels: [__meta_kubernetes_endpointslice_port_name], regex: metrics, action: keep}}\n\
         {common}",
        pods = sd("pod"),
        slices = sd("endpointslice"),
    )
}
