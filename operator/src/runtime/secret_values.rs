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

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use super::context::Context;
use super::error::Result;

impl Context {
    /// The value of `key` in the Secret `namespace/name` as text, `None`
    /// when the Secret or the key is missing. The Secret is read from the
    /// API (counted as a read of `kind`) only when the metadata cache shows
    /// a version that was not read yet, or does not hold the Secret.
    pub async fn secret_value(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        kind: &str,
    ) -> Result<Option<String>> {
        let cached_version = |ns: &str, name: &str| {
            let store = self.stores.secrets.as_ref()?;
            store
                .get(&ObjectRef::new(name).within(ns))?
                .metadata
                .resource_version
                .clone()
        };
        if let Some(value) = cached_version(namespace, name)
            .and_then(|version| self.secret_values.get(namespace, name, key, &version))
        {
            return Ok(value);
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api.get_opt(name).await?;
        self.metrics.read(kind, "get", "secrets");
        let Some(secret) = secret else {
            return Ok(None);
        };
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned());
        if let Some(version) = secret.metadata.resource_version {
            self.secret_values
                .put((namespace, name, key), version, value.clone(), |ns, n| {
                    cached_version(ns, n).is_some()
                });
        }
        Ok(value)
    }
}

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
    fn get(&self, namespace: &str, name: &str, key: &str, version: &str) -> Option<Option<String>> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(namespace.into(), name.into(), key.into()))
            .filter(|e| e.version == version)
            .map(|e| e.value.clone())
    }

    /// Keeps what was read of `key` at `version`, and forgets the values of
    /// Secrets for which `exists` is false (deleted, or no longer
    /// referenced), so that nothing outlives its Secret for long.
    fn put(
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
