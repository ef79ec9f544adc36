//! The sidecar's own Prometheus metrics.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::checks::{Kind, Verdict};

pub struct Metrics {
    registry: Registry,
    engine: &'static str,
    results: IntCounterVec,
    duration: HistogramVec,
    last_success: GaugeVec,
    up: IntGaugeVec,
    kafka_urp: Option<IntGauge>,
}

impl Metrics {
    pub fn new(engine: &'static str) -> Metrics {
        let registry = Registry::new();
        let results = IntCounterVec::new(
            Opts::new(
                "tessera_sidecar_probes_total",
                "Checks run against the engine, by check and result (success, or the failure cause).",
            ),
            &["engine", "check", "result"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tessera_sidecar_probe_duration_seconds",
                "Time one check took, bounded by the probe timeout.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            &["engine", "check"],
        )
        .expect("valid metric");
        let last_success = GaugeVec::new(
            Opts::new(
                "tessera_sidecar_last_success_timestamp_seconds",
                "Unix time of the last successful check.",
            ),
            &["engine", "check"],
        )
        .expect("valid metric");
        let up = IntGaugeVec::new(
            Opts::new(
                "tessera_sidecar_check_ok",
                "1 when the last check passed, else 0.",
            ),
            &["engine", "check"],
        )
        .expect("valid metric");
        let build = IntGaugeVec::new(
            Opts::new(
                "tessera_sidecar_build_info",
                "Always 1; the sidecar version.",
            ),
            &["version"],
        )
        .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for c in [
            Box::new(results.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(last_success.clone()),
            Box::new(up.clone()),
            Box::new(build),
        ] {
            registry.register(c).expect("unique metric");
        }
        let kafka_urp = (engine == "kafka").then(|| {
            let g = IntGauge::new(
                "tessera_sidecar_kafka_under_replicated_partitions",
                "Partitions led by this broker with fewer in-sync replicas than replicas (not a readiness condition).",
            )
            .expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        });
        Metrics {
            registry,
            engine,
            results,
            duration,
            last_success,
            up,
            kafka_urp,
        }
    }

    pub fn record(&self, kind: Kind, v: &Verdict, took: Duration, urp: Option<i64>) {
        let labels = [self.engine, kind.as_str()];
        let result = if v.ok { "success" } else { v.cause };
        self.results
            .with_label_values(&[self.engine, kind.as_str(), result])
            .inc();
        self.duration
            .with_label_values(&labels)
            .observe(took.as_secs_f64());
        self.up.with_label_values(&labels).set(i64::from(v.ok));
        if v.ok {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            self.last_success
                .with_label_values(&labels)
                .set(now.as_secs_f64());
        }
        if let (Some(g), Some(n)) = (&self.kafka_urp, urp) {
            g.set(n);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
