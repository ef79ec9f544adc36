//! Does a live object already carry everything we would apply?
//!
//! Server-side apply of an unchanged object is still a write (and an etcd
//! round trip), so `apply` skips a child when its live copy was applied from
//! the same desired object (same hash annotation) and nobody changed any of
//! our fields since (the desired JSON is a subset of the live JSON).

use serde_json::Value;

/// True when every field set in `desired` has the same value in `live`.
/// Fields only in `live` (server defaults, other managers) are ignored.
/// List elements match in any order, since servers and other managers may
/// add elements.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d
            .iter()
            .all(|(k, dv)| l.get(k).is_some_and(|lv| is_subset(dv, lv))),
        (Value::Array(d), Value::Array(l)) => {
            d.len() <= l.len() && d.iter().all(|dv| l.iter().any(|lv| is_subset(dv, lv)))
        }
        (Value::String(d), Value::String(l)) => d == l || same_quantity(d, l),
        (d, l) => d == l,
    }
}

/// The API server stores quantities in canonical form ("0.5" becomes
/// "500m"); both spell the same amount.
fn same_quantity(a: &str, b: &str) -> bool {
    match (quantity(a), quantity(b)) {
        (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

fn quantity(s: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, f)| s.strip_suffix(suffix).map(|n| (n, *f)))
        .unwrap_or((s, 1.0));
    // Only plain decimals: anything else is not a quantity we compare.
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    number.parse::<f64>().ok().map(|n| n * factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_defaults_do_not_count_as_drift() {
        let desired = json!({"spec": {"replicas": 3, "ports": [{"name": "client", "port": 2181}]}});
        let live = json!({"spec": {"replicas": 3, "revisionHistoryLimit": 10,
            "ports": [{"name": "client", "port": 2181, "protocol": "TCP"}]}});
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn a_changed_or_missing_field_is_drift() {
        let desired = json!({"spec": {"replicas": 3, "labels": {"a": "b"}}});
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 5, "labels": {"a": "b"}}})
        ));
        assert!(!is_subset(&desired, &json!({"spec": {"replicas": 3}})));
        assert!(!is_subset(&json!({"l": [1, 2]}), &json!({"l": [1]})));
    }

    #[test]
    fn quantities_compare_by_value() {
        assert!(is_subset(&json!("0.5"), &json!("500m")));
        assert!(is_subset(&json!("1024Mi"), &json!("1Gi")));
        assert!(!is_subset(&json!("1Gi"), &json!("2Gi")));
        assert!(!is_subset(&json!("zookeeper"), &json!("etcd")));
    }
}
