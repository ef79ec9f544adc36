//! Checks a value against the OpenAPI v3 constraints of a structural CRD
//! schema, the way the API server does before it runs CEL rules: types,
//! required fields, unknown fields, enums, bounds and patterns.

use serde_json::Value;

/// One violated constraint, with the JSON path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

pub fn check(schema: &Value, value: &Value, path: &str, out: &mut Vec<Violation>) {
    let mut fail = |message: String| {
        out.push(Violation {
            path: path.to_string(),
            message,
        })
    };
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            fail("must not be null".into());
        }
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            fail("must be an integer or a string".into());
        }
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str);
    let type_ok = match ty {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        fail(format!("must be of type {}", ty.unwrap_or("unknown")));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().map(Value::to_string).collect();
        fail(format!(
            "Unsupported value: {value}: supported values: {}",
            names.join(", ")
        ));
    }
    check_bounds(schema, value, &mut fail);
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(name) {
                    out.push(Violation {
                        path: join(path, name),
                        message: "Required value".into(),
                    });
                }
            }
            let additional = schema.get("additionalProperties");
            let preserve =
                schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            for (key, child) in map {
                // Generated CRD schemas leave the object's own envelope implicit.
                if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child_path = join(path, key);
                if let Some(sub) = properties.and_then(|p| p.get(key)) {
                    check(sub, child, &child_path, out);
                } else if let Some(sub) = additional.filter(|a| a.is_object()) {
                    check(sub, child, &child_path, out);
                } else if !preserve && properties.is_some() {
                    out.push(Violation {
                        path: child_path,
                        message: "unknown field".into(),
                    });
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(sub, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn check_bounds(schema: &Value, value: &Value, fail: &mut impl FnMut(String)) {
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    if let Some(n) = value.as_f64() {
        if let Some(min) = bound("minimum")
            && n < min
        {
            fail(format!("should be greater than or equal to {min}"));
        }
        if let Some(max) = bound("maximum")
            && n > max
        {
            fail(format!("should be less than or equal to {max}"));
        }
    }
    // The API server's wording, so that one message reads the same from
    // `kubectl apply` and from our own validation.
    let len = match value {
        Value::String(s) => Some((
            s.chars().count(),
            "Length",
            "should be at least {} chars long",
            "should be at most {} chars long",
        )),
        Value::Array(a) => Some((
            a.len(),
            "Items",
            "must have at least {} items",
            "must have at most {} items",
        )),
        Value::Object(o) => Some((
            o.len(),
            "Properties",
            "must have at least {} properties",
            "must have at most {} properties",
        )),
        _ => None,
    };
    if let Some((len, suffix, at_least, at_most)) = len {
        if let Some(min) = bound(&format!("min{suffix}"))
            && (len as f64) < min
        {
            fail(at_least.replace("{}", &min.to_string()));
        }
        if let Some(max) = bound(&format!("max{suffix}"))
            && (len as f64) > max
        {
            fail(at_most.replace("{}", &max.to_string()));
        }
    }
    if let (Some(pattern), Some(s)) = (
        schema.get("pattern").and_then(Value::as_str),
        value.as_str(),
    ) {
        match regex::Regex::new(pattern) {
            Ok(re) if !re.is_match(s) => fail(format!("should match '{pattern}'")),
            Ok(_) => {}
            Err(e) => fail(format!("schema pattern {pattern:?} does not compile: {e}")),
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}
