//! Without a reachable control plane, the harness fails loudly and says how
//! to start one (it never skips).
#![forbid(unsafe_code)]

use tessera_e2e::{try_connect, unreachable_message};

#[tokio::test]
async fn unreachable_cluster_is_an_error_that_says_how_to_start_one() {
    // Port 1 on 127.0.0.1: nothing listens there, the connection is refused.
    let path = std::env::temp_dir().join(format!(
        "tessera-e2e-unreachable-{}.kubeconfig",
        std::process::id()
    ));
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: nowhere\n  cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}\n\
         users:\n- name: nobody\n  user: {token: nothing}\ncontexts:\n- name: nowhere\n  context: {cluster: nowhere, user: nobody}\n\
         current-context: nowhere\n",
    )
    .unwrap();
    let kubeconfig = path.to_string_lossy().into_owned();
    let Err(err) = try_connect(&kubeconfig).await else {
        panic!("connected although nothing listens on 127.0.0.1:1");
    };
    let _ = std::fs::remove_file(&path);
    let msg = unreachable_message(&kubeconfig, &err);
    assert!(msg.contains("hack/controlplane.sh up"), "{msg}");
    assert!(msg.contains("make test"), "{msg}");
    assert!(msg.contains(&kubeconfig), "{msg}");
}
