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

/// The worker threads of a running ambassador, by their thread names.
fn workers(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter(|t| {
            let comm = t.as_ref().unwrap().path().join("comm");
            // Thread names are cut to 15 bytes: "ambassador-work".
            std::fs::read_to_string(comm).is_ok_and(|c| c.starts_with("ambassador-work"))
        })
        .count()
}

#[test]
fn worker_threads_default_to_half_the_cores_and_follow_the_flag() {
    let dir = tempdir();
    let path = dir.path().join("pool.yml");
    let port = free_port();
    // Shard connections are made on first use, so no shard needs to run.
    write(
        &path,
        &format!(
            "alpha:\n  listen: 127.0.0.1:{port}\n  redis: true\n  servers:\n   - 127.0.0.1:1:1\n"
        ),
    );
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for (extra, want) in [
        (&[][..], cores.div_ceil(2)),
        (&["--threads", "3"][..], 3),
        (&["--threads", "0"][..], cores),
    ] {
        let proc = ambassador(&path, port, extra);
        assert_eq!(workers(proc.pid()), want, "{extra:?} on {cores} cores");
        drop(proc);
    }
}
