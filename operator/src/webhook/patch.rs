//! From a pod and its [`InjectSpec`] to the RFC 6902 JSON patch that adds
//! the sidecar and the adapter. Pure: no API calls.
//!
//! The containers are the operator's own (`kinds::shared::sidecar` and
//! `adapter`), with four changes that an injected pod needs because the
//! engine container is not ours: the sidecar's readiness is the engine's
//! protocol check (so the pod goes NotReady when the engine stops
//! answering), the containers run as Tessera's user whatever the pod's
//! default, a password comes from the named Secret, and the pod's API token
//! is kept out of them (see [`NO_API_TOKEN`]).

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, Pod, Probe, SecretKeySelector,
    TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::spec::{INJECTED, INJECTED_BY, InjectSpec, SpecError};
use crate::kinds::shared;

/// Names of the injected containers. Prefixed, unlike the operator's own
/// `sidecar` and `adapter`, so that they never clash with a user's.
pub const SIDECAR: &str = "tessera-sidecar";
pub const ADAPTER: &str = "tessera-adapter";

/// An empty volume mounted over the service-account token's path in the
/// injected containers. Neither helper talks to the API, so neither gets
/// the pod's token (least privilege). It also spares every pod a second
/// call to the webhook: the API server's ServiceAccount plugin, run again
/// after a webhook changed the pod, would otherwise add the token's mount
/// to our new containers, and that change makes the API server call a
/// webhook with `reinvocationPolicy: IfNeeded` once more.
pub const NO_API_TOKEN: &str = "tessera-no-api-token";
/// Where the kubelet mounts the token, and where the plugin looks for an
/// existing mount before adding one.
const API_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How the containers are added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `initContainers` with `restartPolicy: Always` (Kubernetes 1.29+).
    Native,
    /// Plain `containers`.
    Regular,
}

/// What to do with one pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Leave the pod as it is (already injected, or nothing to add).
    Skip(&'static str),
    /// Apply `ops`; `injected` names the containers added.
    Patch {
        ops: Vec<Value>,
        injected: Vec<&'static str>,
    },
}

/// The containers for `spec`, in order: the sidecar, then the adapter.
pub fn containers(spec: &InjectSpec, image: &str, mode: Mode) -> Vec<Container> {
    let mut out = vec![sidecar(spec, image, mode)];
    if spec.adapter {
        out.push(adapter(spec, image, mode));
    }
    out
}

fn sidecar(spec: &InjectSpec, image: &str, mode: Mode) -> Container {
    let mut c = shared::sidecar(image, spec.engine, spec.port, &[]);
    c.name = SIDECAR.into();
    c.readiness_probe = Some(shared::engine_readiness());
    finish(c, spec, mode, shared::SIDECAR_PORT)
}

fn adapter(spec: &InjectSpec, image: &str, mode: Mode) -> Container {
    let mut c = shared::adapter(image, spec.engine, spec.port);
    c.name = ADAPTER.into();
    finish(c, spec, mode, shared::ADAPTER_PORT)
}

fn finish(mut c: Container, spec: &InjectSpec, mode: Mode, listen: i32) -> Container {
    c.volume_mounts
        .get_or_insert_with(Vec::new)
        .push(no_api_token_mount());
    if let Some(sc) = c.security_context.as_mut() {
        sc.run_as_user = Some(tessera_api::images::TESSERA_UID);
        sc.run_as_group = Some(tessera_api::images::TESSERA_UID);
    }
    if let Some(secret) = &spec.password {
        c.env = Some(vec![EnvVar {
            name: "TESSERA_REDIS_PASSWORD".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.name.clone(),
                    key: secret.key.clone(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
    }
    if mode == Mode::Native {
        c.restart_policy = Some("Always".into());
        // The app containers start once this passes: it checks only that
        // the helper listens, never the engine, which starts after it.
        c.startup_probe = Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(listen),
                ..Default::default()
            }),
            period_seconds: Some(1),
            failure_threshold: Some(30),
            ..Default::default()
        });
    }
    c
}

/// The [`NO_API_TOKEN`] volume over the token's path, read-only.
fn no_api_token_mount() -> VolumeMount {
    VolumeMount {
        name: NO_API_TOKEN.into(),
        mount_path: API_TOKEN_PATH.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

/// Whether `c` is one of ours: by name, or by the binary it runs (the
/// operator's own pods call them `sidecar` and `adapter`).
fn is(c: &Container, name: &str) -> bool {
    c.name == name
        || c.command
            .as_ref()
            .and_then(|cmd| cmd.first())
            .is_some_and(|bin| bin.rsplit('/').next() == Some(name))
}

/// Decides what to add to `pod`. Idempotent: a pod carrying
/// `tessera.dev/injected`, or already running the containers (in
/// `containers` or `initContainers`), gets nothing again, so a second call
/// (reinvocation, a re-applied pod) changes nothing.
pub fn plan(pod: &Pod, spec: &InjectSpec, image: &str, mode: Mode) -> Result<Decision, SpecError> {
    let annotations = pod.metadata.annotations.as_ref();
    if annotations.is_some_and(|a| a.contains_key(INJECTED)) {
        return Ok(Decision::Skip("already injected"));
    }
    let empty = Vec::new();
    let (regular, init) = match &pod.spec {
        Some(s) => (&s.containers, s.init_containers.as_ref().unwrap_or(&empty)),
        None => (&empty, &empty),
    };
    let existing: Vec<&Container> = regular.iter().chain(init.iter()).collect();
    let wanted: Vec<Container> = containers(spec, image, mode)
        .into_iter()
        .filter(|c| !existing.iter().any(|e| is(e, &c.name)))
        .collect();

    for c in &wanted {
        let listen = c.ports.iter().flatten().map(|p| p.container_port);
        for port in listen {
            if let Some(other) = existing
                .iter()
                .find(|e| e.ports.iter().flatten().any(|p| p.container_port == port))
            {
                return Err(SpecError::PortTaken {
                    port,
                    container: other.name.clone(),
                    injected: if c.name == SIDECAR { SIDECAR } else { ADAPTER },
                });
            }
        }
    }

    let injected: Vec<&'static str> = wanted
        .iter()
        .map(|c| if c.name == SIDECAR { SIDECAR } else { ADAPTER })
        .collect();
    let mut ops = Vec::new();
    if !wanted.is_empty() {
        let (list, present) = match mode {
            Mode::Native => (
                "/spec/initContainers",
                pod.spec
                    .as_ref()
                    .is_some_and(|s| s.init_containers.is_some()),
            ),
            Mode::Regular => ("/spec/containers", pod.spec.is_some()),
        };
        if present {
            for c in &wanted {
                ops.push(json!({"op": "add", "path": format!("{list}/-"), "value": c}));
            }
        } else {
            ops.push(json!({"op": "add", "path": list, "value": wanted}));
        }
        let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
        if !volumes.is_some_and(|v| v.iter().any(|v| v.name == NO_API_TOKEN)) {
            let volume = Volume {
                name: NO_API_TOKEN.into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            };
            if volumes.is_some() {
                ops.push(json!({"op": "add", "path": "/spec/volumes/-", "value": volume}));
            } else {
                ops.push(json!({"op": "add", "path": "/spec/volumes", "value": [volume]}));
            }
        }
    }
    // Recorded even when nothing was added (the pod already had the
    // containers), so that the reporter knows this pod is fine.
    let record = if injected.is_empty() {
        "already-present".to_string()
    } else {
        injected.join(",")
    };
    let by = format!("tessera-operator {}", env!("CARGO_PKG_VERSION"));
    if annotations.is_some() {
        ops.push(json!({"op": "add", "path": pointer(&["metadata", "annotations", INJECTED]), "value": record}));
        ops.push(json!({"op": "add", "path": pointer(&["metadata", "annotations", INJECTED_BY]), "value": by}));
    } else {
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {INJECTED: record, INJECTED_BY: by}}));
    }
    Ok(Decision::Patch { ops, injected })
}

/// An RFC 6901 pointer: `~` becomes `~0` and `/` becomes `~1`.
pub fn pointer(tokens: &[&str]) -> String {
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::webhook::spec::{INJECT, SecretKey, parse};

    const IMAGE: &str = "tessera:test";

    fn redis_pod(extra: serde_json::Value) -> Pod {
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"generateName": "redis-", "annotations": {INJECT: "redis"}},
            "spec": {"containers": [{"name": "redis", "image": "redis:7", "ports": [{"containerPort": 6379}]}]}
        });
        merge(&mut pod, extra);
        serde_json::from_value(pod).unwrap()
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn spec(pod: &Pod) -> InjectSpec {
        parse(pod.metadata.annotations.as_ref().unwrap())
            .unwrap()
            .unwrap()
    }

    /// Applies the decision's patch to the pod's JSON.
    fn apply(pod: &Pod, d: &Decision) -> Pod {
        let mut v = serde_json::to_value(pod).unwrap();
        if let Decision::Patch { ops, .. } = d {
            let patch: json_patch::Patch =
                serde_json::from_value(Value::Array(ops.clone())).unwrap();
            json_patch::patch(&mut v, &patch).unwrap();
        }
        serde_json::from_value(v).unwrap()
    }

    fn names(cs: &Option<Vec<Container>>) -> Vec<String> {
        cs.iter().flatten().map(|c| c.name.clone()).collect()
    }

    #[test]
    fn native_mode_adds_init_containers_that_restart_and_have_a_startup_probe() {
        let pod = redis_pod(json!({}));
        let d = plan(&pod, &spec(&pod), IMAGE, Mode::Native).unwrap();
        let out = apply(&pod, &d);
        let s = out.spec.as_ref().unwrap();
        assert_eq!(names(&s.init_containers), [SIDECAR, ADAPTER]);
        assert_eq!(names(&Some(s.containers.clone())), ["redis"]);
        for c in s.init_containers.iter().flatten() {
            assert_eq!(c.restart_policy.as_deref(), Some("Always"));
            assert!(c.startup_probe.as_ref().unwrap().tcp_socket.is_some());
            assert_eq!(c.image.as_deref(), Some(IMAGE));
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.run_as_user, Some(65532));
            assert_eq!(sc.read_only_root_filesystem, Some(true));
        }
        let a = out.metadata.annotations.unwrap();
        assert_eq!(a[INJECTED], "tessera-sidecar,tessera-adapter");
        assert!(a[INJECTED_BY].starts_with("tessera-operator "));
    }

    #[test]
    fn regular_mode_appends_to_containers() {
        let pod = redis_pod(json!({}));
        let d = plan(&pod, &spec(&pod), IMAGE, Mode::Regular).unwrap();
        let out = apply(&pod, &d);
        let s = out.spec.unwrap();
        assert_eq!(
            names(&Some(s.containers.clone())),
            ["redis", SIDECAR, ADAPTER]
        );
        assert!(s.init_containers.is_none());
        assert!(
            s.containers
                .iter()
                .all(|c| c.restart_policy.is_none() && c.startup_probe.is_none())
        );
    }

    #[test]
    fn the_containers_are_the_operators_own_but_for_readiness_and_user() {
        let pod = redis_pod(json!({}));
        let out = containers(&spec(&pod), IMAGE, Mode::Regular);
        let mut own = shared::sidecar(IMAGE, "redis", 6379, &[]);
        own.name = SIDECAR.into();
        own.readiness_probe = Some(shared::engine_readiness());
        let mut sc = own.security_context.take().unwrap();
        sc.run_as_user = Some(65532);
        sc.run_as_group = Some(65532);
        own.security_context = Some(sc);
        own.volume_mounts
            .get_or_insert_with(Vec::new)
            .push(no_api_token_mount());
        assert_eq!(out[0], own);
        assert_eq!(
            out[0]
                .readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/readyz")
        );
        let mut own = shared::adapter(IMAGE, "redis", 6379);
        own.name = ADAPTER.into();
        assert_eq!(out[1].command, own.command);
        assert_eq!(out[1].args, own.args);
        assert_eq!(out[1].ports, own.ports);
        assert_eq!(out[1].resources, own.resources);
    }

    #[test]
    fn init_containers_of_the_pod_are_kept_and_ours_appended() {
        let pod =
            redis_pod(json!({"spec": {"initContainers": [{"name": "chown", "image": "busybox"}]}}));
        let d = plan(&pod, &spec(&pod), IMAGE, Mode::Native).unwrap();
        let Decision::Patch { ops, .. } = &d else {
            panic!()
        };
        assert_eq!(ops[0]["path"], "/spec/initContainers/-");
        let out = apply(&pod, &d);
        assert_eq!(
            names(&out.spec.unwrap().init_containers),
            ["chown", SIDECAR, ADAPTER]
        );
    }

    #[test]
    fn the_annotation_key_is_escaped_in_the_pointer() {
        let pod = redis_pod(json!({}));
        let Decision::Patch { ops, .. } = plan(&pod, &spec(&pod), IMAGE, Mode::Native).unwrap()
        else {
            panic!()
        };
        assert!(
            ops.iter()
                .any(|o| o["path"] == "/metadata/annotations/tessera.dev~1injected")
        );
        assert_eq!(pointer(&["a~b", "c/d"]), "/a~0b/c~1d");
    }

    #[test]
    fn a_second_call_changes_nothing() {
        for mode in [Mode::Native, Mode::Regular] {
            let pod = redis_pod(json!({}));
            let once = apply(&pod, &plan(&pod, &spec(&pod), IMAGE, mode).unwrap());
            assert_eq!(
                plan(&once, &spec(&once), IMAGE, mode).unwrap(),
                Decision::Skip("already injected")
            );
            // Even without our annotation (another webhook dropped it), the
            // containers are not added twice: in either list.
            let mut stripped = once.clone();
            stripped
                .metadata
                .annotations
                .as_mut()
                .unwrap()
                .remove(INJECTED);
            for other in [Mode::Native, Mode::Regular] {
                let twice = apply(
                    &stripped,
                    &plan(&stripped, &spec(&stripped), IMAGE, other).unwrap(),
                );
                let s = twice.spec.as_ref().unwrap();
                let all: Vec<String> = names(&Some(s.containers.clone()))
                    .into_iter()
                    .chain(names(&s.init_containers))
                    .collect();
                assert_eq!(all.iter().filter(|n| *n == SIDECAR).count(), 1, "{all:?}");
                assert_eq!(all.iter().filter(|n| *n == ADAPTER).count(), 1, "{all:?}");
                assert_eq!(
                    twice.metadata.annotations.as_ref().unwrap()[INJECTED],
                    "already-present"
                );
            }
        }
    }

    #[test]
    fn only_the_missing_container_is_added() {
        let pod = redis_pod(json!({"spec": {"containers": [
            {"name": "redis", "image": "redis:7"},
            {"name": "sidecar", "image": "x", "command": ["/usr/local/bin/tessera-sidecar"]}
        ]}}));
        let d = plan(&pod, &spec(&pod), IMAGE, Mode::Regular).unwrap();
        let Decision::Patch { injected, .. } = &d else {
            panic!()
        };
        assert_eq!(injected, &[ADAPTER]);
        let out = apply(&pod, &d);
        assert_eq!(
            names(&Some(out.spec.unwrap().containers)),
            ["redis", "sidecar", ADAPTER]
        );
    }

    #[test]
    fn adapter_off_injects_the_sidecar_alone() {
        let pod = redis_pod(
            json!({"metadata": {"annotations": {"tessera.dev/inject-adapter": "false"}}}),
        );
        let out = apply(&pod, &plan(&pod, &spec(&pod), IMAGE, Mode::Native).unwrap());
        assert_eq!(names(&out.spec.unwrap().init_containers), [SIDECAR]);
    }

    #[test]
    fn a_password_secret_becomes_an_env_var_from_the_secret() {
        let pod = redis_pod(
            json!({"metadata": {"annotations": {"tessera.dev/inject-password-secret": "auth:pw"}}}),
        );
        let s = spec(&pod);
        assert_eq!(
            s.password,
            Some(SecretKey {
                name: "auth".into(),
                key: "pw".into()
            })
        );
        for c in containers(&s, IMAGE, Mode::Native) {
            let env = c.env.unwrap();
            assert_eq!(env[0].name, "TESSERA_REDIS_PASSWORD");
            let r = env[0]
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap();
            assert_eq!(
                (r.name.as_str(), r.key.as_str(), r.optional),
                ("auth", "pw", Some(false))
            );
            assert!(env[0].value.is_none());
        }
    }

    #[test]
    fn the_engine_port_reaches_both_helpers() {
        let pod =
            redis_pod(json!({"metadata": {"annotations": {"tessera.dev/inject-port": "7000"}}}));
        for c in containers(&spec(&pod), IMAGE, Mode::Native) {
            assert!(c.args.unwrap().contains(&"127.0.0.1:7000".to_string()));
        }
    }

    #[test]
    fn a_taken_port_is_refused_naming_the_container() {
        let pod = redis_pod(json!({"spec": {"containers": [
            {"name": "redis", "image": "redis:7"},
            {"name": "exporter", "image": "x", "ports": [{"containerPort": 9121}]}
        ]}}));
        let e = plan(&pod, &spec(&pod), IMAGE, Mode::Native).unwrap_err();
        assert_eq!(
            e.to_string(),
            "port 9121 of tessera-adapter is already declared by container \"exporter\"; set tessera.dev/inject-adapter: \"false\" to inject the sidecar alone"
        );
        let pod = redis_pod(json!({"spec": {"initContainers": [
            {"name": "probe", "image": "x", "ports": [{"containerPort": 8095}]}
        ]}}));
        let e = plan(&pod, &spec(&pod), IMAGE, Mode::Regular).unwrap_err();
        assert_eq!(
            e.to_string(),
            "port 8095 of tessera-sidecar is already declared by container \"probe\""
        );
    }

    #[test]
    fn a_pod_without_annotations_map_gets_one() {
        let mut pod = redis_pod(json!({}));
        let s = spec(&pod);
        pod.metadata.annotations = None;
        let out = apply(&pod, &plan(&pod, &s, IMAGE, Mode::Regular).unwrap());
        let a: BTreeMap<String, String> = out.metadata.annotations.unwrap();
        assert_eq!(a[INJECTED], "tessera-sidecar,tessera-adapter");
    }

    /// What the API server's ServiceAccount plugin checks before adding the
    /// token's mount to a container: any mount at the token's path.
    fn has_token_path(c: &Container) -> bool {
        c.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == API_TOKEN_PATH)
    }

    #[test]
    fn the_helpers_get_no_api_token_and_the_pod_one_empty_volume() {
        for mode in [Mode::Native, Mode::Regular] {
            // A pod as the plugin leaves it before the webhook: the token's
            // volume and the app container's mount.
            let pod = redis_pod(json!({"spec": {
                "volumes": [{"name": "kube-api-access-x1", "projected": {"sources": []}}],
                "containers": [{"name": "redis", "image": "redis:7", "volumeMounts": [
                    {"name": "kube-api-access-x1", "mountPath": API_TOKEN_PATH, "readOnly": true}
                ]}]
            }}));
            let out = apply(&pod, &plan(&pod, &spec(&pod), IMAGE, mode).unwrap());
            let s = out.spec.as_ref().unwrap();
            let ours: Vec<&Container> = s
                .containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .filter(|c| c.name == SIDECAR || c.name == ADAPTER)
                .collect();
            assert_eq!(ours.len(), 2);
            for c in ours {
                assert!(has_token_path(c), "{mode:?} {}", c.name);
                let m = c.volume_mounts.as_ref().unwrap();
                assert!(m.iter().all(|m| m.name == NO_API_TOKEN), "{m:?}");
            }
            let v: Vec<&str> = s
                .volumes
                .iter()
                .flatten()
                .map(|v| v.name.as_str())
                .collect();
            assert_eq!(v, ["kube-api-access-x1", NO_API_TOKEN]);
            let empty = s.volumes.as_ref().unwrap()[1].empty_dir.as_ref();
            assert_eq!(empty, Some(&EmptyDirVolumeSource::default()));
        }
        // A pod without volumes gets the list; one that has ours keeps one.
        let pod = redis_pod(json!({}));
        let out = apply(&pod, &plan(&pod, &spec(&pod), IMAGE, Mode::Native).unwrap());
        let names: Vec<String> = out
            .spec
            .unwrap()
            .volumes
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, [NO_API_TOKEN]);
        let pod = redis_pod(json!({"spec": {"volumes": [{"name": NO_API_TOKEN, "emptyDir": {}}]}}));
        let out = apply(&pod, &plan(&pod, &spec(&pod), IMAGE, Mode::Native).unwrap());
        assert_eq!(out.spec.unwrap().volumes.unwrap().len(), 1);
    }
}
