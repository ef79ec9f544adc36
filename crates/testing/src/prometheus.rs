//! A real `prometheus` on 127.0.0.1 (Debian's, or another build such as
//! hack/prometheus/build.sh's with Kubernetes service discovery), and the
//! queries of Tessera's Grafana dashboard, for tests that check what
//! Prometheus actually sees.

use std::path::Path;
use std::time::Duration;

use crate::process::{LaunchError, Process, free_ports};
use crate::wire::http_get;

/// A Prometheus server with its own temporary storage, killed on drop.
pub struct Prometheus {
    pub port: u16,
    process: Process,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping and evaluating every second.
    /// `scrape_configs` is the YAML list under `scrape_configs:` (each line
    /// indented by two spaces); `rules` is an optional rules file.
    pub fn start(scrape_configs: &str, rules: Option<&Path>) -> Result<Prometheus, LaunchError> {
        Prometheus::start_binary("prometheus", scrape_configs, rules)
    }

    /// As [`Prometheus::start`], running `binary` (a path, or a name on
    /// PATH).
    pub fn start_binary(
        binary: &str,
        scrape_configs: &str,
        rules: Option<&Path>,
    ) -> Result<Prometheus, LaunchError> {
        let dir = tempfile::tempdir().map_err(|e| LaunchError::Setup(e.to_string()))?;
        let config = dir.path().join("prometheus.yml");
        let mut text = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n",
        );
        if let Some(rules) = rules {
            text.push_str(&format!("rule_files:\n  - {}\n", rules.display()));
        }
        text.push_str("scrape_configs:\n");
        text.push_str(scrape_configs);
        std::fs::write(&config, text).map_err(|e| LaunchError::Setup(e.to_string()))?;
        let port = free_ports(1)[0];
        let mut process = Process::spawn(
            "prometheus",
            binary,
            vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ],
            vec![],
            dir.path().join("prometheus.log"),
        )?;
        process.wait_until(Duration::from_secs(60), || {
            match http_get(port, "/-/ready", &[], Duration::from_secs(2))? {
                (200, _) => Ok(()),
                (s, b) => Err(format!("/-/ready {s}: {b}")),
            }
        })?;
        Ok(Prometheus {
            port,
            process,
            _dir: dir,
        })
    }

    /// GET an API path; the JSON body of a 200 answer.
    pub fn api(&self, path: &str) -> Result<serde_json::Value, String> {
        let (status, body) = http_get(self.port, path, &[], Duration::from_secs(10))?;
        if status != 200 {
            return Err(format!("{path}: {status}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("{path}: {e}: {body}"))
    }

    /// The result vector of an instant query.
    pub fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let v = self.api(&format!("/api/v1/query?query={}", url_encode(expr)))?;
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The active targets: (scrape pool, labels, health, last error).
    pub fn targets(&self) -> Result<Vec<serde_json::Value>, String> {
        let v = self.api("/api/v1/targets?state=active")?;
        Ok(v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The last lines of Prometheus's log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        self.process.log_tail(n)
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every `expr` in a Grafana dashboard's JSON, in document order.
pub fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encode_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(url_encode("up == 1"), "up%20%3D%3D%201");
        assert_eq!(url_encode(r#"a{b=~"c.*"}"#), "a%7Bb%3D~%22c.%2A%22%7D");
    }

    #[test]
    fn dashboard_queries_finds_nested_exprs_in_order() {
        let d = serde_json::json!({"panels": [
            {"targets": [{"expr": "a"}, {"expr": "b"}]},
            {"panels": [{"targets": [{"expr": "c"}]}]},
            {"expr": 3}
        ]});
        assert_eq!(dashboard_queries(&d), ["a", "b", "c"]);
    }
}
