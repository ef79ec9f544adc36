//! End-to-end tests against a real API server (see the crate docs for how the
//! cluster is found or started). Each test uses a namespace of its own.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Node, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::AuthInfo;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tessera_e2e::webhook::WebhookServer;
use tessera_e2e::{TestEnv, connect, install_crds, kubectl, yaml_files};

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("test object")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// (a) All three CRDs from crds/ are accepted and Established.
#[tokio::test]
async fn crds_are_accepted_and_established() {
    let (client, _) = connect().await;
    let names = install_crds(&client).await.expect("install crds/");
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let mut kinds = Vec::new();
    for name in &names {
        let crd = api.get(name).await.expect("get CRD");
        assert_eq!(crd.spec.group, "tessera.dev", "{name}");
        assert!(
            crd.spec
                .versions
                .iter()
                .any(|v| v.name == "v1alpha1" && v.served && v.storage),
            "{name} serves and stores v1alpha1"
        );
        let conds = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        for wanted in ["Established", "NamesAccepted"] {
            assert!(
                conds
                    .iter()
                    .any(|c| c.type_ == wanted && c.status == "True"),
                "{name} is not {wanted}: {conds:?}"
            );
        }
        kinds.push(crd.spec.names.kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        ["Broker", "Ensemble", "ShardedStore"],
        "crds/ holds exactly our three kinds"
    );
}

/// `kubectl apply --dry-run=server`, retried while kubectl's discovery has
/// not yet seen freshly Established CRDs.
async fn dry_run_apply(env: &TestEnv, file: &Path) -> std::process::Output {
    let path = file.to_string_lossy();
    let mut tries = 0;
    loop {
        let out = env.kubectl(&["apply", "--dry-run=server", "-f", &path]);
        let t = text(&out);
        let discovery_lag =
            t.contains("no matches for kind") || t.contains("ensure CRDs are installed first");
        if out.status.success() || !discovery_lag || tries >= 20 {
            return out;
        }
        tries += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// (b) Every valid example in examples/ is accepted by the API server.
#[tokio::test]
async fn valid_examples_are_accepted_by_server_dry_run() {
    let env = TestEnv::new("valid-examples").await;
    install_crds(&env.client).await.expect("install crds/");
    let files = yaml_files("examples").expect("examples/");
    assert!(!files.is_empty(), "examples/ holds no *.yaml");
    let mut failures = Vec::new();
    for f in &files {
        let out = dry_run_apply(&env, f).await;
        if !out.status.success() {
            failures.push(format!("{}:\n{}", f.display(), text(&out)));
        }
    }
    assert!(
        failures.is_empty(),
        "the API server rejected valid examples:\n{}",
        failures.join("\n")
    );
}

/// A leading `# <key>: <value>` comment line of an example.
fn header<'a>(yaml: &'a str, key: &str) -> Option<&'a str> {
    yaml.lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .filter_map(|l| l.strip_prefix('#'))
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

// (c) Every invalid example is rejected, and the message names the broken rule.
// Each file says `# breaks: <text of the error>` and `# rejected-by: api-server`
// (or `operator`: then the API server must accept it; the operator refuses it).
#[tokio::test]
async fn invalid_examples_are_rejected_naming_the_rule() {
    let env = TestEnv::new("invalid-examples").await;
    install_crds(&env.client).await.expect("install crds/");
    let files = yaml_files("examples/invalid").expect("examples/invalid/");
    assert!(!files.is_empty(), "examples/invalid/ holds no *.yaml");
    let mut failures = Vec::new();
    let mut rejected = 0;
    for f in &files {
        let yaml = std::fs::read_to_string(f).expect("read example");
        let (Some(breaks), Some(by)) = (header(&yaml, "breaks"), header(&yaml, "rejected-by"))
        else {
            failures.push(format!(
                "{}: lacks the '# breaks:' or '# rejected-by:' comment",
                f.display()
            ));
            continue;
        };
        let out = dry_run_apply(&env, f).await;
        let msg = text(&out);
        match (by, out.status.success()) {
            ("api-server", true) => failures.push(format!(
                "{}: the API server accepted it, but it breaks: {breaks}",
                f.display()
            )),
            ("api-server", false) if msg.contains(breaks) => {
                rejected += 1;
                eprintln!("{} rejected: {}", f.display(), msg.trim());
            }
            ("api-server", false) => failures.push(format!(
                "{}: rejected, but the message does not contain {breaks:?}\n  message: {}",
                f.display(),
                msg.trim()
            )),
            ("operator", true) => {}
            ("operator", false) => failures.push(format!(
                "{}: marked rejected-by: operator, but the API server refused it: {}",
                f.display(),
                msg.trim()
            )),
            (other, _) => failures.push(format!("{}: unknown rejected-by: {other}", f.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(rejected > 0, "no example is rejected by the API server");
}

// (d) A plain 3-replica StatefulSet with a volumeClaimTemplate gets 3 Pods
// Running and Ready on the (kwok) nodes, with their claims Bound.
#[tokio::test]
async fn statefulset_with_volume_claims_gets_ready_pods() {
    let env = TestEnv::new("statefulset").await;
    let sts: StatefulSet = obj(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "main",
                    "image": "registry.invalid/tessera/none:0",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                }]}
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}
            }]
        }
    }));
    let api: Api<StatefulSet> = env.api();
    api.create(&PostParams::default(), &sts)
        .await
        .expect("create StatefulSet");
    env.wait_for(
        &api,
        "web",
        Duration::from_secs(180),
        "to have 3 ready replicas",
        |s: Option<&StatefulSet>| {
            s.and_then(|s| s.status.as_ref())
                .and_then(|st| st.ready_replicas)
                == Some(3)
        },
    )
    .await
    .unwrap();

    let pods: Api<Pod> = env.api();
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 3, "pods of the StatefulSet");
    let nodes: Api<Node> = Api::all(env.client.clone());
    for pod in &list.items {
        let status = pod.status.clone().unwrap_or_default();
        assert_eq!(
            status.phase.as_deref(),
            Some("Running"),
            "{} phase",
            pod.name_any()
        );
        let ready = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        assert!(ready, "{} is Ready", pod.name_any());
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .expect("scheduled");
        nodes
            .get(&node)
            .await
            .unwrap_or_else(|e| panic!("node {node} of {}: {e}", pod.name_any()));
    }
    let pvcs: Api<PersistentVolumeClaim> = env.api();
    for i in 0..3 {
        let pvc = pvcs
            .get(&format!("data-web-{i}"))
            .await
            .expect("claim from the template");
        let phase = pvc.status.and_then(|s| s.phase);
        assert_eq!(phase.as_deref(), Some("Bound"), "data-web-{i} phase");
    }
}

// (e) Deleting an owner garbage-collects the objects it owns, and only those.
#[tokio::test]
async fn deleting_owner_garbage_collects_owned_objects() {
    let env = TestEnv::new("garbage-collection").await;
    let cms: Api<ConfigMap> = env.api();
    let secrets: Api<Secret> = env.api();
    let pp = PostParams::default();
    let owner = cms
        .create(&pp, &obj(json!({"metadata": {"name": "owner"}})))
        .await
        .unwrap();
    let owner_ref = json!([{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.uid().unwrap()
    }]);
    cms.create(
        &pp,
        &obj(json!({"metadata": {"name": "owned-cm", "ownerReferences": owner_ref}})),
    )
    .await
    .unwrap();
    secrets
        .create(
            &pp,
            &obj(json!({"metadata": {"name": "owned-secret", "ownerReferences": owner_ref}})),
        )
        .await
        .unwrap();
    cms.create(&pp, &obj(json!({"metadata": {"name": "bystander"}})))
        .await
        .unwrap();

    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    let gone = Duration::from_secs(60);
    env.wait_for(
        &cms,
        "owned-cm",
        gone,
        "to be garbage-collected",
        |o: Option<&ConfigMap>| o.is_none(),
    )
    .await
    .unwrap();
    env.wait_for(
        &secrets,
        "owned-secret",
        gone,
        "to be garbage-collected",
        |o: Option<&Secret>| o.is_none(),
    )
    .await
    .unwrap();
    assert!(
        cms.get_opt("bystander").await.unwrap().is_some(),
        "an unowned object survives"
    );
}

// (f) A ServiceAccount bound to a narrow Role gets 403 on a verb it lacks.
#[tokio::test]
async fn narrow_role_gets_forbidden_on_missing_verb() {
    let env = TestEnv::new("rbac").await;
    let ns = env.namespace.clone();
    let pp = PostParams::default();
    let sas: Api<ServiceAccount> = env.api();
    sas.create(&pp, &obj(json!({"metadata": {"name": "narrow"}})))
        .await
        .unwrap();
    let roles: Api<Role> = env.api();
    roles
        .create(&pp, &obj(json!({
            "metadata": {"name": "configmap-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]
        })))
        .await
        .unwrap();
    let bindings: Api<RoleBinding> = env.api();
    bindings
        .create(&pp, &obj(json!({
            "metadata": {"name": "narrow-reads-configmaps"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "narrow", "namespace": ns}]
        })))
        .await
        .unwrap();

    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = sas
        .create_token_request("narrow", &pp, &request)
        .await
        .expect("TokenRequest");
    let token = token.status.expect("token status").token;
    let mut config = env.config.clone();
    config.auth_info = AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    let narrow = Client::try_from(config).unwrap();
    let as_narrow: Api<ConfigMap> = Api::namespaced(narrow, &ns);

    // The granted verb works (so the token authenticates and RBAC has caught up).
    env.wait_until(
        Duration::from_secs(30),
        "the narrow ServiceAccount to list configmaps",
        || {
            let api = as_narrow.clone();
            async move { Ok(api.list(&ListParams::default()).await.map(Some)?) }
        },
    )
    .await
    .unwrap();

    let err = as_narrow
        .create(&pp, &obj(json!({"metadata": {"name": "not-allowed"}})))
        .await
        .expect_err("create must be forbidden");
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert_eq!(status.reason, "Forbidden", "{status:?}");
            let who = format!("system:serviceaccount:{ns}:narrow");
            assert!(
                status.message.contains(&who),
                "message names the user: {}",
                status.message
            );
            assert!(
                status
                    .message
                    .contains("cannot create resource \"configmaps\""),
                "message names the verb: {}",
                status.message
            );
        }
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
    let err = as_narrow
        .delete("anything", &DeleteParams::default())
        .await
        .expect_err("delete is forbidden");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 403),
        "{err:?}"
    );
}

/// Deletes a cluster-scoped webhook configuration when the test ends.
struct WebhookConfigGuard(String);
impl Drop for WebhookConfigGuard {
    fn drop(&mut self) {
        let _ = kubectl(&[
            "delete",
            "mutatingwebhookconfiguration",
            &self.0,
            "--ignore-not-found",
        ]);
    }
}

// (g) The API server calls a webhook served by this test on 127.0.0.1 over
// TLS, and the webhook's JSON patch is applied to the stored object.
#[tokio::test]
async fn api_server_calls_tls_webhook_and_applies_its_patch() {
    let env = TestEnv::new("webhook").await;
    let server = WebhookServer::start(Arc::new(|req: &Value| {
        (req["kind"]["kind"] == "ConfigMap").then(
            || json!([{"op": "add", "path": "/data/injected-by", "value": "tessera-e2e-webhook"}]),
        )
    }))
    .await
    .expect("start webhook server");

    let name = format!("tessera-e2e-{}", env.namespace);
    let _guard = WebhookConfigGuard(name.clone());
    let config: MutatingWebhookConfiguration = obj(json!({
        "metadata": {"name": name},
        "webhooks": [{
            "name": "inject.e2e.tessera.dev",
            "clientConfig": {
                "url": format!("{}/mutate", server.base_url),
                "caBundle": serde_json::to_value(ByteString(server.ca_pem.clone().into_bytes())).unwrap()
            },
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": env.namespace}},
            "objectSelector": {"matchLabels": {"tessera.dev/e2e-webhook": "on"}},
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail",
            "timeoutSeconds": 10
        }]
    }));
    Api::<MutatingWebhookConfiguration>::all(env.client.clone())
        .create(&PostParams::default(), &config)
        .await
        .expect("create MutatingWebhookConfiguration");

    // The API server picks up new webhook configurations asynchronously: create
    // probes until one is mutated (with failurePolicy Fail, a failed call errors).
    let cms: Api<ConfigMap> = env.api();
    let mut n = 0;
    let patched = env
        .wait_until(
            Duration::from_secs(30),
            "a ConfigMap mutated by the webhook",
            || {
                n += 1;
                let cms = cms.clone();
                let probe = format!("probe-{n}");
                async move {
                    let cm: ConfigMap = obj(json!({
                        "metadata": {"name": probe, "labels": {"tessera.dev/e2e-webhook": "on"}},
                        "data": {"original": "yes"}
                    }));
                    let created = cms.create(&PostParams::default(), &cm).await?;
                    if created
                        .data
                        .as_ref()
                        .is_some_and(|d| d.contains_key("injected-by"))
                    {
                        Ok(Some(created.name_any()))
                    } else {
                        Ok(None)
                    }
                }
            },
        )
        .await
        .unwrap();

    let stored = cms.get(&patched).await.unwrap().data.unwrap_or_default();
    let want: BTreeMap<String, String> =
        [("injected-by", "tessera-e2e-webhook"), ("original", "yes")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(
        stored, want,
        "the stored object carries the webhook's patch"
    );
    assert!(
        server.requests() >= 1,
        "the webhook server answered the API server"
    );

    // Objects outside the webhook's selector are left alone.
    let plain = cms
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "plain"}, "data": {"a": "b"}})),
        )
        .await
        .unwrap();
    assert!(!plain.data.unwrap_or_default().contains_key("injected-by"));
}
