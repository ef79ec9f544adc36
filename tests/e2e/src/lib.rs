//! End-to-end test harness for Tessera, against a real Kubernetes API server.
//!
//! The harness attaches to the cluster named by `KUBECONFIG` when that is set
//! (the local control plane, kind, or a real cluster). Otherwise it runs
//! `hack/controlplane.sh up`, which builds (once) and starts a local control
//! plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok.
//! A test that cannot reach a control plane fails and says how to start one;
//! it never skips.
//!
//! Each test gets a [`TestEnv`] with its own namespace, deleted when the
//! `TestEnv` is dropped, and [`TestEnv::wait_for`], which on timeout reports
//! the object's YAML and its recent Events.
#![forbid(unsafe_code)]

pub mod webhook;

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::{Event, Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::{Client, Config, Resource, ResourceExt};
use serde::Deserialize as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What to tell a person whose tests cannot reach a control plane.
pub const HOW_TO_START: &str = "To run the end-to-end tests, either\n  \
     - run `make test` (builds and starts the local control plane), or\n  \
     - start it yourself: `hack/controlplane.sh up && eval \"$(hack/controlplane.sh env)\"`, or\n  \
     - point KUBECONFIG at a reachable cluster (kind, a real one).\n\
     hack/controlplane.sh status shows what runs; its logs are in the folder it prints.";

/// The repository root (two levels above this crate).
/// The Redis image hack/images.sh builds for the real node.
pub const REDIS_IMAGE: &str = "tessera.local/redis:bookworm";

/// The spec of a pod running Redis as Tessera runs its engines: non-root,
/// read-only root filesystem, no capabilities, RuntimeDefault seccomp,
/// ready when port 6379 accepts connections (probed every
/// `readiness_period` seconds). Tests add to it what they need.
pub fn redis_pod_spec(readiness_period: u32) -> serde_json::Value {
    serde_json::json!({
        "securityContext": {
            "runAsNonRoot": true, "runAsUser": 999, "runAsGroup": 999, "fsGroup": 999,
            "seccompProfile": {"type": "RuntimeDefault"}
        },
        "automountServiceAccountToken": false,
        "containers": [{
            "name": "redis",
            "image": REDIS_IMAGE,
            "command": ["redis-server", "--port", "6379", "--save", "", "--appendonly", "no"],
            "ports": [{"name": "redis", "containerPort": 6379}],
            "readinessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": readiness_period},
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
                "readOnlyRootFilesystem": true,
                "seccompProfile": {"type": "RuntimeDefault"}
            },
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]
        }],
        "volumes": [{"name": "data", "emptyDir": {}}]
    })
}

/// The checkout the tests run from: the nearest folder above the working
/// directory (cargo runs a test in its package's folder) that holds
/// `Cargo.lock` and `crds/`. Not the compile-time path alone: a target
/// directory shared between checkouts can hand this one a build of this
/// crate made in another, whose path is baked in.
pub fn repo_root() -> PathBuf {
    let found = std::env::current_dir().ok().and_then(|here| {
        here.ancestors()
            .find(|d| d.join("Cargo.lock").is_file() && d.join("crds").is_dir())
            .map(Path::to_path_buf)
    });
    let root = found.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    root.canonicalize().unwrap_or(root)
}

/// The cluster the tests run against, resolved once per test binary.
#[derive(Debug, Clone)]
pub struct Target {
    /// Value for `KUBECONFIG` (may hold several paths separated by `:`).
    pub kubeconfig: String,
    /// The kubectl to run (ours from the control plane build when there is one).
    pub kubectl: PathBuf,
    /// True when `KUBECONFIG` was unset and the harness used hack/controlplane.sh.
    pub local: bool,
}

static TARGET: OnceLock<std::result::Result<Target, String>> = OnceLock::new();

/// Resolves the target cluster, starting the local control plane if
/// `KUBECONFIG` is unset. Panics with instructions when that fails.
pub fn target() -> &'static Target {
    match TARGET.get_or_init(|| resolve_target().map_err(|e| format!("{e:#}"))) {
        Ok(t) => t,
        Err(e) => {
            panic!("no Kubernetes control plane for the end-to-end tests: {e}\n{HOW_TO_START}")
        }
    }
}

fn controlplane_sh() -> PathBuf {
    repo_root().join("hack/controlplane.sh")
}

fn resolve_target() -> Result<Target> {
    let kubectl_from_build = || -> Option<PathBuf> {
        let out = Command::new(repo_root().join("hack/controlplane/build.sh"))
            .arg("--print-dir")
            .output()
            .ok()?;
        let dir = String::from_utf8(out.stdout).ok()?;
        let k = Path::new(dir.trim()).join("kubectl");
        k.is_file().then_some(k)
    };
    let kubectl = std::env::var_os("TESSERA_KUBECTL")
        .map(PathBuf::from)
        .or_else(kubectl_from_build)
        .unwrap_or_else(|| PathBuf::from("kubectl"));

    if let Some(kc) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let kubeconfig = kc.to_string_lossy().into_owned();
        return Ok(Target {
            kubeconfig,
            kubectl,
            local: false,
        });
    }
    if std::env::var_os("TESSERA_E2E_NO_START").is_some() {
        bail!(
            "KUBECONFIG is not set and TESSERA_E2E_NO_START forbids starting the local control plane"
        );
    }
    // Start (or attach to) the local control plane. Its progress goes to stderr.
    eprintln!("tessera-e2e: KUBECONFIG is unset; running hack/controlplane.sh up");
    let status = Command::new(controlplane_sh())
        .arg("up")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .context("cannot run hack/controlplane.sh")?;
    if !status.success() {
        bail!("`hack/controlplane.sh up` failed ({status}); its output above names the logs");
    }
    let out = Command::new(controlplane_sh())
        .arg("env")
        .output()
        .context("cannot run hack/controlplane.sh env")?;
    let env = String::from_utf8_lossy(&out.stdout);
    let value = |var: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("export {var}=")))
            .map(|v| {
                v.split(':')
                    .next()
                    .unwrap_or(v)
                    .trim_matches(['\'', '"'])
                    .to_string()
            })
    };
    let kubeconfig = value("KUBECONFIG")
        .ok_or_else(|| anyhow!("`hack/controlplane.sh env` printed no KUBECONFIG:\n{env}"))?;
    let kubectl = match value("PATH") {
        Some(bin) if Path::new(&bin).join("kubectl").is_file() => Path::new(&bin).join("kubectl"),
        _ => kubectl,
    };
    Ok(Target {
        kubeconfig,
        kubectl,
        local: true,
    })
}

/// Loads a client configuration from a `KUBECONFIG`-style value (paths
/// separated by `:`).
pub async fn load_config(kubeconfig: &str) -> Result<Config> {
    let mut merged: Option<Kubeconfig> = None;
    for path in kubeconfig.split(':').filter(|p| !p.is_empty()) {
        let kc = Kubeconfig::read_from(path)
            .with_context(|| format!("cannot read kubeconfig {path}"))?;
        merged = Some(match merged {
            None => kc,
            Some(m) => m.merge(kc)?,
        });
    }
    let kc = merged.ok_or_else(|| anyhow!("KUBECONFIG names no file"))?;
    Ok(Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?)
}

/// A client for the cluster of `kubeconfig`, checked to answer within 20s.
pub async fn try_connect(kubeconfig: &str) -> Result<(Client, Config)> {
    let config = load_config(kubeconfig).await?;
    let client = Client::try_from(config.clone())?;
    tokio::time::timeout(Duration::from_secs(20), client.apiserver_version())
        .await
        .map_err(|_| anyhow!("the API server did not answer within 20s"))??;
    Ok((client, config))
}

/// The failure message for a cluster that cannot be reached.
pub fn unreachable_message(kubeconfig: &str, err: &anyhow::Error) -> String {
    format!(
        "cannot reach the Kubernetes API server (KUBECONFIG={kubeconfig}): {err:#}\n{HOW_TO_START}"
    )
}

/// A client for the target, checked to answer. Panics with instructions if not.
pub async fn connect() -> (Client, Config) {
    let t = target();
    match try_connect(&t.kubeconfig).await {
        Ok(ok) => ok,
        Err(e) => panic!("{}", unreachable_message(&t.kubeconfig, &e)),
    }
}

/// Runs kubectl against the target.
pub fn kubectl(args: &[&str]) -> Output {
    let t = target();
    Command::new(&t.kubectl)
        .args(args)
        .env("KUBECONFIG", &t.kubeconfig)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", t.kubectl.display()))
}

/// The YAML files of a folder of the repository (not recursive), sorted.
pub fn yaml_files(dir: &str) -> Result<Vec<PathBuf>> {
    let dir = repo_root().join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The CRDs in `crds/*.yaml`.
pub fn crds_from_repo() -> Result<Vec<CustomResourceDefinition>> {
    let files = yaml_files("crds")?;
    if files.is_empty() {
        bail!("crds/ holds no *.yaml; generate them with `make crds`");
    }
    let mut crds = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value =
                serde_yaml::Value::deserialize(doc).with_context(|| format!("{}", f.display()))?;
            if value.is_null() {
                continue;
            }
            let crd: CustomResourceDefinition = serde_yaml::from_value(value)
                .with_context(|| format!("{} is not a CustomResourceDefinition", f.display()))?;
            crds.push(crd);
        }
    }
    Ok(crds)
}

/// Installs `crds/*.yaml` with server-side apply and waits until each CRD is
/// Established. Returns the CRD names. Safe to call from concurrent tests.
pub async fn install_crds(client: &Client) -> Result<Vec<String>> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for mut crd in crds_from_repo()? {
        let name = crd.name_any();
        crd.metadata.managed_fields = None;
        crd.metadata.resource_version = None;
        crd.status = None;
        api.patch(
            &name,
            &PatchParams::apply("tessera-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("the API server rejected CRD {name}"))?;
        names.push(name);
    }
    for name in &names {
        let established = tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), name, conditions::is_crd_established()),
        )
        .await;
        if !matches!(established, Ok(Ok(Some(_)))) {
            let crd = api.get_opt(name).await?;
            bail!(
                "CRD {name} did not become Established within 30s:\n{}",
                serde_yaml::to_string(&crd.map(|c| c.status)).unwrap_or_default()
            );
        }
    }
    Ok(names)
}

/// Where a test namespace's pods run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// On the kwok nodes: pods are declared Running and Ready without
    /// running. For tests of the API and of scale, not of the engines.
    Kwok,
    /// On the real node: pods run, from the images hack/images.sh loads.
    RealNode,
}

/// The taint every kwok node carries (hack/controlplane.sh), so that only
/// pods that ask for kwok land there.
pub const KWOK_TAINT_KEY: &str = "kwok.x-k8s.io/node";

/// Namespace annotations that send every pod of the namespace to the kwok
/// nodes: the API server's PodNodeSelector and PodTolerationRestriction
/// admission plugins add the node selector and the toleration to each pod,
/// so the objects under test need no placement of their own.
pub fn kwok_namespace_annotations() -> serde_json::Value {
    serde_json::json!({
        "scheduler.alpha.kubernetes.io/node-selector": "type=kwok",
        "scheduler.alpha.kubernetes.io/defaultTolerations":
            format!(r#"[{{"key":"{KWOK_TAINT_KEY}","operator":"Exists","effect":"NoSchedule"}}]"#),
    })
}

/// One test's view of the cluster: a client and a namespace of its own,
/// deleted on drop (set TESSERA_E2E_KEEP_NAMESPACES=1 to keep it for debugging).
pub struct TestEnv {
    pub client: Client,
    pub config: Config,
    pub namespace: String,
}

impl TestEnv {
    /// Connects (panicking with instructions if no control plane answers) and
    /// creates a fresh namespace whose `default` ServiceAccount exists. Its
    /// pods go to the kwok nodes.
    pub async fn new(test: &str) -> TestEnv {
        TestEnv::placed(test, Placement::Kwok).await
    }

    /// Like [`TestEnv::new`], with pods placed as `placement` says.
    pub async fn placed(test: &str, placement: Placement) -> TestEnv {
        let (client, config) = connect().await;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let slug: String = test
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let namespace = format!(
            "e2e-{}-{:x}{:x}",
            slug.trim_matches('-'),
            std::process::id() % 0xfff,
            nanos % 0xfffff
        );
        let annotations = match placement {
            Placement::Kwok => kwok_namespace_annotations(),
            Placement::RealNode => serde_json::json!({}),
        };
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": namespace,
                "labels": {"tessera.dev/e2e": "true"},
                "annotations": annotations,
            }
        }))
        .expect("namespace object");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {namespace}: {e}"));
        let env = TestEnv {
            client,
            config,
            namespace,
        };
        // Pods are refused until the controller-manager made the default ServiceAccount.
        let sa: Api<ServiceAccount> = env.api();
        env.wait_for(
            &sa,
            "default",
            Duration::from_secs(60),
            "to exist",
            |o: Option<&ServiceAccount>| o.is_some(),
        )
        .await
        .expect("the default ServiceAccount (made by kube-controller-manager)");
        env
    }

    /// A namespaced Api in this test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Waits until `cond` holds for the object `name` (it receives `None`
    /// while the object does not exist). Uses a watch. On timeout, the error
    /// holds the object's YAML and its recent Events.
    pub async fn wait_for<K>(
        &self,
        api: &Api<K>,
        name: &str,
        timeout: Duration,
        what: &str,
        cond: impl Condition<K>,
    ) -> Result<Option<K>>
    where
        K: Clone + Debug + Send + DeserializeOwned + Serialize + Resource + 'static,
        <K as Resource>::DynamicType: Default,
    {
        let kind = K::kind(&Default::default()).into_owned();
        match tokio::time::timeout(timeout, await_condition(api.clone(), name, cond)).await {
            Ok(Ok(obj)) => Ok(obj),
            Ok(Err(e)) => Err(anyhow!("watching {kind}/{name} failed: {e}")),
            Err(_) => Err(anyhow!(
                "timed out after {timeout:?} waiting for {kind}/{name} {what}\n{}",
                self.describe(api, name).await
            )),
        }
    }

    /// Polls `check` until it returns `Ok(Some(_))`, failing after `timeout`
    /// with the last error or state it reported plus the namespace's Events.
    pub async fn wait_until<T, F, Fut>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = match check().await {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => "condition not met".to_string(),
                Err(e) => format!("{e:#}"),
            };
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; last: {last}\n{}",
                    self.events_text(None).await
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The object's YAML and the Events about it (or the namespace's recent ones).
    pub async fn describe<K>(&self, api: &Api<K>, name: &str) -> String
    where
        K: Clone + Debug + DeserializeOwned + Serialize + Resource,
        <K as Resource>::DynamicType: Default,
    {
        let kind = K::kind(&Default::default()).into_owned();
        let yaml = match api.get_opt(name).await {
            Ok(Some(mut obj)) => {
                obj.meta_mut().managed_fields = None;
                serde_yaml::to_string(&obj).unwrap_or_else(|e| format!("(cannot render: {e})"))
            }
            Ok(None) => "(the object does not exist)\n".into(),
            Err(e) => format!("(cannot get it: {e})\n"),
        };
        format!(
            "--- {kind}/{name} ---\n{yaml}{}",
            self.events_text(Some(name)).await
        )
    }

    /// Recent Events, about `name` if given and there are some, otherwise the namespace's.
    pub async fn events_text(&self, name: Option<&str>) -> String {
        let api: Api<Event> = self.api();
        let mut events = match name {
            Some(n) => api
                .list(&ListParams::default().fields(&format!("involvedObject.name={n}")))
                .await
                .map(|l| l.items)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let scope = if events.is_empty() {
            events = api
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            format!("namespace {}", self.namespace)
        } else {
            name.unwrap_or_default().to_string()
        };
        events.sort_by_key(|e| {
            e.last_timestamp
                .clone()
                .map(|t| t.0)
                .or(e.event_time.clone().map(|t| t.0))
        });
        let mut out = format!("--- recent Events ({scope}) ---\n");
        if events.is_empty() {
            out.push_str("(none)\n");
        }
        for e in events.iter().rev().take(20).rev() {
            out.push_str(&format!(
                "{} {} {}/{}: {}\n",
                e.type_.as_deref().unwrap_or("?"),
                e.reason.as_deref().unwrap_or("?"),
                e.involved_object.kind.as_deref().unwrap_or("?"),
                e.involved_object.name.as_deref().unwrap_or("?"),
                e.message.as_deref().unwrap_or("").trim()
            ));
        }
        out
    }

    /// Runs kubectl against the target in this test's namespace.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        let mut all = vec!["--namespace", self.namespace.as_str()];
        all.extend_from_slice(args);
        kubectl(&all)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if std::env::var_os("TESSERA_E2E_KEEP_NAMESPACES").is_some() {
            eprintln!("tessera-e2e: keeping namespace {}", self.namespace);
            return;
        }
        // Tessera's resources carry the operator's claims finalizer; with
        // the operator already gone (a test's locals drop in reverse order)
        // the namespace would stay Terminating for good. Namespace deletion
        // removes the claims anyway.
        let listed = kubectl(&[
            "-n",
            &self.namespace,
            "get",
            "ensembles,shardedstores,brokers",
            "-o",
            "name",
        ]);
        for name in String::from_utf8_lossy(&listed.stdout).lines() {
            let _ = kubectl(&[
                "-n",
                &self.namespace,
                "patch",
                name,
                "--type",
                "merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ]);
        }
        // Drop cannot await; kubectl deletes without needing this test's runtime.
        let out = kubectl(&[
            "delete",
            "namespace",
            &self.namespace,
            "--wait=false",
            "--ignore-not-found",
        ]);
        if !out.status.success() {
            eprintln!(
                "tessera-e2e: could not delete namespace {}: {}",
                self.namespace,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
