//! memcached: the engine container. memcached has no configuration file:
//! `spec.config` becomes long options (`memory-limit: "256"` is
//! `--memory-limit=256`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Container;

use crate::kinds::shared::{container_security, engine_liveness, engine_readiness, port};

pub const PORT: i32 = 11211;
pub const UID: i64 = tessera_api::images::MEMCACHED.uid;

/// memcached's arguments: the user's options, then the ones the operator
/// owns (validation refuses owned keys in `config`).
pub fn args(user: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = user.iter().map(|(k, v)| format!("--{k}={v}")).collect();
    out.extend([
        format!("--port={PORT}"),
        "--listen=0.0.0.0".into(),
        // No UDP: it amplifies and nothing here uses it.
        "--udp-port=0".into(),
    ]);
    out
}

pub fn container(image: &str, user: &BTreeMap<String, String>) -> Container {
    let mut command = vec!["memcached".to_string()];
    command.extend(args(user));
    Container {
        name: "memcached".into(),
        image: Some(image.into()),
        command: Some(command),
        ports: Some(vec![port("memcached", PORT)]),
        readiness_probe: Some(engine_readiness()),
        liveness_probe: Some(engine_liveness()),
        security_context: Some(container_security(true)),
        ..Default::default()
    }
}
