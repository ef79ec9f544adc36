//! The twemproxy pool file, accepted as is, plus our own settings under a
//! `tessera:` key in each pool.
//!
//! Validation collects every problem with the line it sits on, so that
//! `--check` can print them all at once.

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::ring::{Distribution, HashFn, server_identity};

/// A parsed and validated pool file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub pools: Vec<PoolConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub listen: String,
    pub hash: HashFn,
    pub hash_tag: Option<[u8; 2]>,
    pub distribution: Distribution,
    /// `None` waits forever, like twemproxy without `timeout:`.
    pub timeout: Option<Duration>,
    pub backlog: u32,
    pub redis: bool,
    pub redis_auth: Option<String>,
    pub redis_db: u32,
    pub preconnect: bool,
    pub auto_eject_hosts: bool,
    pub server_connections: usize,
    pub server_retry_timeout: Duration,
    pub server_failure_limit: u32,
    pub servers: Vec<ServerConfig>,
    /// Largest request a client may send, in bytes (`tessera.max_request_bytes`).
    pub max_request_bytes: usize,
    /// Largest shard reply relayed, in bytes (`tessera.max_reply_bytes`).
    pub max_reply_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub name: Option<String>,
}

impl ServerConfig {
    /// `host:port`, what we connect to.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The string hashed onto the ketama continuum.
    pub fn identity(&self) -> String {
        server_identity(&self.host, self.port, self.name.as_deref())
    }

    /// The label used in metrics and logs: the name, else the address.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.addr())
    }
}

/// One problem found in a pool file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Everything wrong with a pool file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;
/// Room for the largest single value Redis holds (`proto-max-bulk-len`,
/// 512 MiB) twice over, and for memcached's largest item (1 GiB).
pub const DEFAULT_MAX_REPLY_BYTES: usize = 1024 * 1024 * 1024;

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![Problem {
                line: None,
                message: format!("cannot read {}: {e}", path.display()),
            }],
        })?;
        Config::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let root: Value = match serde_yaml::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return Err(ConfigError {
                    problems: vec![Problem {
                        line: e.location().map(|l| l.line()),
                        message: format!("not valid YAML: {e}"),
                    }],
                });
            }
        };
        let Value::Mapping(root) = root else {
            return Err(ConfigError {
                problems: vec![Problem {
                    line: Some(1),
                    message: "expected a map of pool names to pools".into(),
                }],
            });
        };
        let lines = Lines::new(text);
        let mut pools = Vec::new();
        for (name, body) in &root {
            let name = scalar(name);
            let pool_line = lines.top_level(&name);
            let mut p = PoolParser {
                lines: &lines,
                pool: &name,
                pool_line,
                problems: &mut problems,
            };
            if let Some(pool) = p.pool(body) {
                pools.push(pool);
            }
        }
        if pools.is_empty() && problems.is_empty() {
            problems.push(Problem {
                line: None,
                message: "the file defines no pools".into(),
            });
        }
        for (i, a) in pools.iter().enumerate() {
            if pools[..i].iter().any(|b| b.listen == a.listen) {
                problems.push(Problem {
                    line: lines.key_in_pool(lines.top_level(&a.name), "listen"),
                    message: format!(
                        "pool {:?} listens on {} like an earlier pool",
                        a.name, a.listen
                    ),
                });
            }
        }
        if problems.is_empty() {
            Ok(Config { pools })
        } else {
            Err(ConfigError { problems })
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// Finds where keys and values sit in the text, since serde_yaml's values
/// carry no positions.
struct Lines<'t> {
    lines: Vec<&'t str>,
}

impl<'t> Lines<'t> {
    fn new(text: &'t str) -> Self {
        Lines {
            lines: text.lines().collect(),
        }
    }

    fn indent(line: &str) -> usize {
        line.len() - line.trim_start().len()
    }

    fn top_level(&self, name: &str) -> Option<usize> {
        self.lines.iter().position(|l| {
            Self::indent(l) == 0
                && l.strip_prefix(name)
                    .or_else(|| l.strip_prefix(&format!("\"{name}\"")))
                    .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
    }

    /// The extent of the pool starting at 0-based `start`.
    fn pool_range(&self, start: usize) -> std::ops::Range<usize> {
        let end = self.lines[start + 1..]
            .iter()
            .position(|l| {
                !l.trim().is_empty() && !l.trim_start().starts_with('#') && Self::indent(l) == 0
            })
            .map_or(self.lines.len(), |i| start + 1 + i);
        start..end
    }

    /// 1-based line of `key:` inside the pool at 0-based `pool_line`.
    fn key_in_pool(&self, pool_line: Option<usize>, key: &str) -> Option<usize> {
        let start = pool_line?;
        self.pool_range(start)
            .find(|&i| {
                let t = self.lines[i].trim_start();
                t.strip_prefix(key)
                    .is_some_and(|r| r.trim_start().starts_with(':'))
            })
            .map(|i| i + 1)
            .or(Some(start + 1))
    }

    /// 1-based line of the list item containing `needle` inside the pool.
    fn item_in_pool(&self, pool_line: Option<usize>, needle: &str) -> Option<usize> {
        let start = pool_line?;
        self.pool_range(start)
            .find(|&i| {
                let t = self.lines[i].trim_start();
                t.starts_with('-') && t.contains(needle)
            })
            .map(|i| i + 1)
    }
}

struct PoolParser<'a, 't> {
    lines: &'a Lines<'t>,
    pool: &'a str,
    pool_line: Option<usize>,
    problems: &'a mut Vec<Problem>,
}

impl PoolParser<'_, '_> {
    fn problem(&mut self, key: &str, message: String) {
        let line = self.lines.key_in_pool(self.pool_line, key);
        self.problems.push(Problem {
            line,
            message: format!("pool {:?}: {message}", self.pool),
        });
    }

    fn bool(&mut self, map: &Mapping, key: &str, default: bool) -> bool {
        match map.get(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                let v = scalar(v);
                self.problem(key, format!("{key}: expected true or false, got {v:?}"));
                default
            }
        }
    }

    fn num(&mut self, map: &Mapping, key: &str, min: i64) -> Option<i64> {
        match map.get(key)? {
            Value::Number(n) if n.as_i64().is_some_and(|n| n >= min) => n.as_i64(),
            v => {
                let v = scalar(v);
                self.problem(
                    key,
                    format!("{key}: expected an integer >= {min}, got {v:?}"),
                );
                None
            }
        }
    }

    fn string(&mut self, map: &Mapping, key: &str) -> Option<String> {
        match map.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            v => {
                let v = scalar(v);
                self.problem(key, format!("{key}: expected a string, got {v:?}"));
                None
            }
        }
    }

    fn pool(&mut self, body: &Value) -> Option<PoolConfig> {
        let before = self.problems.len();
        let Value::Mapping(map) = body else {
            self.problem("", "expected a map of settings".into());
            return None;
        };
        const KNOWN: &[&str] = &[
            "listen",
            "hash",
            "hash_tag",
            "distribution",
            "timeout",
            "backlog",
            "client_connections",
            "redis",
            "redis_auth",
            "redis_db",
            "preconnect",
            "auto_eject_hosts",
            "server_connections",
            "server_retry_timeout",
            "server_failure_limit",
            "servers",
            "tcpkeepalive",
            "reuseport",
            "tessera",
        ];
        for key in map.keys() {
            let key = scalar(key);
            if !KNOWN.contains(&key.as_str()) {
                self.problem(&key, format!("unknown directive {key:?}"));
            }
        }
        let listen = self.string(map, "listen");
        if listen.is_none() && !map.contains_key("listen") {
            self.problem("", "directive \"listen:\" is missing".into());
        }
        if let Some(l) = &listen
            && split_host_port(l).is_none()
        {
            self.problem("listen", format!("listen: {l:?} is not host:port"));
        }
        let hash = match self.string(map, "hash") {
            None => HashFn::default(),
            Some(h) => h.parse().unwrap_or_else(|e| {
                self.problem("hash", format!("hash: {e}"));
                HashFn::default()
            }),
        };
        let distribution = match self.string(map, "distribution") {
            None => Distribution::default(),
            Some(d) => d.parse().unwrap_or_else(|e| {
                self.problem("distribution", format!("distribution: {e}"));
                Distribution::default()
            }),
        };
        let hash_tag = match self.string(map, "hash_tag") {
            None => None,
            Some(t) if t.len() == 2 => {
                let b = t.as_bytes();
                Some([b[0], b[1]])
            }
            Some(t) => {
                self.problem(
                    "hash_tag",
                    format!("hash_tag: {t:?} must be exactly 2 characters"),
                );
                None
            }
        };
        let timeout = self
            .num(map, "timeout", -1)
            .filter(|&t| t > 0)
            .map(|t| Duration::from_millis(t as u64));
        let backlog = self.num(map, "backlog", 1).unwrap_or(512) as u32;
        let redis = self.bool(map, "redis", false);
        let redis_auth = self.string(map, "redis_auth").filter(|s| !s.is_empty());
        if redis_auth.is_some() && !redis {
            self.problem(
                "redis_auth",
                "redis_auth: is only valid for a redis pool".into(),
            );
        }
        let redis_db = self.num(map, "redis_db", 0).unwrap_or(0) as u32;
        let preconnect = self.bool(map, "preconnect", false);
        let auto_eject_hosts = self.bool(map, "auto_eject_hosts", false);
        self.bool(map, "tcpkeepalive", false);
        self.bool(map, "reuseport", false);
        self.num(map, "client_connections", 0);
        let server_connections = self.num(map, "server_connections", 1).unwrap_or(1) as usize;
        let server_retry_timeout = Duration::from_millis(
            self.num(map, "server_retry_timeout", 1).unwrap_or(30_000) as u64,
        );
        let server_failure_limit = self.num(map, "server_failure_limit", 1).unwrap_or(2) as u32;
        let mut max_request_bytes = DEFAULT_MAX_REQUEST_BYTES;
        let mut max_reply_bytes = DEFAULT_MAX_REPLY_BYTES;
        match map.get("tessera") {
            None => {}
            Some(Value::Mapping(ext)) => {
                for key in ext.keys() {
                    let key = scalar(key);
                    if key != "max_request_bytes" && key != "max_reply_bytes" {
                        self.problem(&key, format!("tessera: unknown setting {key:?}"));
                    }
                }
                if let Some(n) = self.num(ext, "max_request_bytes", 1024) {
                    max_request_bytes = n as usize;
                }
                if let Some(n) = self.num(ext, "max_reply_bytes", 1024) {
                    max_reply_bytes = n as usize;
                }
            }
            Some(_) => self.problem("tessera", "tessera: expected a map of settings".into()),
        }
        let servers = self.servers(map.get("servers"));
        if self.problems.len() > before {
            return None;
        }
        Some(PoolConfig {
            name: self.pool.to_owned(),
            listen: listen?,
            hash,
            hash_tag,
            distribution,
            timeout,
            backlog,
            redis,
            redis_auth,
            redis_db,
            preconnect,
            auto_eject_hosts,
            server_connections,
            server_retry_timeout,
            server_failure_limit,
            servers,
            max_request_bytes,
            max_reply_bytes,
        })
    }

    fn servers(&mut self, value: Option<&Value>) -> Vec<ServerConfig> {
        let items = match value {
            Some(Value::Sequence(items)) if !items.is_empty() => items,
            Some(Value::Sequence(_)) | None => {
                self.problem("servers", "has no servers".into());
                return Vec::new();
            }
            Some(_) => {
                self.problem("servers", "servers: expected a list".into());
                return Vec::new();
            }
        };
        let mut servers: Vec<ServerConfig> = Vec::new();
        for item in items {
            let text = scalar(item);
            let line = self
                .lines
                .item_in_pool(self.pool_line, &text)
                .or_else(|| self.lines.key_in_pool(self.pool_line, "servers"));
            match parse_server(&text) {
                Ok(s) => {
                    let dup = servers.iter().any(|o| match (&o.name, &s.name) {
                        (Some(a), Some(b)) => a == b,
                        (None, None) => o.addr() == s.addr(),
                        _ => false,
                    });
                    if dup {
                        self.problems.push(Problem {
                            line,
                            message: format!(
                                "pool {:?}: server {text:?} is a duplicate",
                                self.pool
                            ),
                        });
                    }
                    servers.push(s);
                }
                Err(why) => self.problems.push(Problem {
                    line,
                    message: format!("pool {:?}: server {text:?} {why}", self.pool),
                }),
            }
        }
        servers
    }
}

/// Splits `host:port`, accepting `[v6]:port`.
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty() && port > 0).then(|| (host.to_owned(), port))
}

/// Parses `host:port:weight [name]`, the way twemproxy reads it.
pub fn parse_server(text: &str) -> Result<ServerConfig, String> {
    const FORMAT: &str = "is not in the \"host:port:weight [name]\" format";
    let (addr, name) = match text.split_once(' ') {
        Some((a, n)) => (a, Some(n.trim())),
        None => (text, None),
    };
    if name.is_some_and(|n| n.is_empty() || n.contains(char::is_whitespace)) {
        return Err(FORMAT.into());
    }
    if addr.starts_with('/') {
        return Err("uses a unix socket, which the ambassador does not support".into());
    }
    let (host_port, weight) = addr.rsplit_once(':').ok_or(FORMAT)?;
    let (host, port) = host_port.rsplit_once(':').ok_or(FORMAT)?;
    let weight: u32 = weight
        .parse()
        .map_err(|_| "has an invalid weight".to_owned())?;
    if weight == 0 {
        return Err("has a zero weight".into());
    }
    let port: u16 = port.parse().map_err(|_| "has an invalid port".to_owned())?;
    if port == 0 || host.is_empty() {
        return Err("has an invalid port".into());
    }
    Ok(ServerConfig {
        host: host.to_owned(),
        port,
        weight,
        name: name.map(str::to_owned),
    })
}
