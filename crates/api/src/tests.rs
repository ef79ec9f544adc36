use std::path::{Path, PathBuf};

use kube::core::cel::{Validator, compile_schema, estimate_rule_cost};
use serde_json::{Value, json};

use super::*;
use crate::validate::{Invalid, SpecCheck, schema_of};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn load(path: &Path) -> (String, Value) {
    let text = std::fs::read_to_string(path).unwrap();
    let doc: Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (text, doc)
}

/// The value of a `# key: value` header line in an example.
fn header<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
}

fn crd_schemas() -> Vec<(&'static str, Value)> {
    crds()
        .into_iter()
        .map(|(file, crd)| {
            let schema = serde_json::to_value(
                &crd.spec.versions[0]
                    .schema
                    .as_ref()
                    .unwrap()
                    .open_api_v3_schema,
            )
            .unwrap();
            (file, schema)
        })
        .collect()
}

#[test]
fn every_example_is_valid() {
    let files = yaml_files(&repo().join("examples"));
    assert!(
        files.len() >= 5,
        "expected an example per kind and engine, found {files:?}"
    );
    for path in files {
        let (_, doc) = load(&path);
        if let Err(errors) = validate(&doc) {
            panic!("{} is invalid: {errors:?}", path.display());
        }
    }
}

#[test]
fn there_is_an_example_per_kind_and_engine() {
    let mut seen = std::collections::BTreeSet::new();
    for path in yaml_files(&repo().join("examples")) {
        let (_, doc) = load(&path);
        seen.insert(format!(
            "{}/{}",
            doc["kind"].as_str().unwrap(),
            doc["spec"]["engine"].as_str().unwrap()
        ));
    }
    let expected = [
        "Broker/kafka",
        "Ensemble/etcd",
        "Ensemble/zookeeper",
        "ShardedStore/memcached",
        "ShardedStore/redis",
    ];
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), expected);
}

#[test]
fn every_invalid_example_is_rejected_with_the_rule_it_names() {
    let files = yaml_files(&repo().join("examples/invalid"));
    assert!(files.len() >= 10, "too few invalid examples: {files:?}");
    for path in files {
        let (text, doc) = load(&path);
        let breaks = header(&text, "breaks")
            .unwrap_or_else(|| panic!("{} lacks a '# breaks:' line", path.display()));
        let by = header(&text, "rejected-by")
            .unwrap_or_else(|| panic!("{} lacks '# rejected-by:'", path.display()));
        assert!(
            matches!(by, "api-server" | "operator"),
            "{}: rejected-by {by:?}",
            path.display()
        );
        let errors = match validate(&doc) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(errors) => errors,
        };
        let text = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        assert!(
            text.contains(breaks),
            "{}: expected an error containing {breaks:?}, got {text:?}",
            path.display()
        );
        let operator_only = errors
            .iter()
            .all(|e| matches!(e, Invalid::OwnedConfigKey { .. }));
        assert_eq!(
            operator_only,
            by == "operator",
            "{}: rejected-by says {by} but the errors were {errors:?}",
            path.display()
        );
    }
}

#[test]
fn crds_in_the_repository_match_the_code() {
    for (file, crd) in crds() {
        let path = repo().join("crds").join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == crd_yaml(&crd).unwrap(),
            "crds/{file} is out of date with the Rust types: run `make crds` and commit the result"
        );
    }
}

/// Walks every schema node with its JSON path.
fn walk<'a>(schema: &'a Value, path: String, visit: &mut dyn FnMut(&str, &'a Value)) {
    visit(&path, schema);
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            walk(sub, format!("{path}.{name}"), visit);
        }
    }
    if let Some(items) = schema.get("items") {
        walk(items, format!("{path}[*]"), visit);
    }
    if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        walk(extra, format!("{path}{{*}}"), visit);
    }
}

#[test]
fn crd_schemas_are_structural() {
    for (file, schema) in crd_schemas() {
        walk(&schema, String::new(), &mut |path, node| {
            let int_or_string = node.get("x-kubernetes-int-or-string") == Some(&json!(true));
            assert!(
                node.get("type").is_some() || int_or_string,
                "{file}: {path} has no type, which makes the schema non-structural"
            );
            for key in ["anyOf", "oneOf", "allOf", "not", "$ref"] {
                assert!(node.get(key).is_none(), "{file}: {path} uses {key}");
            }
            assert!(
                node.get("x-kubernetes-preserve-unknown-fields").is_none(),
                "{file}: {path} preserves unknown fields, which no Tessera field intends"
            );
        });
    }
}

#[test]
fn every_field_has_a_description_for_kubectl_explain() {
    for (file, schema) in crd_schemas() {
        walk(&schema, String::new(), &mut |path, node| {
            if path.is_empty() || path.ends_with("[*]") || path.ends_with("{*}") {
                return;
            }
            let description = node
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default();
            assert!(
                !description.trim().is_empty(),
                "{file}: {path} has no description"
            );
            assert!(
                !description.contains("Auto-generated"),
                "{file}: {path} has a placeholder description"
            );
        });
    }
}

#[test]
fn cel_rules_compile_and_fit_the_cost_budget() {
    for (file, schema) in crd_schemas() {
        let compiled = compile_schema(&schema);
        assert!(
            !compiled.has_errors(),
            "{file}: CEL rules do not compile: {:?}",
            compiled.compilation_errors()
        );
        walk(&schema, String::new(), &mut |path, node| {
            for rule in node
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let rule_text = rule["rule"].as_str().unwrap();
                assert!(
                    rule["message"].is_string(),
                    "{file}: {path}: rule {rule_text:?} has no message"
                );
                let node_schema = compile_schema(node);
                let warnings = estimate_rule_cost(rule_text, &node_schema);
                assert!(
                    warnings.is_empty(),
                    "{file}: {path}: {rule_text:?}: {warnings:?}"
                );
            }
        });
    }
}

#[test]
fn printer_columns_short_names_and_categories() {
    for (file, crd) in crds() {
        let names = &crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&["tessera".to_string()][..]),
            "{file}"
        );
        assert_eq!(names.short_names.as_ref().map(Vec::len), Some(1), "{file}");
        let columns: Vec<String> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        for expected in ["Engine", "Ready", "Age"] {
            assert!(
                columns.iter().any(|c| c.starts_with(expected)),
                "{file}: no {expected} column in {columns:?}"
            );
        }
    }
}

#[test]
fn ensemble_and_broker_have_the_scale_subresource() {
    for (file, crd) in crds() {
        let scale = crd.spec.versions[0]
            .subresources
            .as_ref()
            .and_then(|s| s.scale.as_ref());
        match file {
            "ensemble.yaml" | "broker.yaml" => {
                let scale = scale.unwrap_or_else(|| panic!("{file} has no scale subresource"));
                assert_eq!(scale.spec_replicas_path, ".spec.replicas");
                assert_eq!(
                    scale.label_selector_path.as_deref(),
                    Some(".status.selector")
                );
            }
            // Shards are not replicas: changing them moves keys.
            _ => assert!(scale.is_none(), "{file} should not scale"),
        }
    }
}

fn ensemble(spec: Value) -> Value {
    json!({"apiVersion": "tessera.dev/v1alpha1", "kind": "Ensemble", "metadata": {"name": "x"}, "spec": spec})
}

#[test]
fn defaults_fill_a_minimal_spec() {
    let Ok(Manifest::Ensemble(e)) = validate(&ensemble(json!({"engine": "etcd"}))) else {
        panic!("a minimal ensemble is valid");
    };
    assert_eq!(e.spec.replicas, 3);
    assert_eq!(e.spec.common.storage.size.0, "1Gi");
    assert!(!e.spec.common.storage.delete_claims_on_delete);
    assert!(e.spec.common.monitoring.enabled);
    assert!(!e.spec.common.paused);
}

#[test]
fn engine_and_storage_class_are_immutable() {
    let schema = schema_of::<Ensemble>();
    let old = ensemble(
        json!({"engine": "zookeeper", "replicas": 3, "storage": {"size": "1Gi", "storageClassName": "fast"}}),
    );
    let update = |spec: Value| Validator::new().validate(&schema, &ensemble(spec), Some(&old));

    assert!(update(json!({"engine": "zookeeper", "replicas": 5, "storage": {"size": "1Gi", "storageClassName": "fast"}})).is_ok());
    let changed_engine = update(
        json!({"engine": "etcd", "replicas": 3, "storage": {"size": "1Gi", "storageClassName": "fast"}}),
    );
    assert!(format!("{changed_engine:?}").contains("engine is immutable"));
    let changed_class = update(
        json!({"engine": "zookeeper", "replicas": 3, "storage": {"size": "1Gi", "storageClassName": "slow"}}),
    );
    assert!(format!("{changed_class:?}").contains("storageClassName is immutable"));
    let dropped_class =
        update(json!({"engine": "zookeeper", "replicas": 3, "storage": {"size": "1Gi"}}));
    assert!(format!("{dropped_class:?}").contains("storageClassName is immutable"));
}

#[test]
fn owned_config_keys_are_refused_by_name() {
    let spec = |config: Value| -> EnsembleSpec {
        serde_json::from_value(json!({"engine": "zookeeper", "config": config})).unwrap()
    };
    assert_eq!(spec(json!({"tickTime": "2000"})).check(), Ok(()));
    // server.N is a family of keys: every member belongs to the operator.
    assert_eq!(
        spec(json!({"server.12": "x:1:2"})).check(),
        Err(Invalid::OwnedConfigKey {
            key: "server.12".into(),
            engine: "zookeeper"
        })
    );
    // A key merely starting like an owned one is the user's.
    assert_eq!(spec(json!({"dataDirSuffix": "x"})).check(), Ok(()));
    let err = spec(json!({"dataDir": "/x"})).check().unwrap_err();
    assert!(err.to_string().contains("\"dataDir\""), "{err}");
}

#[test]
fn schema_errors_name_the_field() {
    let errors = validate(&ensemble(
        json!({"engine": "zookeeper", "replicas": "three"}),
    ))
    .unwrap_err();
    assert_eq!(
        errors,
        vec![Invalid::Schema {
            path: "spec.replicas".into(),
            message: "must be of type integer".into()
        }]
    );
    let errors = validate(&json!({"apiVersion": "v1", "kind": "Pod"})).unwrap_err();
    assert!(
        matches!(&errors[..], [Invalid::NotTessera(_)]),
        "{errors:?}"
    );
}

#[test]
fn descriptions_are_reflowed_for_kubectl_explain() {
    let (_, schema) = crd_schemas()
        .into_iter()
        .find(|(f, _)| *f == "ensemble.yaml")
        .unwrap();
    let description = schema["properties"]["spec"]["properties"]["replicas"]["description"]
        .as_str()
        .unwrap();
    assert!(!description.contains('\n'), "{description:?}");
    assert!(
        description.starts_with("Number of members"),
        "{description:?}"
    );
}
