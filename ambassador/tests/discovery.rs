//! `--store ns/name` against a fake Kubernetes API that serves a
//! ShardedStore written by the test, then changes its status.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;
use tessera_ambassador::ring::{Distribution, HashFn, Member, Ring};

#[derive(Default)]
struct State {
    object: Value,
    rv: u64,
    /// (resourceVersion, watch event line)
    events: Vec<(u64, String)>,
    requests: Vec<String>,
}

fn store(rv: u64, shards: &[&Proc]) -> Value {
    let shards: Vec<Value> = shards
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"index": i, "name": format!("cache-{i}"), "primary": format!("cache-{i}-0"), "address": format!("127.0.0.1:{}", s.port), "readyReplicas": 0}))
        .collect();
    json!({
        "apiVersion": "tessera.dev/v1alpha1",
        "kind": "ShardedStore",
        "metadata": {"name": "cache", "namespace": "apps", "resourceVersion": rv.to_string(), "uid": "u-1"},
        "spec": {"engine": "redis", "shards": shards.len(), "hashing": {"function": "fnv1a_64", "distribution": "ketama"}},
        "status": {"shards": shards, "readyShards": shards.len()}
    })
}

/// Serves list and watch for the one object; runs until the test ends.
fn fake_api(state: Arc<Mutex<State>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let state = state.clone();
            std::thread::spawn(move || serve(conn, state));
        }
    });
    port
}

fn serve(mut conn: TcpStream, state: Arc<Mutex<State>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
        }
        let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
        state.lock().unwrap().requests.push(path.clone());
        if !path.starts_with("/apis/tessera.dev/v1alpha1/namespaces/apps/shardedstores") {
            let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            continue;
        }
        if path.contains("watch=true") {
            let from: u64 = path
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("resourceVersion="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            let mut sent = from;
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let new: Vec<(u64, String)> = state
                    .lock()
                    .unwrap()
                    .events
                    .iter()
                    .filter(|(rv, _)| *rv > sent)
                    .cloned()
                    .collect();
                for (rv, line) in new {
                    let chunk = format!("{}\n", line);
                    if conn
                        .write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
                        .is_err()
                    {
                        return;
                    }
                    sent = rv;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = conn.write_all(b"0\r\n\r\n");
            return;
        }
        let body = {
            let s = state.lock().unwrap();
            json!({
                "apiVersion": "tessera.dev/v1alpha1",
                "kind": "ShardedStoreList",
                "metadata": {"resourceVersion": s.rv.to_string()},
                "items": [s.object.clone()]
            })
            .to_string()
        };
        let _ = conn.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
}

fn ring(n: usize) -> Ring {
    let members: Vec<Member> = (0..n)
        .map(|i| Member {
            identity: format!("cache-{i}"),
            weight: 1,
            live: true,
        })
        .collect();
    Ring::new(HashFn::Fnv1a64, Distribution::Ketama, None, &members)
}

fn check_placement(port: u16, shards: &[Proc], ring: &Ring, tag: &str) {
    let mut c = Client::connect(port);
    for i in 0..300 {
        let k = format!("{i}:{tag}");
        assert_eq!(c.cmd(&["SET", &k, tag]), ok());
        let owner = ring.route(k.as_bytes()).unwrap();
        assert_eq!(
            Client::connect(shards[owner].port).cmd(&["GET", &k]),
            bulk(tag),
            "{k}"
        );
    }
}

#[test]
fn routes_to_the_shards_a_sharded_store_publishes_and_follows_changes() {
    let shards: Vec<Proc> = (0..4).map(|_| redis()).collect();
    let first: Vec<&Proc> = shards[..3].iter().collect();
    let state = Arc::new(Mutex::new(State {
        object: store(10, &first),
        rv: 10,
        ..State::default()
    }));
    let api = fake_api(state.clone());
    let dir = tempdir();
    let kubeconfig = dir.path().join("kubeconfig");
    write(
        &kubeconfig,
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{api}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: fake\n    user: u\n    namespace: apps\ncurrent-context: c\n"
        ),
    );
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("ambassador.log")).unwrap();
    let child = Command::new(ambassador_bin())
        .args([
            "--store",
            "apps/cache",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--timeout-ms",
            "2000",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("TESSERA_LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let amb = Proc {
        child,
        port,
        name: "ambassador",
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "no listener; API requests: {:?}; log: {}",
            state.lock().unwrap().requests,
            std::fs::read_to_string(dir.path().join("ambassador.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Only the one object is asked for.
    for path in &state.lock().unwrap().requests {
        assert!(
            path.contains("fieldSelector=metadata.name%3Dcache"),
            "{path}"
        );
    }
    check_placement(amb.port, &shards, &ring(3), "three");

    // The operator adds a shard.
    {
        let mut s = state.lock().unwrap();
        let all: Vec<&Proc> = shards.iter().collect();
        s.object = store(11, &all);
        s.rv = 11;
        let line = json!({"type": "MODIFIED", "object": s.object.clone()}).to_string();
        s.events.push((11, line));
    }
    let four = ring(4);
    let probe = (0..1000)
        .map(|i| format!("{i}:probe"))
        .find(|k| four.route(k.as_bytes()) == Some(3))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = Client::connect(amb.port);
    loop {
        assert_eq!(c.cmd(&["SET", &probe, "p"]), ok());
        if Client::connect(shards[3].port).cmd(&["GET", &probe]) == bulk("p") {
            break;
        }
        assert!(Instant::now() < deadline, "the new shard was never used");
        std::thread::sleep(Duration::from_millis(100));
    }
    check_placement(amb.port, &shards, &four, "four");
}
