//! One AdmissionReview in, one out: parse the pod's annotations, check the
//! password Secret, plan the patch.
//!
//! A malformed annotation is **denied** with a message naming the
//! annotation and the problem: the user sees it at once (kubectl for a
//! bare pod, the ReplicaSet's `FailedCreate` Event for a Deployment), and a
//! pod never runs without the readiness it asked for.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use serde_json::{Value, json};

use super::WebhookMetrics;
use super::nodes::NodeVersions;
use super::patch::{self, Decision, Mode};
use super::spec::{self, SpecError};

/// The parts of an AdmissionReview request that matter here.
#[derive(Deserialize)]
struct Review {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    request: Option<Request>,
}

#[derive(Deserialize)]
struct Request {
    uid: String,
    #[serde(default)]
    kind: Gvk,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    object: Option<Value>,
}

#[derive(Deserialize, Default)]
struct Gvk {
    #[serde(default)]
    group: String,
    #[serde(default)]
    kind: String,
}

/// Looks a Secret up by name: `Ok(false)` when it does not exist.
pub trait SecretCheck: Send + Sync {
    fn exists(
        &self,
        namespace: &str,
        name: &str,
    ) -> futures::future::BoxFuture<'_, Result<bool, String>>;
}

/// The real check: a metadata-only GET through the API.
pub struct ApiSecrets(pub kube::Client);

impl SecretCheck for ApiSecrets {
    fn exists(
        &self,
        namespace: &str,
        name: &str,
    ) -> futures::future::BoxFuture<'_, Result<bool, String>> {
        let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(self.0.clone(), namespace);
        let name = name.to_string();
        Box::pin(async move {
            match api.get_metadata_opt(&name).await {
                Ok(found) => Ok(found.is_some()),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// Everything the handler needs; shared by every connection.
pub struct Injector {
    pub image: String,
    /// Namespaces never injected: kube-system and the operator's own.
    pub excluded: Vec<String>,
    pub native: NativeSidecars,
    pub nodes: NodeVersions,
    pub secrets: Option<Box<dyn SecretCheck>>,
    pub metrics: WebhookMetrics,
}

/// Whether to inject native sidecars.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NativeSidecars {
    /// When every node's kubelet is 1.29 or newer.
    Auto,
    Always,
    Never,
}

/// A request that is not an AdmissionReview: answered with 400.
#[derive(Debug)]
pub struct BadReview(pub String);

impl Injector {
    fn mode(&self) -> Mode {
        let native = match self.native {
            NativeSidecars::Always => true,
            NativeSidecars::Never => false,
            NativeSidecars::Auto => self.nodes.all_support_native_sidecars(),
        };
        if native { Mode::Native } else { Mode::Regular }
    }

    /// Answers one AdmissionReview body.
    pub async fn review(&self, body: &[u8]) -> Result<Value, BadReview> {
        let start = Instant::now();
        let review: Review = serde_json::from_slice(body)
            .map_err(|e| BadReview(format!("not an AdmissionReview: {e}")))?;
        let api_version = review
            .api_version
            .unwrap_or_else(|| "admission.k8s.io/v1".into());
        let req = review
            .request
            .ok_or_else(|| BadReview("AdmissionReview without a request".into()))?;
        let (response, result) = self.decide(&req).await;
        self.metrics.requests.with_label_values(&[result]).inc();
        self.metrics
            .duration
            .with_label_values(&[result])
            .observe(start.elapsed().as_secs_f64());
        Ok(json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response}))
    }

    async fn decide(&self, req: &Request) -> (Value, &'static str) {
        let allow = || json!({"uid": req.uid, "allowed": true});
        if !req.kind.group.is_empty() || req.kind.kind != "Pod" || req.operation != "CREATE" {
            return (allow(), "ignored");
        }
        let namespace = req.namespace.clone().unwrap_or_default();
        if self.excluded.contains(&namespace) {
            return (allow(), "excluded");
        }
        let Some(object) = &req.object else {
            return (allow(), "ignored");
        };
        let pod: Pod = match serde_json::from_value(object.clone()) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the pod of an AdmissionReview");
                return (allow(), "error");
            }
        };
        let empty = BTreeMap::new();
        let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
        let spec = match spec::parse(annotations) {
            Ok(Some(s)) => s,
            Ok(None) => return (allow(), "not_requested"),
            Err(e) => return (deny(&req.uid, &e), "denied"),
        };
        if let (Some(secret), Some(check)) = (&spec.password, &self.secrets) {
            match check.exists(&namespace, &secret.name).await {
                Ok(true) => {}
                Ok(false) => {
                    let e = SpecError::MissingSecret {
                        name: secret.name.clone(),
                        namespace,
                    };
                    return (deny(&req.uid, &e), "denied");
                }
                // Not our user's fault: inject anyway; the kubelet reports
                // a missing Secret on the pod.
                Err(e) => {
                    tracing::warn!(error = %e, secret = %secret.name, "cannot check the password Secret")
                }
            }
        }
        let mode = self.mode();
        match patch::plan(&pod, &spec, &self.image, mode) {
            Err(e) => (deny(&req.uid, &e), "denied"),
            Ok(Decision::Skip(_)) => (allow(), "already_injected"),
            Ok(Decision::Patch { ops, injected }) => {
                let bytes = serde_json::to_vec(&Value::Array(ops)).unwrap_or_default();
                let mut r = allow();
                r["patchType"] = json!("JSONPatch");
                r["patch"] = base64(bytes);
                if injected.is_empty() {
                    return (r, "already_injected");
                }
                tracing::debug!(namespace = %namespace, pod = %pod.metadata.name.as_deref().or(pod.metadata.generate_name.as_deref()).unwrap_or_default(), containers = ?injected, ?mode, "injecting");
                (r, "injected")
            }
        }
    }
}

fn deny(uid: &str, e: &SpecError) -> Value {
    json!({
        "uid": uid,
        "allowed": false,
        "status": {"code": 400, "reason": "BadRequest", "message": e.to_string()},
    })
}

/// `patch` is base64 in the review: ByteString serializes that way.
fn base64(bytes: Vec<u8>) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(bytes)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::webhook::spec::{INJECT, INJECT_PASSWORD_SECRET};

    struct FakeSecrets(Vec<&'static str>, Arc<AtomicUsize>);

    impl SecretCheck for FakeSecrets {
        fn exists(
            &self,
            _namespace: &str,
            name: &str,
        ) -> futures::future::BoxFuture<'_, Result<bool, String>> {
            self.1.fetch_add(1, Ordering::SeqCst);
            let found = self.0.contains(&name);
            Box::pin(async move { Ok(found) })
        }
    }

    fn injector(native: NativeSidecars) -> (Injector, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let i = Injector {
            image: "tessera:test".into(),
            excluded: vec!["kube-system".into(), "tessera-system".into()],
            native,
            nodes: NodeVersions::default(),
            secrets: Some(Box::new(FakeSecrets(vec!["auth"], calls.clone()))),
            metrics: WebhookMetrics::new(),
        };
        (i, calls)
    }

    fn review(ns: &str, annotations: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": ns,
                "operation": "CREATE",
                "object": {
                    "metadata": {"generateName": "r-", "annotations": annotations},
                    "spec": {"containers": [{"name": "redis", "image": "redis"}]}
                }
            }
        }))
        .unwrap()
    }

    fn decode(b64: &str) -> Vec<u8> {
        serde_json::from_value::<k8s_openapi::ByteString>(json!(b64))
            .unwrap()
            .0
    }

    #[tokio::test]
    async fn a_pod_asking_for_injection_gets_a_patch_with_the_same_uid() {
        let (i, _) = injector(NativeSidecars::Always);
        let out = i
            .review(&review("app", json!({INJECT: "redis"})))
            .await
            .unwrap();
        assert_eq!(out["kind"], "AdmissionReview");
        let r = &out["response"];
        assert_eq!(r["uid"], "u-1");
        assert_eq!(r["allowed"], true);
        assert_eq!(r["patchType"], "JSONPatch");
        let ops: Value = serde_json::from_slice(&decode(r["patch"].as_str().unwrap())).unwrap();
        assert_eq!(ops[0]["path"], "/spec/initContainers");
        assert_eq!(i.metrics.requests.with_label_values(&["injected"]).get(), 1);
    }

    #[tokio::test]
    async fn excluded_namespaces_and_plain_pods_pass_unchanged() {
        let (i, _) = injector(NativeSidecars::Auto);
        for (ns, ann) in [
            ("kube-system", json!({INJECT: "redis"})),
            ("tessera-system", json!({INJECT: "redis"})),
            ("app", json!({})),
            ("app", json!({INJECT: "false"})),
        ] {
            let r = &i.review(&review(ns, ann)).await.unwrap()["response"];
            assert_eq!(r["allowed"], true);
            assert!(r.get("patch").is_none(), "{ns}: {r}");
        }
    }

    #[tokio::test]
    async fn auto_mode_without_known_nodes_uses_regular_containers() {
        let (i, _) = injector(NativeSidecars::Auto);
        let r = &i
            .review(&review("app", json!({INJECT: "redis"})))
            .await
            .unwrap()["response"];
        let ops: Value = serde_json::from_slice(&decode(r["patch"].as_str().unwrap())).unwrap();
        assert_eq!(ops[0]["path"], "/spec/containers/-");
    }

    #[tokio::test]
    async fn malformed_annotations_are_denied_with_the_reason() {
        let (i, _) = injector(NativeSidecars::Auto);
        let r = &i
            .review(&review("app", json!({INJECT: "redix"})))
            .await
            .unwrap()["response"];
        assert_eq!(r["allowed"], false);
        assert_eq!(r["status"]["code"], 400);
        assert!(
            r["status"]["message"]
                .as_str()
                .unwrap()
                .contains("unknown engine \"redix\"")
        );
        assert_eq!(i.metrics.requests.with_label_values(&["denied"]).get(), 1);
    }

    #[tokio::test]
    async fn a_missing_password_secret_is_denied_and_an_existing_one_allowed() {
        let (i, calls) = injector(NativeSidecars::Auto);
        let r = &i
            .review(&review(
                "app",
                json!({INJECT: "redis", INJECT_PASSWORD_SECRET: "nope:pw"}),
            ))
            .await
            .unwrap()["response"];
        assert_eq!(r["allowed"], false);
        assert_eq!(
            r["status"]["message"],
            "tessera.dev/inject-password-secret: Secret \"nope\" not found in namespace \"app\""
        );
        let r = &i
            .review(&review(
                "app",
                json!({INJECT: "redis", INJECT_PASSWORD_SECRET: "auth"}),
            ))
            .await
            .unwrap()["response"];
        assert_eq!(r["allowed"], true);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn other_operations_and_kinds_are_ignored() {
        let (i, _) = injector(NativeSidecars::Auto);
        let mut v: Value =
            serde_json::from_slice(&review("app", json!({INJECT: "redis"}))).unwrap();
        v["request"]["operation"] = json!("UPDATE");
        let r = &i.review(&serde_json::to_vec(&v).unwrap()).await.unwrap()["response"];
        assert!(r.get("patch").is_none());
        v["request"]["operation"] = json!("CREATE");
        v["request"]["kind"]["kind"] = json!("Service");
        let r = &i.review(&serde_json::to_vec(&v).unwrap()).await.unwrap()["response"];
        assert!(r.get("patch").is_none());
    }

    #[tokio::test]
    async fn garbage_is_a_bad_review() {
        let (i, _) = injector(NativeSidecars::Auto);
        assert!(i.review(b"{").await.is_err());
        assert!(i.review(b"{\"kind\":\"AdmissionReview\"}").await.is_err());
    }
}
