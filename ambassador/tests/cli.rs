//! `--check` from the command line.

mod support;

use std::process::Command;

use support::*;

#[test]
fn check_prints_problems_with_line_numbers_and_fails() {
    let dir = tempdir();
    let path = dir.path().join("pool.yml");
    write(
        &path,
        "alpha:\n  listen: 127.0.0.1:22121\n  hash: fnv1a_65\n  servers:\n   - 127.0.0.1:6379:1\n   - 127.0.0.1:6380\n",
    );
    let out = Command::new(ambassador_bin())
        .arg("--check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let p = path.display();
    assert!(
        stderr.contains(&format!(
            "{p}:3: pool \"alpha\": hash: unknown hash function \"fnv1a_65\""
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{p}:6: pool \"alpha\": server \"127.0.0.1:6380\"")),
        "{stderr}"
    );

    write(
        &path,
        "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  servers:\n   - 127.0.0.1:6379:1 a\n",
    );
    let out = Command::new(ambassador_bin())
        .arg("--check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}
