//! Validation of Tessera manifests.
//!
//! [`validate`] applies, in the API server's order, schema defaults, the
//! OpenAPI constraints and the CEL rules of the generated CRD, then the rules
//! that only the operator checks ([`SpecCheck`]). Because the schema and the
//! CEL rules come from the generated CRD, this agrees with the API server by
//! construction.

use std::collections::BTreeMap;

use kube::CustomResourceExt;
use kube::core::cel::{Validator, apply_defaults};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::schema_check;
use crate::{
    Broker, BrokerSpec, Ensemble, EnsembleSpec, GROUP, ShardedStore, ShardedStoreSpec, VERSION,
};

/// Why a manifest or spec is invalid. Each message names the field or key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// A schema constraint: a type, bound, pattern, enum or required field.
    #[error("{path}: {message}")]
    Schema { path: String, message: String },
    /// A CEL rule (`x-kubernetes-validations`) that spans fields.
    #[error("{path}: {message}")]
    Rule { path: String, message: String },
    /// A `config` key that the operator generates itself.
    #[error("spec.config: key {key:?} is managed by the operator for {engine} and cannot be set")]
    OwnedConfigKey { key: String, engine: &'static str },
    /// Not a Tessera resource.
    #[error("{0}")]
    NotTessera(String),
    /// Valid by the schema but not by the Rust types; a bug in our schema.
    #[error("cannot decode: {0}")]
    Decode(String),
}

impl Invalid {
    /// A short, stable label for metrics and event reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Invalid::Schema { .. } => "SchemaViolation",
            Invalid::Rule { .. } => "RuleViolation",
            Invalid::OwnedConfigKey { .. } => "OwnedConfigKey",
            Invalid::NotTessera(_) => "NotTessera",
            Invalid::Decode(_) => "DecodeError",
        }
    }
}

/// A validated Tessera resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    Ensemble(Box<Ensemble>),
    ShardedStore(Box<ShardedStore>),
    Broker(Box<Broker>),
}

/// Rules on a spec that the CRD schema cannot express. The operator runs
/// them in its `validate` step; a failure makes the resource `Degraded`.
pub trait SpecCheck {
    fn check(&self) -> Result<(), Invalid>;
}

impl SpecCheck for EnsembleSpec {
    fn check(&self) -> Result<(), Invalid> {
        check_config(
            self.engine.as_str(),
            self.engine.owned_config_keys(),
            &self.common.config,
        )
    }
}

impl SpecCheck for ShardedStoreSpec {
    fn check(&self) -> Result<(), Invalid> {
        check_config(
            self.engine.as_str(),
            self.engine.owned_config_keys(),
            &self.common.config,
        )
    }
}

impl SpecCheck for BrokerSpec {
    fn check(&self) -> Result<(), Invalid> {
        check_config(
            self.engine.as_str(),
            self.engine.owned_config_keys(),
            &self.common.config,
        )
    }
}

/// Refuses config keys the operator owns. An owned key ending in `.` owns
/// every key with that prefix (ZooKeeper's `server.N`).
fn check_config(
    engine: &'static str,
    owned: &[&str],
    config: &BTreeMap<String, String>,
) -> Result<(), Invalid> {
    let is_owned = |key: &str| {
        owned.iter().any(|o| {
            if o.ends_with('.') {
                key.starts_with(o)
            } else {
                key == *o
            }
        })
    };
    match config.keys().find(|k| is_owned(k)) {
        Some(key) => Err(Invalid::OwnedConfigKey {
            key: key.clone(),
            engine,
        }),
        None => Ok(()),
    }
}

/// Validates one manifest (a parsed YAML or JSON document) the way the API
/// server and then the operator would, and returns the typed resource.
pub fn validate(doc: &Value) -> Result<Manifest, Vec<Invalid>> {
    let api_version = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let expected = format!("{GROUP}/{VERSION}");
    if api_version != expected {
        return Err(vec![Invalid::NotTessera(format!(
            "apiVersion is {api_version:?}, expected {expected:?}"
        ))]);
    }
    match doc.get("kind").and_then(Value::as_str).unwrap_or_default() {
        "Ensemble" => {
            let e: Ensemble = typed(doc)?;
            e.spec.check().map_err(|e| vec![e])?;
            Ok(Manifest::Ensemble(Box::new(e)))
        }
        "ShardedStore" => {
            let s: ShardedStore = typed(doc)?;
            s.spec.check().map_err(|e| vec![e])?;
            Ok(Manifest::ShardedStore(Box::new(s)))
        }
        "Broker" => {
            let b: Broker = typed(doc)?;
            b.spec.check().map_err(|e| vec![e])?;
            Ok(Manifest::Broker(Box::new(b)))
        }
        other => Err(vec![Invalid::NotTessera(format!(
            "kind {other:?} is not one of Ensemble, ShardedStore, Broker"
        ))]),
    }
}

/// Defaults, schema checks and CEL rules, then decoding into `K`.
fn typed<K: CustomResourceExt + DeserializeOwned>(doc: &Value) -> Result<K, Vec<Invalid>> {
    let schema = schema_of::<K>();
    let defaulted = apply_defaults(&schema, doc);
    let mut violations = Vec::new();
    schema_check::check(&schema, &defaulted, "", &mut violations);
    if !violations.is_empty() {
        return Err(violations
            .into_iter()
            .map(|v| Invalid::Schema {
                path: v.path,
                message: v.message,
            })
            .collect());
    }
    if let Err(errors) = Validator::new().validate(&schema, &defaulted, None) {
        return Err(errors
            .iter()
            .map(|e| Invalid::Rule {
                path: e.field_path.clone(),
                message: e.message.clone(),
            })
            .collect());
    }
    serde_json::from_value(defaulted).map_err(|e| vec![Invalid::Decode(e.to_string())])
}

/// The openAPIV3Schema of a generated CRD, as JSON.
pub(crate) fn schema_of<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref());
    serde_json::to_value(schema).unwrap_or(Value::Null)
}
