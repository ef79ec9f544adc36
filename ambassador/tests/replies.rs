//! Shard replies are relayed whatever their depth and size: a Lua script's
//! nested tables, an LRANGE over a million elements. A reply over
//! `tessera.max_reply_bytes` fails only the request that asked for it; the
//! shard connection, and every request pipelined on it, carries on.

mod support;

use std::time::Duration;

use support::*;
use tessera_clients::resp::Value;

/// One shard behind the ambassador, on one worker with one connection, so
/// that every client shares the one shard connection.
fn setup(extra: &str) -> (RedisServer, Proc, u16, tempfile::TempDir) {
    let shard = redis();
    let admin = free_port();
    let text = |port| {
        format!("r:\n  listen: 127.0.0.1:{port}\n  redis: true\n  timeout: 5000\n{extra}")
            + &servers([shard.port], Some("shard"))
    };
    let admin_addr = format!("127.0.0.1:{admin}");
    let (amb, dir) = start_pool(text, &["--threads", "1", "--admin", &admin_addr]);
    (shard, amb, admin, dir)
}

/// Returns arrays nested `ARGV[1]` deep, `{{{1, 'leaf'}, 1}, 2}`...
const NESTED: &str = "local v = {1, 'leaf'} \
    for i = 1, tonumber(ARGV[1]) - 1 do v = {v, i} end \
    return v";

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[test]
fn nested_eval_replies_are_relayed_intact() {
    let (shard, amb, _, _dir) = setup("");
    let mut direct = Client::connect(shard.port);
    let mut c = Client::connect(amb.port);
    for levels in ["20", "100"] {
        let cmd = ["EVAL", NESTED, "1", "k", levels];
        let mut out = bytes::BytesMut::new();
        tessera_clients::resp::encode_command(&cmd, &mut out);
        direct.send_raw(&out);
        let want = direct.read_raw();
        c.send_raw(&out);
        let got = c.read_raw();
        assert_eq!(got, want, "{levels} levels: the bytes Redis sent");
        assert!(!got.starts_with(b"-"), "{levels} levels: {got:?}");
        let mut c2 = Client::connect(amb.port);
        assert_eq!(depth(&c2.cmd(&cmd)), levels.parse::<usize>().unwrap());
    }
}

#[test]
fn a_million_element_lrange_is_relayed_intact_and_a_concurrent_pipeline_is_unaffected() {
    let (shard, amb, _, _dir) = setup("");
    let n = 1_100_000;
    let mut c = Client::connect(amb.port);
    for batch in 0..n / 10_000 {
        let mut cmd = vec!["RPUSH".to_owned(), "big".to_owned()];
        cmd.extend((0..10_000).map(|i| format!("element-{}", batch * 10_000 + i)));
        assert!(matches!(c.cmd(&cmd), Value::Integer(_)));
    }
    // Another client pipelines on the same shard connection meanwhile.
    let port = amb.port;
    let pipeline = std::thread::spawn(move || {
        let mut p = Client::connect(port);
        for round in 0..20 {
            let mut cmds = Vec::new();
            for i in 0..250 {
                let k = format!("p{round}-{i}").into_bytes();
                cmds.push(vec![b"SET".to_vec(), k.clone(), k.clone()]);
                cmds.push(vec![b"GET".to_vec(), k]);
            }
            let replies = p.pipeline(&cmds);
            for (i, pair) in replies.chunks(2).enumerate() {
                assert_eq!(pair[0], ok(), "round {round} SET {i}");
                assert_eq!(
                    pair[1],
                    bulk(format!("p{round}-{i}")),
                    "round {round} GET {i}"
                );
            }
        }
    });
    let mut direct = Client::connect(shard.port);
    direct.set_read_timeout(Duration::from_secs(60));
    c.set_read_timeout(Duration::from_secs(60));
    let lrange = b"*4\r\n$6\r\nLRANGE\r\n$3\r\nbig\r\n$1\r\n0\r\n$2\r\n-1\r\n";
    for _ in 0..2 {
        c.send_raw(lrange);
        let got = c.read_raw();
        direct.send_raw(lrange);
        let want = direct.read_raw();
        assert!(
            got.starts_with(format!("*{n}\r\n").as_bytes()),
            "{:?}",
            &got[..40.min(got.len())]
        );
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the relayed LRANGE differs from Redis's own");
    }
    pipeline
        .join()
        .expect("the concurrent pipeline got every reply right");
    assert_eq!(c.cmd(&["LLEN", "big"]), Value::Integer(n as i64));
}

fn connections_received(direct: &mut Client) -> i64 {
    let Value::Bulk(info) = direct.cmd(&["INFO", "stats"]) else {
        panic!("INFO stats")
    };
    String::from_utf8_lossy(&info)
        .lines()
        .find_map(|l| {
            l.strip_prefix("total_connections_received:")?
                .trim()
                .parse()
                .ok()
        })
        .expect("total_connections_received")
}

#[test]
fn a_reply_over_max_reply_bytes_fails_only_its_own_request() {
    let (shard, amb, admin, _dir) = setup("  tessera:\n    max_reply_bytes: 100000\n");
    let mut c = Client::connect(amb.port);
    let mut cmd = vec!["RPUSH".to_owned(), "big".to_owned()];
    cmd.extend((0..20_000).map(|i| format!("{i:08}")));
    assert_eq!(c.cmd(&cmd), Value::Integer(20_000));
    let mut direct = Client::connect(shard.port);
    let before = connections_received(&mut direct);
    // One pipeline: the oversized reply sits between two small ones, and
    // a second client's pipeline runs on the same shard connection.
    let port = amb.port;
    let other = std::thread::spawn(move || {
        let mut p = Client::connect(port);
        let cmds: Vec<Vec<Vec<u8>>> = (0..2000)
            .map(|i| vec![b"INCR".to_vec(), format!("n{}", i % 7).into_bytes()])
            .collect();
        for r in p.pipeline(&cmds) {
            assert!(matches!(r, Value::Integer(_)), "{r:?}");
        }
    });
    let replies = c.pipeline(&[
        vec![b"SET".to_vec(), b"a".to_vec(), b"1".to_vec()],
        vec![
            b"LRANGE".to_vec(),
            b"big".to_vec(),
            b"0".to_vec(),
            b"-1".to_vec(),
        ],
        vec![b"GET".to_vec(), b"a".to_vec()],
        vec![
            b"LRANGE".to_vec(),
            b"big".to_vec(),
            b"0".to_vec(),
            b"9".to_vec(),
        ],
    ]);
    assert_eq!(replies[0], ok());
    let Value::Error(e) = &replies[1] else {
        panic!("an oversized reply was relayed: {:?}", replies[1])
    };
    assert_eq!(
        String::from_utf8_lossy(e),
        "ERR the reply of shard shard-0 is larger than max_reply_bytes (100000 bytes)"
    );
    assert_eq!(replies[2], bulk("1"));
    assert!(matches!(&replies[3], Value::Array(items) if items.len() == 10));
    other.join().unwrap();
    // The shard connection was kept: only our INFO connection is new.
    assert_eq!(connections_received(&mut direct), before);
    let metrics = http_get(admin, "/metrics");
    assert!(
        metrics.contains("tessera_ambassador_errors_total{command=\"lrange\",kind=\"reply_too_large\",pool=\"r\",shard=\"shard-0\"} 1"),
        "{metrics}"
    );
}
