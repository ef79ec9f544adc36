//! The operator survives what production does to it, like every Tessera
//! binary (tessera-telemetry's testkit): SIGHUP, SIGUSR1 and SIGUSR2 leave
//! it serving, running out of file descriptors does not spin a core, and a
//! slow-header client on its `/healthz` port is cut off.
//!
//! It runs against the local control plane (`hack/controlplane.sh up`):
//! the operator needs an API server to start, and its accept loop shares
//! descriptors with its watches, which is what production looks like.

use tessera_telemetry::testkit::{self, Guard};

fn serving(port: u16) -> bool {
    testkit::http_ok(port, "/healthz")
}

/// `tessera-operator run` watching `default` without leader election (a
/// lease would add nothing here), under `fd_limit` descriptors if any.
fn start(fd_limit: Option<usize>) -> (Guard, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    // KUBECONFIG comes from `hack/controlplane.sh env`, as for every e2e test.
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "KUBECONFIG is unset: run eval \"$(hack/controlplane.sh env)\" first"
    );
    let guard = testkit::spawn_serving(
        env!("CARGO_BIN_EXE_tessera-operator"),
        &[
            "run",
            "--namespaces",
            "default",
            "--leader-elect",
            "false",
            "--metrics-addr",
            &addr,
        ],
        fd_limit,
        || serving(port),
    );
    (guard, port)
}

tessera_telemetry::hardening_tests!(start, serving);
