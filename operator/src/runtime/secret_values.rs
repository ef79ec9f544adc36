//! Values read from referenced Secrets, kept while the Secret's
//! `resourceVersion` in the metadata cache stays the one they were read
//! at. The watch caches only Secrets' metadata, so that the operator does
//! not hold every Secret of a namespace in memory; a kind that needs a
//! value on every pass (ShardedStore's Redis password, every 3 s per
//! store) reads the Secret once per change of it instead of once per pass.
//!
//! Only the keys asked for are kept, and never logged (no `Debug`).

use std::collections::HashMap;
use std::sync::Mutex;

/// Namespace, Secret name, key.
type Key = (String, String, String);

#[derive(Default)]
pub struct SecretValues(Mutex<HashMap<Key, Entry>>);

struct Entry {
    version: String,
    value: Option<String>,
}

impl SecretValues {
    /// The value of `key` in Secret `namespace/name` (`None` when the
    /// Secret had no such key), if it was read at `version`.
    pub fn get(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        version: &str,
    ) -> Option<Option<String>> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(namespace.into(), name.into(), key.into()))
            .filter(|e| e.version == version)
            .map(|e| e.value.clone())
    }

    /// Keeps what was read of `key` at `version`, and forgets the values of
    /// Secrets for which `exists` is false (deleted, or no longer
    /// referenced), so that nothing outlives its Secret for long.
    pub fn put(
        &self,
        (namespace, name, key): (&str, &str, &str),
        version: String,
        value: Option<String>,
        exists: impl Fn(&str, &str) -> bool,
    ) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|(ns, n, _), _| exists(ns, n));
        map.insert(
            (namespace.into(), name.into(), key.into()),
            Entry { version, value },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_serves_until_its_secret_changes() {
        let v = SecretValues::default();
        assert_eq!(v.get("ns", "auth", "password", "1"), None, "never read");
        v.put(
            ("ns", "auth", "password"),
            "1".into(),
            Some("s3cret".into()),
            |_, _| true,
        );
        assert_eq!(
            v.get("ns", "auth", "password", "1"),
            Some(Some("s3cret".into()))
        );
        assert_eq!(v.get("ns", "auth", "password", "2"), None, "changed");
        assert_eq!(v.get("ns", "auth", "other", "1"), None, "another key");
        assert_eq!(v.get("ns2", "auth", "password", "1"), None, "another ns");
        // A key the Secret lacks is remembered as missing, at that version.
        v.put(("ns", "auth", "other"), "1".into(), None, |_, _| true);
        assert_eq!(v.get("ns", "auth", "other", "1"), Some(None));
    }

    #[test]
    fn values_of_secrets_gone_are_forgotten() {
        let v = SecretValues::default();
        v.put(("ns", "a", "k"), "1".into(), Some("x".into()), |_, _| true);
        v.put(("ns", "b", "k"), "1".into(), Some("y".into()), |_, n| {
            n != "a"
        });
        assert_eq!(v.get("ns", "a", "k", "1"), None);
        assert_eq!(v.get("ns", "b", "k", "1"), Some(Some("y".into())));
    }
}
