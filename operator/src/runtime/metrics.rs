//! Prometheus metrics of the operator, in their own registry.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles per kind and result (`success`, `invalid`, `error`).
    pub reconciles: IntCounterVec,
    /// Reconcile duration per kind.
    pub duration: HistogramVec,
    /// Failed reconciles and invalid specs, per kind and reason.
    pub errors: IntCounterVec,
    /// Writes to the API server issued by reconciles, per kind, verb and resource.
    pub writes: IntCounterVec,
    /// Reads from the API server issued by reconciles (watches excluded).
    pub reads: IntCounterVec,
    /// 1 while this process holds the leader Lease.
    pub leader: IntGauge,
    /// Watches opened, per resource: one per watched namespace, whatever
    /// the number of kinds (their controllers share them).
    pub watches: IntGaugeVec,
    /// Resources that could not be decoded and were skipped, per kind.
    pub decode_errors: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "tessera_operator_reconciles_total",
                "Reconciles, by kind and result.",
            ),
            &["kind", "result"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tessera_operator_reconcile_duration_seconds",
                "Duration of reconciles, by kind.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["kind"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "tessera_operator_reconcile_errors_total",
                "Failed reconciles and invalid specs, by kind and reason.",
            ),
            &["kind", "reason"],
        )
        .expect("valid metric");
        let writes = IntCounterVec::new(
            Opts::new(
                "tessera_operator_api_writes_total",
                "Writes to the API server issued by reconciles, by kind, verb and resource.",
            ),
            &["kind", "verb", "resource"],
        )
        .expect("valid metric");
        let reads = IntCounterVec::new(
            Opts::new(
                "tessera_operator_api_reads_total",
                "Reads from the API server issued by reconciles (watches excluded).",
            ),
            &["kind", "verb", "resource"],
        )
        .expect("valid metric");
        let leader = IntGauge::new(
            "tessera_operator_leader",
            "1 while this process holds the leader Lease.",
        )
        .expect("valid metric");
        let watches = IntGaugeVec::new(
            Opts::new(
                "tessera_operator_watches",
                "Watches opened, by resource (shared by every kind).",
            ),
            &["resource"],
        )
        .expect("valid metric");
        let decode_errors = IntCounterVec::new(
            Opts::new(
                "tessera_operator_decode_errors_total",
                "Resources that could not be decoded and were skipped, by kind.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(watches.clone()))
            .expect("unique metric");
        for c in [&reconciles, &errors, &writes, &reads, &decode_errors] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        registry
            .register(Box::new(duration.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(leader.clone()))
            .expect("unique metric");
        Metrics {
            registry,
            reconciles,
            duration,
            errors,
            writes,
            reads,
            leader,
            watches,
            decode_errors,
        }
    }

    pub fn watch_opened(&self, resource: &str) {
        self.watches.with_label_values(&[resource]).inc();
    }

    /// The registry, for metrics defined elsewhere (the webhook's).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn write(&self, kind: &str, verb: &str, resource: &str) {
        self.writes.with_label_values(&[kind, verb, resource]).inc();
    }

    pub fn read(&self, kind: &str, verb: &str, resource: &str) {
        self.reads.with_label_values(&[kind, verb, resource]).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
