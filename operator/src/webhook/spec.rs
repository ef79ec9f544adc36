//! The pod annotations that ask for injection, parsed into an
//! [`InjectSpec`], with an error that names the annotation and the problem.
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     tessera.dev/inject: redis                       # the engine (required)
//!     tessera.dev/inject-port: "6380"                 # the engine's port
//!     tessera.dev/inject-adapter: "false"             # no metrics adapter
//!     tessera.dev/inject-password-secret: auth:pass   # Redis AUTH, Secret[:key]
//! ```

use std::collections::BTreeMap;
use std::fmt;

use crate::kinds::ensemble::{etcd, zookeeper};

/// The engine to inject for; its presence is what asks for injection.
pub const INJECT: &str = "tessera.dev/inject";
/// The engine's port on 127.0.0.1 (default: the engine's usual port).
pub const INJECT_PORT: &str = "tessera.dev/inject-port";
/// `true` (default) or `false`: add the metrics adapter.
pub const INJECT_ADAPTER: &str = "tessera.dev/inject-adapter";
/// `NAME` or `NAME:KEY` of a Secret in the pod's namespace holding the
/// Redis password (key default `password`).
pub const INJECT_PASSWORD_SECRET: &str = "tessera.dev/inject-password-secret";
/// Written by the webhook: what it injected, e.g. `tessera-sidecar,tessera-adapter`.
pub const INJECTED: &str = "tessera.dev/injected";
/// Written by the webhook: the operator version that injected.
pub const INJECTED_BY: &str = "tessera.dev/injected-by";

/// Every annotation under `tessera.dev/inject` that the webhook reads; any
/// other `tessera.dev/inject-*` key is refused as a probable typo.
pub const OPTIONS: [&str; 3] = [INJECT_PORT, INJECT_ADAPTER, INJECT_PASSWORD_SECRET];

/// The engines the sidecar and adapter speak, with their usual ports.
pub const ENGINES: [(&str, i32); 5] = [
    ("redis", 6379),
    ("memcached", 11211),
    ("zookeeper", zookeeper::CLIENT_PORT),
    ("etcd", etcd::CLIENT_PORT),
    ("kafka", 9092),
];

/// A Secret key reference in the pod's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretKey {
    pub name: String,
    pub key: String,
}

/// What a pod asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectSpec {
    pub engine: &'static str,
    pub port: i32,
    pub adapter: bool,
    pub password: Option<SecretKey>,
}

/// Why the annotations cannot be honoured. The message names the
/// annotation, the value and what would be accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    UnknownEngine(String),
    BadPort(String),
    BadBool {
        key: &'static str,
        value: String,
    },
    BadSecretRef(String),
    PasswordUnsupported(&'static str),
    UnknownOption(String),
    /// A port the injected container listens on is already declared by a
    /// container of the pod.
    PortTaken {
        port: i32,
        container: String,
        injected: &'static str,
    },
    /// The Secret named by `tessera.dev/inject-password-secret` does not exist.
    MissingSecret {
        name: String,
        namespace: String,
    },
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let engines = ENGINES.map(|(e, _)| e).join(", ");
        match self {
            SpecError::UnknownEngine(v) => write!(
                f,
                "{INJECT}: unknown engine {v:?}; expected one of {engines}, or \"false\""
            ),
            SpecError::BadPort(v) => {
                write!(f, "{INJECT_PORT}: {v:?} is not a port number (1-65535)")
            }
            SpecError::BadBool { key, value } => {
                write!(f, "{key}: {value:?} is not \"true\" or \"false\"")
            }
            SpecError::BadSecretRef(v) => write!(
                f,
                "{INJECT_PASSWORD_SECRET}: {v:?} is not NAME or NAME:KEY (a Secret name and an optional key)"
            ),
            SpecError::PasswordUnsupported(engine) => write!(
                f,
                "{INJECT_PASSWORD_SECRET}: only redis takes a password, not {engine}"
            ),
            SpecError::UnknownOption(k) => write!(
                f,
                "{k}: unknown annotation; the injection options are {}",
                OPTIONS.join(", ")
            ),
            SpecError::PortTaken {
                port,
                container,
                injected,
            } => write!(
                f,
                "port {port} of {injected} is already declared by container {container:?}{}",
                if *injected == super::patch::ADAPTER {
                    format!("; set {INJECT_ADAPTER}: \"false\" to inject the sidecar alone")
                } else {
                    String::new()
                }
            ),
            SpecError::MissingSecret { name, namespace } => write!(
                f,
                "{INJECT_PASSWORD_SECRET}: Secret {name:?} not found in namespace {namespace:?}"
            ),
        }
    }
}

impl std::error::Error for SpecError {}

/// `Ok(None)`: the pod does not ask for injection (no `tessera.dev/inject`,
/// or `tessera.dev/inject: "false"`).
pub fn parse(annotations: &BTreeMap<String, String>) -> Result<Option<InjectSpec>, SpecError> {
    let Some(engine) = annotations.get(INJECT) else {
        return Ok(None);
    };
    let engine = engine.trim().to_ascii_lowercase();
    if engine == "false" {
        return Ok(None);
    }
    let Some(&(engine, default_port)) = ENGINES.iter().find(|(e, _)| *e == engine) else {
        return Err(SpecError::UnknownEngine(engine));
    };
    if let Some(unknown) = annotations
        .keys()
        .filter(|k| k.starts_with("tessera.dev/inject-"))
        .find(|k| !OPTIONS.contains(&k.as_str()))
    {
        return Err(SpecError::UnknownOption(unknown.clone()));
    }
    let port = match annotations.get(INJECT_PORT) {
        None => default_port,
        Some(v) => match v.trim().parse::<i32>() {
            Ok(p) if (1..=65535).contains(&p) => p,
            _ => return Err(SpecError::BadPort(v.clone())),
        },
    };
    let adapter = match annotations.get(INJECT_ADAPTER) {
        None => true,
        Some(v) => match v.trim() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(SpecError::BadBool {
                    key: INJECT_ADAPTER,
                    value: v.clone(),
                });
            }
        },
    };
    let password = match annotations.get(INJECT_PASSWORD_SECRET) {
        None => None,
        Some(_) if engine != "redis" => return Err(SpecError::PasswordUnsupported(engine)),
        Some(v) => Some(secret_ref(v)?),
    };
    Ok(Some(InjectSpec {
        engine,
        port,
        adapter,
        password,
    }))
}

fn secret_ref(v: &str) -> Result<SecretKey, SpecError> {
    let bad = || SpecError::BadSecretRef(v.to_string());
    let (name, key) = match v.trim().split_once(':') {
        Some((n, k)) => (n, k),
        None => (v.trim(), "password"),
    };
    if !is_dns_subdomain(name) || !is_secret_key(key) {
        return Err(bad());
    }
    Ok(SecretKey {
        name: name.into(),
        key: key.into(),
    })
}

/// An RFC 1123 subdomain: what a Secret's name must be.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// What a key of a Secret's data may be.
fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Annotations from pairs, for tests.
#[cfg(test)]
pub fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(pairs: &[(&str, &str)]) -> String {
        parse(&ann(pairs)).unwrap_err().to_string()
    }

    #[test]
    fn no_annotation_or_false_asks_for_nothing() {
        assert_eq!(parse(&ann(&[])), Ok(None));
        assert_eq!(parse(&ann(&[("other", "x")])), Ok(None));
        assert_eq!(parse(&ann(&[(INJECT, "false")])), Ok(None));
        assert_eq!(parse(&ann(&[(INJECT, " FALSE ")])), Ok(None));
    }

    #[test]
    fn each_engine_gets_its_usual_port_and_the_adapter() {
        for (engine, port) in ENGINES {
            let spec = parse(&ann(&[(INJECT, engine)])).unwrap().unwrap();
            assert_eq!(
                spec,
                InjectSpec {
                    engine,
                    port,
                    adapter: true,
                    password: None
                }
            );
        }
        let spec = parse(&ann(&[(INJECT, " Redis ")])).unwrap().unwrap();
        assert_eq!(spec.engine, "redis");
    }

    #[test]
    fn options_are_read() {
        let spec = parse(&ann(&[
            (INJECT, "redis"),
            (INJECT_PORT, "6380"),
            (INJECT_ADAPTER, "false"),
            (INJECT_PASSWORD_SECRET, "auth.v1:redis-pass_2"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            spec,
            InjectSpec {
                engine: "redis",
                port: 6380,
                adapter: false,
                password: Some(SecretKey {
                    name: "auth.v1".into(),
                    key: "redis-pass_2".into()
                }),
            }
        );
        let spec = parse(&ann(&[(INJECT, "redis"), (INJECT_PASSWORD_SECRET, "auth")]))
            .unwrap()
            .unwrap();
        assert_eq!(spec.password.unwrap().key, "password");
        assert!(
            parse(&ann(&[(INJECT, "redis"), (INJECT_ADAPTER, "true")]))
                .unwrap()
                .unwrap()
                .adapter
        );
    }

    #[test]
    fn an_unknown_engine_is_named_with_the_known_ones() {
        for bad in ["redix", "", "mysql", "redis,adapter"] {
            let e = err(&[(INJECT, bad)]);
            assert!(e.starts_with("tessera.dev/inject: unknown engine"), "{e}");
            assert!(
                e.contains("redis, memcached, zookeeper, etcd, kafka"),
                "{e}"
            );
        }
    }

    #[test]
    fn bad_ports_are_refused() {
        for bad in [
            "0",
            "65536",
            "-1",
            "abc",
            "",
            "80.5",
            "6379x",
            "99999999999",
        ] {
            assert_eq!(
                err(&[(INJECT, "redis"), (INJECT_PORT, bad)]),
                format!("tessera.dev/inject-port: {bad:?} is not a port number (1-65535)")
            );
        }
        assert_eq!(
            parse(&ann(&[(INJECT, "redis"), (INJECT_PORT, "65535")]))
                .unwrap()
                .unwrap()
                .port,
            65535
        );
    }

    #[test]
    fn bad_booleans_are_refused() {
        for bad in ["yes", "1", "", "False "] {
            let e = err(&[(INJECT, "redis"), (INJECT_ADAPTER, bad)]);
            // "False " trims to "False", still not a boolean we accept.
            assert!(
                e.starts_with("tessera.dev/inject-adapter:") && e.contains("is not \"true\""),
                "{e}"
            );
        }
    }

    #[test]
    fn bad_secret_references_are_refused() {
        for bad in [
            "", "Auth", "a:", ":key", "a:b:c", "a b", "-auth", "auth-", "a..b", "a:k/y", "a:..",
        ] {
            let e = err(&[(INJECT, "redis"), (INJECT_PASSWORD_SECRET, bad)]);
            assert!(
                e.starts_with("tessera.dev/inject-password-secret:") && e.contains("NAME:KEY"),
                "{bad:?}: {e}"
            );
        }
        let long = "a".repeat(254);
        assert!(err(&[(INJECT, "redis"), (INJECT_PASSWORD_SECRET, &long)]).contains("NAME:KEY"));
    }

    #[test]
    fn a_password_for_another_engine_is_refused() {
        assert_eq!(
            err(&[(INJECT, "memcached"), (INJECT_PASSWORD_SECRET, "auth")]),
            "tessera.dev/inject-password-secret: only redis takes a password, not memcached"
        );
    }

    #[test]
    fn a_misspelt_option_is_refused() {
        let e = err(&[(INJECT, "redis"), ("tessera.dev/inject-prot", "6380")]);
        assert!(
            e.starts_with("tessera.dev/inject-prot: unknown annotation") && e.contains(INJECT_PORT),
            "{e}"
        );
        // Other tessera.dev annotations are none of the webhook's business.
        assert!(
            parse(&ann(&[(INJECT, "redis"), ("tessera.dev/injected", "x")]))
                .unwrap()
                .is_some()
        );
    }
}
