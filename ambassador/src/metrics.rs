//! Prometheus metrics. Hot-path counters are resolved once per shard and
//! command so a request costs an atomic add, not a label lookup.

use std::sync::{Arc, LazyLock, OnceLock};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub errors: IntCounterVec,
    pub client_errors: IntCounterVec,
    pub latency: HistogramVec,
    pub ejected: IntGaugeVec,
    pub reloads: IntCounterVec,
    pub connections: IntCounterVec,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let requests = IntCounterVec::new(
        Opts::new(
            "tessera_ambassador_requests_total",
            "Requests sent to shards, by command and shard",
        ),
        &["pool", "command", "shard"],
    )
    .expect("valid metric");
    let errors = IntCounterVec::new(
        Opts::new(
            "tessera_ambassador_errors_total",
            "Requests answered with a proxy error, by command, shard and kind",
        ),
        &["pool", "command", "shard", "kind"],
    )
    .expect("valid metric");
    let client_errors = IntCounterVec::new(
        Opts::new(
            "tessera_ambassador_client_errors_total",
            "Client connections closed for malformed or oversized input",
        ),
        &["pool", "kind"],
    )
    .expect("valid metric");
    let latency = HistogramVec::new(
        HistogramOpts::new(
            "tessera_ambassador_upstream_latency_seconds",
            "Time from writing a request to a shard to reading its reply",
        )
        .buckets(vec![
            0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
            0.25, 0.5, 1.0,
        ]),
        &["pool", "shard"],
    )
    .expect("valid metric");
    let ejected = IntGaugeVec::new(
        Opts::new(
            "tessera_ambassador_shard_ejected",
            "1 while a shard is ejected from the ring",
        ),
        &["pool", "shard"],
    )
    .expect("valid metric");
    let reloads = IntCounterVec::new(
        Opts::new(
            "tessera_ambassador_reloads_total",
            "Configuration reloads, by result",
        ),
        &["result"],
    )
    .expect("valid metric");
    let connections = IntCounterVec::new(
        Opts::new(
            "tessera_ambassador_client_connections_total",
            "Accepted client connections",
        ),
        &["pool"],
    )
    .expect("valid metric");
    for c in [
        Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(errors.clone()),
        Box::new(client_errors.clone()),
        Box::new(latency.clone()),
        Box::new(ejected.clone()),
        Box::new(reloads.clone()),
        Box::new(connections.clone()),
    ] {
        registry.register(c).expect("metric registered once");
    }
    Metrics {
        registry,
        requests,
        errors,
        client_errors,
        latency,
        ejected,
        reloads,
        connections,
    }
});

/// The text exposition of every metric.
pub fn render() -> String {
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&METRICS.registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Per-shard request counters indexed by command id, created on first use.
pub struct ShardCounters {
    pool: Arc<str>,
    shard: Arc<str>,
    names: &'static [&'static str],
    requests: Box<[OnceLock<IntCounter>]>,
}

impl ShardCounters {
    pub fn new(pool: Arc<str>, shard: Arc<str>, names: &'static [&'static str]) -> Self {
        ShardCounters {
            requests: names.iter().map(|_| OnceLock::new()).collect(),
            pool,
            shard,
            names,
        }
    }

    pub fn request(&self, command: usize) {
        self.requests[command]
            .get_or_init(|| {
                METRICS.requests.with_label_values(&[
                    &*self.pool,
                    self.names[command],
                    &*self.shard,
                ])
            })
            .inc();
    }

    pub fn error(&self, command: usize, kind: &str) {
        METRICS
            .errors
            .with_label_values(&[&*self.pool, self.names[command], &*self.shard, kind])
            .inc();
    }
}
