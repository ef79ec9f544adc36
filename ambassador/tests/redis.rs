//! The Redis path against real shards: multi-key commands, local commands,
//! the error rules, pipelining and malformed input.

mod support;

use std::time::Duration;

use support::*;
use tessera_clients::resp::Value;

struct Setup {
    shards: Vec<RedisServer>,
    amb: Proc,
    _dir: tempfile::TempDir,
}

fn setup(extra: &str) -> Setup {
    let shards: Vec<RedisServer> = (0..3).map(|_| redis()).collect();
    let dir = tempdir();
    let port = free_port();
    let text = format!("r:\n  listen: 127.0.0.1:{port}\n  redis: true\n  timeout: 2000\n{extra}")
        + &servers(shards.iter().map(|s| s.port), Some("shard"));
    let path = dir.path().join("pool.yml");
    write(&path, &text);
    let amb = ambassador(&path, port, &[]);
    Setup {
        shards,
        amb,
        _dir: dir,
    }
}

fn direct_get(shards: &[RedisServer], key: &str) -> Vec<Value> {
    shards
        .iter()
        .map(|s| Client::connect(s.port).cmd(&["GET", key]))
        .collect()
}

#[test]
fn mset_and_mget_split_across_shards_and_come_back_in_order() {
    let s = setup("");
    let mut c = Client::connect(s.amb.port);
    let keys: Vec<String> = (0..200).map(|i| format!("{i}:mkey")).collect();
    let mut mset: Vec<String> = vec!["MSET".into()];
    for k in &keys {
        mset.push(k.clone());
        mset.push(format!("value of {k}"));
    }
    assert_eq!(c.cmd(&mset), ok());

    // Each key is on exactly one shard, and every shard got some.
    let mut per_shard = [0usize; 3];
    for k in &keys {
        let found: Vec<usize> = direct_get(&s.shards, k)
            .iter()
            .enumerate()
            .filter(|(_, v)| **v == bulk(format!("value of {k}")))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(found.len(), 1, "{k} on {found:?}");
        per_shard[found[0]] += 1;
    }
    assert!(per_shard.iter().all(|&n| n > 20), "{per_shard:?}");

    // MGET, with missing keys mixed in, equals per-key direct reads in order.
    let mut mget: Vec<String> = vec!["MGET".into()];
    let mut want = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        mget.push(k.clone());
        want.push(bulk(format!("value of {k}")));
        if i % 7 == 0 {
            mget.push(format!("missing:{i}"));
            want.push(Value::Null);
        }
    }
    assert_eq!(c.cmd(&mget), Value::Array(want));

    // Integer replies are summed.
    let mut exists: Vec<String> = vec!["EXISTS".into()];
    exists.extend(keys[..50].iter().cloned());
    exists.push("missing".into());
    exists.push(keys[0].clone());
    assert_eq!(c.cmd(&exists), Value::Integer(51));
    let mut touch: Vec<String> = vec!["TOUCH".into()];
    touch.extend(keys[..10].iter().cloned());
    assert_eq!(c.cmd(&touch), Value::Integer(10));
    let mut del: Vec<String> = vec!["DEL".into()];
    del.extend(keys[..100].iter().cloned());
    del.push("missing".into());
    assert_eq!(c.cmd(&del), Value::Integer(100));
    let mut unlink: Vec<String> = vec!["UNLINK".into()];
    unlink.extend(keys[100..].iter().cloned());
    assert_eq!(c.cmd(&unlink), Value::Integer(100));
    for k in &keys {
        assert!(
            direct_get(&s.shards, k).iter().all(|v| *v == Value::Null),
            "{k} survived"
        );
    }
    assert_eq!(
        c.cmd(&["MSET", "a"]),
        Value::Error("ERR wrong number of arguments for 'mset' command".into())
    );
}

#[test]
fn local_commands_and_unroutable_commands_keep_the_connection() {
    let s = setup("");
    let mut c = Client::connect(s.amb.port);
    assert_eq!(c.cmd(&["PING"]), Value::Simple("PONG".into()));
    assert_eq!(c.cmd(&["ping", "hi"]), bulk("hi"));
    assert_eq!(c.cmd(&["ECHO", "x y"]), bulk("x y"));
    assert_eq!(c.cmd(&["SELECT", "0"]), ok());
    for (args, word) in [
        (vec!["KEYS", "*"], "KEYS"),
        (vec!["SCAN", "0"], "SCAN"),
        (vec!["BLPOP", "l", "0"], "BLPOP"),
        (vec!["SUBSCRIBE", "ch"], "SUBSCRIBE"),
        (vec!["MULTI"], "MULTI"),
        (vec!["EXEC"], "EXEC"),
        (vec!["SELECT", "3"], "SELECT"),
        (vec!["FROBNICATE", "x"], "FROBNICATE"),
    ] {
        let Value::Error(e) = c.cmd(&args) else {
            panic!("{args:?} was not refused")
        };
        let e = String::from_utf8_lossy(&e).into_owned();
        assert!(e.starts_with("ERR ") && e.contains(word), "{args:?}: {e}");
        assert_eq!(
            c.cmd(&["PING"]),
            Value::Simple("PONG".into()),
            "after {args:?}"
        );
    }
    let Value::Error(e) = c.cmd(&["AUTH", "x"]) else {
        panic!()
    };
    assert!(e.starts_with(b"ERR Client sent AUTH"));
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(
        c.cmd(&["EVAL", "return redis.call('GET', KEYS[1])", "1", "k"]),
        bulk("v")
    );
    assert_eq!(c.cmd(&["QUIT"]), ok());
    assert_eq!(c.read(), None, "QUIT closes");
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let s = setup("");
    let mut c = Client::connect(s.amb.port);
    let mut cmds = Vec::new();
    for i in 0..3000 {
        cmds.push(vec![
            b"SET".to_vec(),
            format!("p{i}").into_bytes(),
            format!("{i}").into_bytes(),
        ]);
        cmds.push(vec![b"GET".to_vec(), format!("p{i}").into_bytes()]);
        cmds.push(vec![b"INCR".to_vec(), b"counter".to_vec()]);
        if i % 100 == 0 {
            cmds.push(vec![
                b"MGET".to_vec(),
                format!("p{i}").into_bytes(),
                b"p0".to_vec(),
                b"nope".to_vec(),
            ]);
        }
    }
    let replies = c.pipeline(&cmds);
    let mut it = replies.into_iter();
    for i in 0..3000 {
        assert_eq!(it.next(), Some(ok()));
        assert_eq!(it.next(), Some(bulk(format!("{i}"))));
        assert_eq!(it.next(), Some(Value::Integer(i + 1)));
        if i % 100 == 0 {
            assert_eq!(
                it.next(),
                Some(Value::Array(vec![
                    bulk(format!("{i}")),
                    bulk("0"),
                    Value::Null
                ]))
            );
        }
    }
}

#[test]
fn malformed_input_gets_an_error_and_a_close_and_the_proxy_lives_on() {
    let s = setup("  tessera:\n    max_request_bytes: 65536\n");
    for bad in [
        &b"*1\r\n$-5\r\nhello\r\n"[..],
        b"*1\r\n$2147483648\r\n",
        b"*-7\r\n",
        b"PING\r\n",
        b"*2\r\n*1\r\n$1\r\na\r\n$1\r\nb\r\n",
        b"*1\r\n:12\r\n",
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$70000\r\n",
    ] {
        let mut c = Client::connect(s.amb.port);
        c.send_raw(bad);
        let reply = c.read();
        assert!(
            matches!(&reply, Some(Value::Error(e)) if e.starts_with(b"ERR ")),
            "{:?} -> {reply:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(
            c.read(),
            None,
            "connection closed after {:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // Many SETs whose total exceeds the limit are fine; one request is not.
    let mut c = Client::connect(s.amb.port);
    let big = "x".repeat(60_000);
    for i in 0..5 {
        assert_eq!(c.cmd(&["SET", &format!("big{i}"), &big]), ok());
    }
    let mut c = Client::connect(s.amb.port);
    let mut huge: Vec<String> = vec!["MSET".into()];
    for i in 0..10 {
        huge.push(format!("h{i}"));
        huge.push("y".repeat(10_000));
    }
    let Value::Error(e) = c.cmd(&huge) else {
        panic!("oversized request accepted")
    };
    assert!(e.starts_with(b"ERR request larger than 65536"), "{e:?}");
    // Random garbage on many connections never takes the proxy down.
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..100 {
        let mut c = Client::connect(s.amb.port);
        let junk: Vec<u8> = (0..rng.usize(1..200)).map(|_| rng.u8(..)).collect();
        c.send_raw(&junk);
        c.set_read_timeout(Duration::from_millis(200));
        let _ = c.try_read();
    }
    assert_eq!(
        Client::connect(s.amb.port).cmd(&["PING"]),
        Value::Simple("PONG".into())
    );
}

#[test]
fn redis_auth_is_checked_locally_and_sent_to_shards() {
    let shard = redis_with_password("s3cret");
    let dir = tempdir();
    let port = free_port();
    let path = dir.path().join("pool.yml");
    write(
        &path,
        &format!(
            "r:\n  listen: 127.0.0.1:{port}\n  redis: true\n  redis_auth: s3cret\n  servers:\n   - 127.0.0.1:{}:1\n",
            shard.port
        ),
    );
    let amb = ambassador(&path, port, &[]);
    let mut c = Client::connect(amb.port);
    assert_eq!(
        c.cmd(&["GET", "k"]),
        Value::Error("NOAUTH Authentication required.".into())
    );
    assert!(matches!(c.cmd(&["AUTH", "wrong"]), Value::Error(_)));
    assert_eq!(c.cmd(&["AUTH", "s3cret"]), ok());
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v"));
}

/// Each client protocol edge case gets the answer docs/ambassador.md
/// ("Client protocol") decides on: lines that are not RESP arrays get an
/// error at once and a close (Redis skips empty lines and runs inline
/// commands; twemproxy closes without a word); wrong argument counts and
/// unsupported commands get an error and the connection stays (twemproxy
/// closes).
#[test]
fn client_protocol_edge_cases_get_a_clear_error_or_a_close() {
    let s = setup("");
    let closes: [(&[u8], &str); 6] = [
        (b"\r\n", "ERR Protocol error: empty line"),
        (b"\n", "ERR Protocol error: empty line"),
        (
            b"\r\n*1\r\n$4\r\nPING\r\n",
            "ERR Protocol error: empty line",
        ),
        (
            b"PING\r\n",
            "ERR Protocol error: inline commands are not supported",
        ),
        // Refused at its first byte, without waiting for the line to end.
        (
            b"GE",
            "ERR Protocol error: inline commands are not supported",
        ),
        (
            b"*0\r\n",
            "ERR Protocol error: expected an array of bulk strings",
        ),
    ];
    for (input, want) in closes {
        let mut c = Client::connect(s.amb.port);
        c.set_read_timeout(Duration::from_secs(5));
        c.send_raw(input);
        let Some(Value::Error(e)) = c.read() else {
            panic!("{input:?}: no error reply")
        };
        let e = String::from_utf8_lossy(&e).into_owned();
        assert!(e.starts_with(want), "{input:?}: {e}");
        assert_eq!(c.read(), None, "{input:?}: closed after the error");
    }
    let mut c = Client::connect(s.amb.port);
    let stays: [(&[&str], &str); 6] = [
        (&["GET"], "ERR wrong number of arguments for 'get' command"),
        // Forwarded: the shard counts the arguments, as Redis would.
        (
            &["GET", "a", "b"],
            "ERR wrong number of arguments for 'get' command",
        ),
        (
            &["MSET", "a", "1", "b"],
            "ERR wrong number of arguments for 'mset' command",
        ),
        (
            &["EVAL", "return 1", "0"],
            "ERR EVAL through the ambassador needs at least one key",
        ),
        (
            &["KEYS", "*"],
            "ERR KEYS is not supported by the ambassador",
        ),
        (
            &["NOSUCH", "x"],
            "ERR unknown or unsupported command 'NOSUCH'",
        ),
    ];
    for (args, want) in stays {
        let Value::Error(e) = c.cmd(args) else {
            panic!("{args:?} was not refused")
        };
        let e = String::from_utf8_lossy(&e).into_owned();
        assert!(e.starts_with(want), "{args:?}: {e}");
        assert_eq!(c.cmd(&["PING"]), Value::Simple("PONG".into()), "{args:?}");
    }
}
