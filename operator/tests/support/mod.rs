//! Helpers for the end-to-end tests: attach to the control plane, one
//! namespace per test, the operator as a child process under its own
//! ServiceAccount, and waits that explain themselves on timeout.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use tessera_e2e::{kubectl, repo_root};

/// The kubeconfig the harness resolved (KUBECONFIG, or the local control plane's).
pub fn kubeconfig() -> PathBuf {
    let kc = &tessera_e2e::target().kubeconfig;
    PathBuf::from(kc.split(':').next().unwrap_or(kc))
}

/// kubectl that must succeed; returns stdout.
pub fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// For a failed wait: the last lines of the sidecar (which logs why each
/// readiness check failed) and of the engine, for every pod in `ns` that is
/// not Ready.
pub fn unready_pods_diagnosis(ns: &str) -> String {
    let out = kubectl(&[
        "-n",
        ns,
        "get",
        "pods",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status} {.spec.containers[0].name}{\"\\n\"}{end}",
    ]);
    let mut report = String::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split_whitespace();
        let (Some(pod), Some(ready), Some(engine)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if ready == "True" {
            continue;
        }
        for (container, tail) in [("sidecar", "8"), (engine, "15")] {
            let logs = kubectl(&["-n", ns, "logs", pod, "-c", container, "--tail", tail]);
            report.push_str(&format!(
                "--- {pod} {container}:\n{}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            ));
        }
    }
    report
}

/// The harness's connection, panicking with instructions when no control
/// plane answers.
pub async fn admin() -> Client {
    tessera_e2e::connect().await.0
}

pub async fn install_crds(client: &Client) {
    tessera_e2e::install_crds(client)
        .await
        .expect("install crds/");
}

/// An Ensemble's condition of `type_`: status, reason, message and
/// observedGeneration.
pub fn condition(
    e: &tessera_api::Ensemble,
    type_: &str,
) -> Option<(String, String, String, Option<i64>)> {
    status_condition(e.status.as_ref()?.common.conditions.as_slice(), type_)
}

/// The condition of `type_` in a status's conditions: status, reason,
/// message and observedGeneration.
pub fn status_condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String, String, Option<i64>)> {
    let c = conditions.iter().find(|c| c.type_ == type_)?;
    Some((
        c.status.clone(),
        c.reason.clone(),
        c.message.clone(),
        c.observed_generation,
    ))
}

/// The harness's per-test namespace, with the helpers these tests use.
pub struct TestNs {
    pub name: String,
    pub client: Client,
    env: tessera_e2e::TestEnv,
}

impl TestNs {
    /// A namespace whose pods go to the kwok nodes (declared Ready, never run).
    pub async fn new(_client: &Client, test: &str) -> TestNs {
        TestNs::placed(test, tessera_e2e::Placement::Kwok).await
    }

    /// A namespace whose pods run on the real node.
    pub async fn on_real_node(test: &str) -> TestNs {
        TestNs::placed(test, tessera_e2e::Placement::RealNode).await
    }

    async fn placed(test: &str, placement: tessera_e2e::Placement) -> TestNs {
        let env = tessera_e2e::TestEnv::placed(test, placement).await;
        TestNs {
            name: env.namespace.clone(),
            client: env.client.clone(),
            env,
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        self.env.api()
    }

    /// Polls `check` until it returns Some; on timeout panics with the
    /// namespace's recent Events (the harness's report).
    pub async fn wait_for<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let result = self
            .env
            .wait_until(timeout, what, || {
                let fut = check();
                async move { Ok(fut.await) }
            })
            .await;
        match result {
            Ok(v) => v,
            Err(e) => {
                let yaml = kubectl(&[
                    "-n",
                    &self.name,
                    "get",
                    "ensembles,brokers,statefulsets",
                    "-o",
                    "yaml",
                ]);
                panic!(
                    "{e:#}\n--- ensembles, brokers and statefulsets ---\n{}",
                    String::from_utf8_lossy(&yaml.stdout)
                )
            }
        }
    }

    /// Ready=True for the current generation with `n` ready members, and
    /// whatever else `also` asks of the Ensemble.
    pub async fn wait_ready_and(
        &self,
        name: &str,
        n: i32,
        timeout: Duration,
        also: fn(&tessera_api::Ensemble) -> bool,
    ) -> tessera_api::Ensemble {
        let api: Api<tessera_api::Ensemble> = self.api();
        self.wait_for(&format!("ensemble/{name} Ready"), timeout, || {
            let api = api.clone();
            async move {
                let e = api.get(name).await.ok()?;
                let s = e.status.as_ref()?;
                let ready = condition(&e, "Ready").is_some_and(|c| c.0 == "True");
                (s.common.observed_generation == e.metadata.generation
                    && ready
                    && s.common.ready_replicas == n
                    && also(&e))
                .then_some(e)
            }
        })
        .await
    }

    /// Applies a manifest file into this namespace.
    pub fn apply_file(&self, path: &Path) -> String {
        kubectl_ok(&["-n", &self.name, "apply", "-f", path.to_str().unwrap()])
    }
}

/// Applies charts/tessera/files/operator-rbac.yaml (the file the chart
/// ships) and returns a kubeconfig with a TokenRequest token of its
/// ServiceAccount, so that the operator runs with exactly that role.
pub async fn operator_kubeconfig(client: &Client) -> PathBuf {
    operator_kubeconfig_as(client, "tessera-operator").await
}

/// The same, with every `tessera-operator` name of the file (ServiceAccount,
/// ClusterRole, binding) replaced by `identity`: the same rules under names
/// of one test suite's own, so that suites run in parallel from checkouts
/// with different RBAC do not overwrite each other's role mid-test.
pub async fn operator_kubeconfig_as(client: &Client, identity: &str) -> PathBuf {
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let sys = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some("tessera-system".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let pp = PatchParams::apply("tessera-e2e").force();
    ns_api
        .patch("tessera-system", &pp, &Patch::Apply(&sys))
        .await
        .expect("namespace tessera-system");
    let text = std::fs::read_to_string(repo_root().join("charts/tessera/files/operator-rbac.yaml"))
        .expect("rbac file")
        .replace("tessera-operator", identity);
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(doc).expect("rbac yaml");
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        let json = serde_json::to_value(&value).unwrap();
        match kind.as_str() {
            "ServiceAccount" => {
                let o: ServiceAccount = serde_json::from_value(json).unwrap();
                apply(&Api::namespaced(client.clone(), "tessera-system"), &o).await;
            }
            "ClusterRole" => {
                let o: ClusterRole = serde_json::from_value(json).unwrap();
                apply(&Api::all(client.clone()), &o).await;
            }
            "ClusterRoleBinding" => {
                let o: ClusterRoleBinding = serde_json::from_value(json).unwrap();
                apply(&Api::all(client.clone()), &o).await;
            }
            "Role" => {
                let o: Role = serde_json::from_value(json).unwrap();
                apply(&Api::namespaced(client.clone(), "tessera-system"), &o).await;
            }
            "RoleBinding" => {
                let o: RoleBinding = serde_json::from_value(json).unwrap();
                apply(&Api::namespaced(client.clone(), "tessera-system"), &o).await;
            }
            other => panic!("unexpected kind {other} in operator-rbac.yaml"),
        }
    }
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), "tessera-system");
    let tr = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(7200),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = sa
        .create_token_request(identity, &PostParams::default(), &tr)
        .await
        .expect("TokenRequest for the operator's ServiceAccount")
        .status
        .expect("token status")
        .token;
    kubeconfig_with_token(&token, identity)
}

/// A kubeconfig for the local API server that authenticates with `token`,
/// written to a temp folder under `name`.
pub fn kubeconfig_with_token(token: &str, name: &str) -> PathBuf {
    let admin: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(kubeconfig()).unwrap()).unwrap();
    let mut cluster = admin["clusters"][0]["cluster"].clone();
    // A relative CA path would break in the temp folder.
    if let Some(ca) = cluster
        .get("certificate-authority")
        .and_then(|v| v.as_str())
    {
        let abs = kubeconfig().parent().unwrap().join(ca);
        cluster["certificate-authority"] =
            serde_yaml::Value::String(abs.to_string_lossy().into_owned());
    }
    let kc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": "tessera-operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "tessera-operator"}}],
        "current-context": "operator",
    });
    let dir = std::env::temp_dir().join(format!("tessera-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&kc).unwrap()).unwrap();
    path
}

use serde::Deserialize as _;

async fn apply<K>(api: &Api<K>, obj: &K)
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    api.patch(
        &obj.name_any(),
        &PatchParams::apply("tessera-e2e").force(),
        &Patch::Apply(obj),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {}: {e}", obj.name_any()));
}

/// The operator binary as a child process.
pub struct Operator {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Operator {
    /// Starts `tessera-operator run` watching `namespace`, with the lease in
    /// the same namespace, plus `extra` flags.
    pub fn start(kubeconfig: &Path, namespace: &str, name: &str, extra: &[&str]) -> Operator {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("tessera-operator-{namespace}-{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tessera-operator"))
            .arg("run")
            .args(["--namespaces", namespace])
            .args(["--lease-namespace", namespace])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--identity", name])
            .args(if extra.contains(&"--log-level") {
                &[][..]
            } else {
                &["--log-level", "info,tessera_operator=debug"][..]
            })
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("TESSERA_NAMESPACES")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start tessera-operator");
        Operator {
            child: Some(child),
            port,
            log,
        }
    }

    /// An operator for pods that really run: the locally built engine
    /// images, a 5 s resync, no leader election.
    pub fn start_for_real_node(kubeconfig: &Path, namespace: &str, name: &str) -> Operator {
        let images = engine_images();
        Operator::start(
            kubeconfig,
            namespace,
            name,
            &[
                "--resync-seconds",
                "5",
                "--leader-elect",
                "false",
                "--engine-image",
                &images,
            ],
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET a path of the health/metrics server; None when it does not answer.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.ok()?;
        let code = buf.split_whitespace().nth(1)?.parse().ok()?;
        let body = buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((code, body))
    }

    /// Sum of a metric's samples whose labels contain every `filter`.
    pub async fn metric(&self, name: &str, filter: &[&str]) -> f64 {
        let (_, body) = self.get("/metrics").await.unwrap_or_default();
        body.lines()
            .filter(|l| {
                l.starts_with(name)
                    && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' '))
            })
            .filter(|l| filter.iter().all(|f| l.contains(f)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            // An empty f64 sum is -0.0; report a plain 0.
            .sum::<f64>()
            + 0.0
    }

    pub async fn writes(&self) -> f64 {
        self.metric("tessera_operator_api_writes_total", &[]).await
    }

    /// SIGKILL: no cleanup, no lease release.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a graceful exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.as_ref()?.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.wait_exit(Duration::from_secs(20))
    }

    /// The exit status, once the process ends within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The containerd id of `container` in `pod`.
pub fn container_id(pod: &Pod, container: &str) -> String {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let id = statuses
        .iter()
        .find(|c| c.name == container)
        .and_then(|c| c.container_id.clone())
        .unwrap_or_else(|| panic!("no container id for {container}: {statuses:?}"));
    id.trim_start_matches("containerd://").to_string()
}

/// Sends `signal` to every process of a container, through the node's
/// containerd: the engine is stopped while its container stays, so only
/// the sidecar's protocol check can notice.
pub fn signal_container(id: &str, signal: &str) {
    let out = std::process::Command::new("ctr")
        .args([
            "-n", "k8s.io", "tasks", "kill", "--all", "--signal", signal, id,
        ])
        .env("CONTAINERD_ADDRESS", containerd_address())
        .output()
        .expect("run ctr");
    assert!(
        out.status.success(),
        "ctr tasks kill {signal} {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn containerd_address() -> String {
    if let Ok(a) = std::env::var("CONTAINERD_ADDRESS") {
        return a;
    }
    let out = std::process::Command::new(repo_root().join("hack/controlplane.sh"))
        .arg("env")
        .output()
        .expect("hack/controlplane.sh env");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("export CONTAINERD_ADDRESS="))
        .map(|v| v.trim_matches('\'').to_string())
        .expect("CONTAINERD_ADDRESS from hack/controlplane.sh env")
}

/// `--engine-image` mappings to the locally built engine images.
pub fn engine_images() -> String {
    let out = std::process::Command::new(repo_root().join("hack/images.sh"))
        .arg("engine-map")
        .output()
        .expect("run hack/images.sh engine-map");
    assert!(
        out.status.success(),
        "hack/images.sh engine-map: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A namespace on the real node and the operator watching it, with the
/// locally built engine images and a 5 s resync.
pub async fn real_node_setup(test: &str) -> (TestNs, Operator) {
    real_node_operator_as(test, "tessera-operator").await
}

/// The same, under RBAC names of its own (see [`operator_kubeconfig_as`]).
pub async fn real_node_operator_as(test: &str, identity: &str) -> (TestNs, Operator) {
    let client = admin().await;
    install_crds(&client).await;
    let kc = operator_kubeconfig_as(&client, identity).await;
    let ns = TestNs::on_real_node(test).await;
    let op = Operator::start_for_real_node(&kc, &ns.name, "op");
    (ns, op)
}

/// `kubectl exec` into a container; panics with its output on failure.
pub fn exec(ns: &TestNs, pod: &str, container: &str, cmd: &[&str]) -> String {
    let mut args = vec!["-n", &ns.name, "exec", pod, "-c", container, "--"];
    args.extend_from_slice(cmd);
    kubectl_ok(&args)
}
