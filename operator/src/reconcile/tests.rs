//! Request-sequence tests: the reconcile against a mocked API service
//! (`tower-test`) that checks every request it gets, in order, and answers
//! it, including with 409 Conflict and 403 Forbidden. The e2e tests cover
//! the same paths against the real API server; these pin the exact writes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::ObjectMeta;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tessera_api::Ensemble;

use super::child::BuildContext;
use super::finalizer::FINALIZER;
use super::reconcile;
use crate::runtime::context::{Context, Stores};
use crate::runtime::error::Error;
use crate::runtime::metrics::Metrics;

/// One expected request and the answer to it.
pub struct Step {
    pub method: Method,
    /// The request's path, without the query.
    pub path: String,
    /// Substrings the query must contain.
    pub query: Vec<&'static str>,
    pub status: u16,
    /// The answer; None echoes the request body (what apply returns).
    pub answer: Option<Value>,
}

pub fn step(method: Method, path: &str, status: u16, answer: Option<Value>) -> Step {
    Step {
        method,
        path: path.into(),
        query: vec![],
        status,
        answer,
    }
}

/// What the mocked API saw: each request's method, path and body, and
/// requests that were not in the script.
#[derive(Default, Debug)]
pub struct Seen {
    pub requests: Vec<(Method, String, Value)>,
    pub unexpected: Vec<String>,
}

/// A server-side error answer, as the API server sends it.
pub fn status_answer(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("{reason} (mocked)"), "reason": reason, "code": code})
}

/// A client whose every request is checked against `script`, in order.
pub fn scripted(script: Vec<Step>) -> (Client, Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = seen.clone();
    let server = tokio::spawn(async move {
        let mut script = script.into_iter();
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().clone();
            let path = request.uri().path().to_string();
            let query = request.uri().query().unwrap_or_default().to_string();
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (status, answer) = match script.next() {
                Some(s)
                    if s.method == method
                        && s.path == path
                        && s.query.iter().all(|q| query.contains(q)) =>
                {
                    (s.status, s.answer.unwrap_or_else(|| body.clone()))
                }
                Some(s) => {
                    log.lock().unwrap().unexpected.push(format!(
                        "{method} {path}?{query}, expected {} {} {:?}",
                        s.method, s.path, s.query
                    ));
                    (500, status_answer(500, "InternalError"))
                }
                None => {
                    log.lock()
                        .unwrap()
                        .unexpected
                        .push(format!("{method} {path}?{query} after the script"));
                    (500, status_answer(500, "InternalError"))
                }
            };
            log.lock().unwrap().requests.push((method, path, body));
            let response = Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    (Client::new(service, "default"), seen, server)
}

/// Writers of the caches, to put what the watches would have seen.
pub struct Caches {
    pub services: Writer<Service>,
}

pub fn context(client: Client) -> (Arc<Context>, Caches) {
    let (statefulsets, _) = reflector::store();
    let (services, services_w) = reflector::store();
    let (configmaps, _) = reflector::store();
    let (pdbs, _) = reflector::store();
    let (pods, _) = reflector::store();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "tessera-operator".into(),
            instance: None,
        },
    );
    let ctx = Context {
        client,
        build: BuildContext::for_tests(),
        metrics: Arc::new(Metrics::new()),
        recorder,
        stores: Stores {
            statefulsets,
            services,
            configmaps,
            pdbs,
            pods,
            secrets: None,
            configmap_refs: None,
        },
        resync: Duration::from_secs(300),
        leading: Arc::new(true.into()),
        synced: Arc::new(true.into()),
        failures: Default::default(),
        secret_values: Default::default(),
    };
    (
        Arc::new(ctx),
        Caches {
            services: services_w,
        },
    )
}

/// What the caches show of a resource that runs: one StatefulSet of
/// `replicas` for `component`, no pods.
pub fn running(
    component: crate::reconcile::Component,
    replicas: i32,
) -> crate::reconcile::Observed {
    use crate::reconcile::observed::ObservedComponent;
    let sts = k8s_openapi::api::apps::v1::StatefulSet {
        spec: Some(k8s_openapi::api::apps::v1::StatefulSetSpec {
            replicas: Some(replicas),
            ..Default::default()
        }),
        ..Default::default()
    };
    crate::reconcile::Observed {
        components: vec![ObservedComponent {
            component,
            statefulsets: vec![Arc::new(sts)],
            pods: vec![],
        }],
        ..Default::default()
    }
}

pub fn ensemble(delete_claims: bool) -> Ensemble {
    serde_json::from_value(json!({
        "apiVersion": "tessera.dev/v1alpha1",
        "kind": "Ensemble",
        "metadata": {"name": "zk", "namespace": "demo", "uid": "u-1", "resourceVersion": "7", "generation": 1},
        "spec": {"engine": "zookeeper", "replicas": 1, "storage": {"deleteClaimsOnDelete": delete_claims}},
    }))
    .unwrap()
}

const NS: &str = "/api/v1/namespaces/demo";
const APPS: &str = "/apis/apps/v1/namespaces/demo";
const POLICY: &str = "/apis/policy/v1/namespaces/demo";
const ENSEMBLES: &str = "/apis/tessera.dev/v1alpha1/namespaces/demo/ensembles";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/demo/events";

/// `prepare` of a new ZooKeeper Ensemble: its membership ConfigMap, then
/// (no Secret cache here) a look for its admin Secret and its creation.
fn prepare_new() -> Vec<Step> {
    vec![
        step(Method::POST, &format!("{NS}/configmaps"), 201, None),
        step(
            Method::GET,
            &format!("{NS}/secrets/zk-admin"),
            404,
            Some(status_answer(404, "NotFound")),
        ),
        step(Method::POST, &format!("{NS}/secrets"), 201, None),
    ]
}

/// The server-side applies of a new Ensemble's children, configuration
/// first and the StatefulSet last, after `prepare`.
fn apply_children() -> Vec<Step> {
    let ssa = |path: String| Step {
        method: Method::PATCH,
        path,
        query: vec!["fieldManager=tessera-operator", "force=true"],
        status: 200,
        answer: None,
    };
    let mut steps = prepare_new();
    steps.extend([
        ssa(format!("{NS}/configmaps/zk-config")),
        ssa(format!("{NS}/services/zk-headless")),
        ssa(format!("{NS}/services/zk")),
        ssa(format!("{POLICY}/poddisruptionbudgets/zk")),
        ssa(format!("{APPS}/statefulsets/zk")),
    ]);
    steps
}

async fn run(
    obj: Ensemble,
    script: Vec<Step>,
    prepare: impl FnOnce(&mut Caches),
) -> (Result<(), Error>, Seen, Arc<Context>) {
    let (client, seen, server) = scripted(script);
    let (ctx, mut caches) = context(client);
    prepare(&mut caches);
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        reconcile(Arc::new(obj), ctx.clone()),
    )
    .await
    .expect("the reconcile waited for an answer the script does not give");
    server.abort();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    (result.map(|_| ()), seen, ctx)
}

fn errors(ctx: &Context, label: &str) -> u64 {
    ctx.metrics
        .errors
        .with_label_values(&["ensemble", label])
        .get()
}

#[tokio::test]
async fn a_new_ensemble_applies_its_children_then_patches_status_and_announces_it() {
    let mut script = apply_children();
    script.push(Step {
        method: Method::PATCH,
        path: format!("{ENSEMBLES}/zk/status"),
        query: vec!["fieldManager=tessera-operator", "force=true"],
        status: 200,
        answer: Some(serde_json::to_value(ensemble(false)).unwrap()),
    });
    script.push(step(Method::POST, EVENTS, 201, None));
    let (result, seen, _) = run(ensemble(false), script, |_| {}).await;
    assert!(seen.unexpected.is_empty(), "{:#?}", seen.unexpected);
    result.expect("reconcile succeeds");
    // prepare: the membership ConfigMap and the admin Secret are owned by
    // the Ensemble, but not as its controller (apply would delete them).
    let (members, secret) = (&seen.requests[0].2, &seen.requests[2].2);
    assert_eq!(members["metadata"]["name"], "zk-members");
    assert_eq!(
        members["data"]["zoo.cfg.dynamic"],
        "server.1=zk-0.zk-headless.demo.svc:2888:3888:participant;2181\n"
    );
    assert_eq!(secret["metadata"]["name"], "zk-admin");
    for body in [members, secret] {
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert!(
            body["metadata"]["ownerReferences"][0]
                .get("controller")
                .is_none()
        );
    }
    assert!(secret["data"]["password"].is_string());
    assert!(secret["data"]["digest"].is_string());
    // Every child carries the controller reference and the applied hash.
    for (_, path, body) in &seen.requests[3..8] {
        assert_eq!(
            body["metadata"]["ownerReferences"][0]["uid"], "u-1",
            "{path}"
        );
        assert_eq!(body["metadata"]["ownerReferences"][0]["controller"], true);
        assert!(body["metadata"]["annotations"]["tessera.dev/applied-hash"].is_string());
    }
    let status = &seen.requests[8].2;
    assert_eq!(status["kind"], "Ensemble");
    assert_eq!(
        status["status"]["selector"],
        "app.kubernetes.io/component=server,app.kubernetes.io/instance=zk,app.kubernetes.io/name=zookeeper"
    );
    assert_eq!(status["status"]["observedGeneration"], 1);
    assert_eq!(seen.requests[9].2["reason"], "Applied");
}

#[tokio::test]
async fn an_owned_child_no_longer_desired_is_deleted() {
    let mut script = apply_children();
    script.push(step(
        Method::DELETE,
        &format!("{NS}/services/zk-old"),
        200,
        Some(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})),
    ));
    // Not owned by this Ensemble: left alone.
    script.push(Step {
        method: Method::PATCH,
        path: format!("{ENSEMBLES}/zk/status"),
        query: vec![],
        status: 200,
        answer: Some(serde_json::to_value(ensemble(false)).unwrap()),
    });
    script.push(step(Method::POST, EVENTS, 201, None));
    script.push(step(Method::POST, EVENTS, 201, None));
    let owned = |name: &str, uid: &str| Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("demo".into()),
            owner_references: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    api_version: "tessera.dev/v1alpha1".into(),
                    kind: "Ensemble".into(),
                    name: "zk".into(),
                    uid: uid.into(),
                    controller: Some(true),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        },
        ..Default::default()
    };
    let (result, seen, ctx) = run(ensemble(false), script, |c| {
        c.services
            .apply_watcher_event(&watcher::Event::Apply(owned("zk-old", "u-1")));
        c.services
            .apply_watcher_event(&watcher::Event::Apply(owned("other", "u-2")));
    })
    .await;
    assert!(seen.unexpected.is_empty(), "{:#?}", seen.unexpected);
    result.expect("reconcile succeeds");
    let reasons: Vec<&Value> = seen.requests[10..].iter().map(|r| &r.2["reason"]).collect();
    assert_eq!(reasons, [&json!("Applied"), &json!("DeletedOrphans")]);
    assert_eq!(
        ctx.metrics
            .writes
            .with_label_values(&["ensemble", "delete", "services"])
            .get(),
        1
    );
}

#[tokio::test]
async fn a_conflict_on_the_status_patch_fails_the_reconcile_and_says_so() {
    let mut script = apply_children();
    script.push(step(
        Method::PATCH,
        &format!("{ENSEMBLES}/zk/status"),
        409,
        Some(status_answer(409, "Conflict")),
    ));
    script.push(step(Method::POST, EVENTS, 201, None));
    let (result, seen, ctx) = run(ensemble(false), script, |_| {}).await;
    assert!(seen.unexpected.is_empty(), "{:#?}", seen.unexpected);
    let err = result.expect_err("a conflict is an error, retried with backoff");
    assert_eq!(err.metric_label(), "api_conflict");
    assert_eq!(errors(&ctx, "api_conflict"), 1);
    let event = &seen.requests[9].2;
    assert_eq!(
        (event["reason"].as_str(), event["type"].as_str()),
        (Some("ReconcileError"), Some("Warning"))
    );
}

#[tokio::test]
async fn a_forbidden_apply_stops_before_the_other_children() {
    let mut script = prepare_new();
    script.extend([
        step(
            Method::PATCH,
            &format!("{NS}/configmaps/zk-config"),
            403,
            Some(status_answer(403, "Forbidden")),
        ),
        step(Method::POST, EVENTS, 201, None),
    ]);
    let (result, seen, ctx) = run(ensemble(false), script, |_| {}).await;
    assert!(seen.unexpected.is_empty(), "{:#?}", seen.unexpected);
    assert_eq!(
        result.expect_err("forbidden").metric_label(),
        "api_forbidden"
    );
    assert_eq!(errors(&ctx, "api_forbidden"), 1);
    assert_eq!(seen.requests[4].2["reason"], "ReconcileError");
}

#[tokio::test]
async fn the_finalizer_is_added_with_the_resource_version_and_a_conflict_retries() {
    let script = vec![
        Step {
            method: Method::PATCH,
            path: format!("{ENSEMBLES}/zk"),
            query: vec![],
            status: 409,
            answer: Some(status_answer(409, "Conflict")),
        },
        step(Method::POST, EVENTS, 201, None),
    ];
    let (result, seen, _) = run(ensemble(true), script, |_| {}).await;
    assert!(seen.unexpected.is_empty(), "{:#?}", seen.unexpected);
    assert_eq!(result.expect_err("conflict").metric_label(), "api_conflict");
    // A merge patch guarded by resourceVersion: a concurrent change of the
    // list is refused instead of overwritten.
    assert_eq!(
        seen.requests[0].2,
        json!({"metadata": {"finalizers": [FINALIZER], "resourceVersion": "7"}})
    );
}

#[tokio::test]
async fn deletion_removes_the_claims_then_the_finalizer() {
    let mut obj = ensemble(true);
    obj.metadata.finalizers = Some(vec!["other/keep".into(), FINALIZER.into()]);
    obj.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let claim = |name: &str| json!({"metadata": {"name": name, "namespace": "demo"}});
    let script = vec![
        Step {
            method: Method::GET,
            path: format!("{NS}/persistentvolumeclaims"),
            query: vec![
                "labelSelector=app.kubernetes.io%2Fcomponent%3Dserver%2Capp.kubernetes.io%2Finstance%3Dzk%2Capp.kubernetes.io%2Fname%3Dzookeeper",
            ],
            status: 200,
            answer: Some(
                json!({"kind": "PersistentVolumeClaimList", "apiVersion": "v1", "metadata": {},
                "items": [claim("data-zk-0"), claim("data-zk-1")]}),
            ),
        },
        step(
            Method::DELETE,
            &format!("{NS}/persistentvolumeclaims/data-zk-0"),
            200,
            Some(claim("data-zk-0")),
        ),
        // Already gone: not an error.
        step(
            Method::DELETE,
            &format!("{NS}/persistentvolumeclaims/data-zk-1"),
            404,
            Some(status_answer(404, "NotFound")),
        ),
        step(Method::POST, EVENTS, 201, None),
        step(
            Method::PATCH,
            &format!("{ENSEMBLES}/zk"),
            200,
            Some(serde_json::to_value(ensemble(true)).unwrap()),
        ),
    ];
    let (result, seen, _) = run(obj, script, |_| {}).await;
    assert!(seen.unexpected.is_empty(), "{:#?}", seen.unexpected);
    result.expect("cleanup succeeds");
    assert_eq!(seen.requests[3].2["reason"], "DeletedClaims");
    assert_eq!(
        seen.requests[4].2,
        json!({"metadata": {"finalizers": ["other/keep"], "resourceVersion": "7"}})
    );
}
