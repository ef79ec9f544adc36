//! What every binary's command line shares about its engine: which engine,
//! the `host:port` syntax of its address, and the `800ms`/`5s` duration
//! syntax of deadlines. Kept free of clap so that this crate stays small.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The engines Tessera runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    Redis,
    Memcached,
    Zookeeper,
    Etcd,
    Kafka,
}

impl Engine {
    pub const ALL: [Engine; 5] = [
        Engine::Redis,
        Engine::Memcached,
        Engine::Zookeeper,
        Engine::Etcd,
        Engine::Kafka,
    ];
    /// The names accepted by [`Engine::from_str`], in [`Engine::ALL`] order.
    pub const NAMES: [&'static str; 5] = ["redis", "memcached", "zookeeper", "etcd", "kafka"];

    /// The lower-case name used in flags and metric labels.
    pub fn as_str(self) -> &'static str {
        Engine::NAMES[self as usize]
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Engine, String> {
        Engine::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown engine {s:?}: expected one of {}",
                    Engine::NAMES.join(", ")
                )
            })
    }
}

/// Checks `host:port` syntax (the host may be a name resolved later).
pub fn validate_host_port(target: &str) -> Result<(), String> {
    let err = |why: &str| format!("target {target:?}: {why}");
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| err("expected host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(['/', ' ', '@']) {
        return Err(err("expected host:port with a host name or IP address"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(err("the port must be a number from 1 to 65535")),
    }
}

/// Parses `800ms`, `1.5s` or `2m`; the unit is required and the value must
/// lie strictly between 0 and one hour.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration such as 800ms, 5s or 1m (above 0, below 1h)");
    let (num, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|i| s.split_at(i))
        .ok_or_else(bad)?;
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if !(secs > 0.0 && secs < 3600.0) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_round_trip() {
        for e in Engine::ALL {
            assert_eq!(e.as_str().parse::<Engine>(), Ok(e));
        }
        assert!(
            "mysql"
                .parse::<Engine>()
                .unwrap_err()
                .contains("redis, memcached")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("800ms").unwrap(), Duration::from_millis(800));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        for bad in ["", "800", "ms", "0s", "-1s", "1h", "1e9s", "5 parsecs"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets() {
        for ok in [
            "127.0.0.1:6379",
            "localhost:2181",
            "[::1]:9092",
            "redis-0.redis:6379",
        ] {
            assert!(validate_host_port(ok).is_ok(), "{ok}");
        }
        for bad in [
            "localhost",
            ":6379",
            "host:0",
            "host:99999",
            "http://x:1",
            "a b:1",
        ] {
            assert!(validate_host_port(bad).is_err(), "{bad}");
        }
    }
}
