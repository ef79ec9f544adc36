//! The adapter survives what production does to it: signals (logrotate's
//! SIGHUP included), running out of file descriptors, slow clients. The
//! checks are the ones every Tessera binary passes (tessera-telemetry's
//! testkit); `/healthz` is the adapter's own, so no engine is needed.

tessera_telemetry::hardening_tests!(
    env!("CARGO_BIN_EXE_tessera-adapter"),
    engine = "memcached",
    path = "/healthz"
);
