//! The sidecar survives what production does to it: signals (logrotate's
//! SIGHUP included), running out of file descriptors, slow clients. The
//! checks are the ones every Tessera binary passes (tessera-telemetry's
//! testkit); `/metrics` is the sidecar's own, so no engine is needed.

tessera_telemetry::hardening_tests!(
    env!("CARGO_BIN_EXE_tessera-sidecar"),
    engine = "redis",
    path = "/metrics"
);
