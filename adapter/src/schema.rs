//! The uniform metric families and the text-format writer.
//!
//! Every family is declared once, here or in its engine module, with HELP
//! and TYPE, so the exposition can never emit a sample without them. Engine
//! mappings only push samples; a value an engine cannot provide is simply
//! never pushed, which keeps gaps absent rather than zero.

use std::fmt::Write as _;

use crate::cli::Engine;
use crate::error::ScrapeError;

/// Prometheus metric type (only the two the schema uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// One metric family: its full name, HELP text and TYPE.
#[derive(Debug, PartialEq, Eq)]
pub struct Desc {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

impl Desc {
    pub const fn gauge(name: &'static str, help: &'static str) -> Desc {
        Desc {
            name,
            help,
            kind: Kind::Gauge,
        }
    }
    pub const fn counter(name: &'static str, help: &'static str) -> Desc {
        Desc {
            name,
            help,
            kind: Kind::Counter,
        }
    }
}

/// The core families of the uniform schema (docs/metrics.md).
pub mod core {
    use super::Desc;

    pub const UP: Desc = Desc::gauge(
        "tessera_up",
        "1 when the engine answered this scrape, else 0.",
    );
    pub const BUILD_INFO: Desc = Desc::gauge(
        "tessera_build_info",
        "Always 1; the version label is the engine's version.",
    );
    pub const ROLE: Desc = Desc::gauge(
        "tessera_role",
        "1 for the member's current role (primary, replica, leader, follower, observer, learner, standalone, controller, broker).",
    );
    pub const IS_LEADER: Desc = Desc::gauge(
        "tessera_is_leader",
        "1 for a Redis primary, the ZooKeeper or etcd leader, or the active Kafka controller.",
    );
    pub const CONNECTIONS: Desc = Desc::gauge("tessera_connections", "Current client connections.");
    pub const OPERATIONS: Desc =
        Desc::counter("tessera_operations_total", "Commands or requests served.");
    pub const RX_BYTES: Desc = Desc::counter(
        "tessera_network_receive_bytes_total",
        "Bytes received from clients.",
    );
    pub const TX_BYTES: Desc = Desc::counter(
        "tessera_network_transmit_bytes_total",
        "Bytes sent to clients.",
    );
    pub const DATA_BYTES: Desc = Desc::gauge("tessera_data_bytes", "Data held, in bytes.");
    pub const DATA_LIMIT_BYTES: Desc = Desc::gauge(
        "tessera_data_limit_bytes",
        "The configured cap on data held, in bytes, where one exists.",
    );
    pub const ITEMS: Desc = Desc::gauge(
        "tessera_items",
        "Keys, items, znodes, etcd keys or partition replicas held.",
    );
    pub const IN_SYNC: Desc = Desc::gauge(
        "tessera_replication_in_sync",
        "1 when this member's copy of the data is in sync.",
    );
    pub const OUT_OF_SYNC: Desc = Desc::gauge(
        "tessera_replicas_out_of_sync",
        "Followers, replicas or partition replicas that this member sees lagging.",
    );
    pub const LEADER_CHANGES: Desc = Desc::counter(
        "tessera_leader_changes_total",
        "Leader changes (or elections) this member has seen.",
    );
    pub const SCRAPE_DURATION: Desc = Desc::gauge(
        "tessera_scrape_duration_seconds",
        "Time this scrape spent asking the engine.",
    );
    pub const SCRAPE_ERRORS: Desc = Desc::counter(
        "tessera_scrape_errors_total",
        "Failed engine calls and malformed fields, by reason, since the adapter started.",
    );
    pub const ADAPTER_INFO: Desc = Desc::gauge(
        "tessera_adapter_build_info",
        "Always 1; the version label is the adapter's version.",
    );
}

/// The role vocabulary shared by every engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
    Leader,
    Follower,
    Observer,
    Learner,
    Standalone,
    Controller,
    Broker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Observer => "observer",
            Role::Learner => "learner",
            Role::Standalone => "standalone",
            Role::Controller => "controller",
            Role::Broker => "broker",
        }
    }
}

type Labels = Vec<(&'static str, String)>;

struct Family {
    desc: &'static Desc,
    samples: Vec<(Labels, f64)>,
}

/// The samples of one scrape, grouped by family in first-seen order, plus
/// the reasons of the errors met on the way.
pub struct Scrape {
    engine: Engine,
    families: Vec<Family>,
    errors: Vec<&'static str>,
}

impl Scrape {
    pub fn new(engine: Engine) -> Scrape {
        Scrape {
            engine,
            families: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Adds a sample with extra labels (the `engine` label is implied).
    pub fn push(&mut self, desc: &'static Desc, labels: Labels, value: f64) {
        let fam = match self.families.iter().position(|f| f.desc.name == desc.name) {
            Some(i) => &mut self.families[i],
            None => {
                self.families.push(Family {
                    desc,
                    samples: Vec::new(),
                });
                self.families.last_mut().expect("just pushed")
            }
        };
        fam.samples.push((labels, value));
    }

    /// Adds an unlabelled sample.
    pub fn set(&mut self, desc: &'static Desc, value: f64) {
        self.push(desc, Vec::new(), value);
    }

    /// Adds a 0/1 sample.
    pub fn flag(&mut self, desc: &'static Desc, on: bool) {
        self.set(desc, if on { 1.0 } else { 0.0 });
    }

    /// Parses `raw` (the native field `field`) and adds it times `scale`.
    /// A missing field stays absent; an unparsable one is counted as an
    /// error and skipped.
    pub fn field(&mut self, desc: &'static Desc, field: &str, raw: Option<&str>, scale: f64) {
        if let Some(v) = self.parse(field, raw) {
            self.set(desc, v * scale);
        }
    }

    /// Parses a native numeric field, counting a malformed one.
    pub fn parse(&mut self, field: &str, raw: Option<&str>) -> Option<f64> {
        let raw = raw?;
        match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Some(v),
            _ => {
                self.error(&ScrapeError::Malformed {
                    field: field.to_string(),
                    value: raw.chars().take(64).collect(),
                });
                None
            }
        }
    }

    /// Records an error met during this scrape.
    pub fn error(&mut self, err: &ScrapeError) {
        tracing::debug!(engine = self.engine.as_str(), error = %err, "scrape error");
        self.errors.push(err.label());
    }

    pub fn errors(&self) -> &[&'static str] {
        &self.errors
    }

    /// Drops every sample (a failed scrape must not publish half a picture)
    /// but keeps the errors.
    pub fn clear_samples(&mut self) {
        self.families.clear();
    }

    /// Moves `other`'s samples and errors into this scrape.
    pub fn absorb(&mut self, other: Scrape) {
        for fam in other.families {
            for (labels, value) in fam.samples {
                self.push(fam.desc, labels, value);
            }
        }
        self.errors.extend(other.errors);
    }

    /// The value of the first sample of `name` whose labels include all of
    /// `want`; for tests and the engine mappings' own cross-checks.
    pub fn get(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        let fam = self.families.iter().find(|f| f.desc.name == name)?;
        fam.samples
            .iter()
            .find(|(labels, _)| {
                want.iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| *v)
    }

    /// Whether any sample of `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.families.iter().any(|f| f.desc.name == name)
    }

    /// Renders the text exposition format (version 0.0.4).
    pub fn render(&self, out: &mut String) {
        let engine = self.engine.as_str();
        for fam in &self.families {
            let d = fam.desc;
            let kind = match d.kind {
                Kind::Gauge => "gauge",
                Kind::Counter => "counter",
            };
            let _ = writeln!(out, "# HELP {} {}", d.name, escape_help(d.help));
            let _ = writeln!(out, "# TYPE {} {kind}", d.name);
            for (labels, value) in &fam.samples {
                out.push_str(d.name);
                out.push_str("{engine=\"");
                out.push_str(engine);
                out.push('"');
                for (k, v) in labels {
                    out.push(',');
                    out.push_str(k);
                    out.push_str("=\"");
                    escape_label(v, out);
                    out.push('"');
                }
                out.push_str("} ");
                write_value(*value, out);
                out.push('\n');
            }
        }
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_value(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_and_engine_label_once_per_family() {
        let mut s = Scrape::new(Engine::Redis);
        s.set(&core::UP, 1.0);
        s.push(&core::ROLE, vec![("role", "primary".into())], 1.0);
        s.push(&core::ROLE, vec![("role", "we\"ird\\\n".into())], 0.0);
        s.set(&core::DATA_BYTES, 1.5e12);
        let mut out = String::new();
        s.render(&mut out);
        assert_eq!(out.matches("# TYPE tessera_role gauge").count(), 1);
        assert!(out.contains("tessera_up{engine=\"redis\"} 1\n"), "{out}");
        assert!(out.contains("tessera_role{engine=\"redis\",role=\"primary\"} 1\n"));
        assert!(out.contains(r#"role="we\"ird\\\n"} 0"#), "{out}");
        assert!(out.contains("tessera_data_bytes{engine=\"redis\"} 1500000000000\n"));
    }

    #[test]
    fn malformed_fields_are_counted_and_skipped_missing_ones_are_not() {
        let mut s = Scrape::new(Engine::Memcached);
        s.field(&core::ITEMS, "curr_items", Some("12x"), 1.0);
        s.field(&core::CONNECTIONS, "curr_connections", None, 1.0);
        s.field(&core::OPERATIONS, "cmd", Some("NaN"), 1.0);
        s.field(&core::DATA_BYTES, "bytes", Some(" 42 "), 1.0);
        assert!(!s.has("tessera_items"));
        assert!(!s.has("tessera_connections"));
        assert!(!s.has("tessera_operations_total"));
        assert_eq!(s.get("tessera_data_bytes", &[]), Some(42.0));
        assert_eq!(s.errors(), &["malformed_field", "malformed_field"]);
    }

    #[test]
    fn values_render_in_prometheus_syntax() {
        for (v, want) in [
            (0.25, "0.25"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (3.0, "3"),
        ] {
            let mut out = String::new();
            write_value(v, &mut out);
            assert_eq!(out, want);
        }
    }
}
