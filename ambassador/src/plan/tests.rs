use bytes::{Bytes, BytesMut};
use tessera_clients::memcached::codec as mc;
use tessera_clients::resp::{self, Value};

use super::*;
use crate::config::{Config, PoolConfig};
use crate::redis::{self, Session};
use crate::ring::{Distribution, HashFn, Member};
use crate::{memcache, ring::Ring};

const SERVERS: [&str; 3] = ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"];

fn ring(live: [bool; 3]) -> Ring {
    let members: Vec<Member> = SERVERS
        .iter()
        .zip(live)
        .map(|(s, live)| Member {
            identity: (*s).to_owned(),
            weight: 1,
            live,
        })
        .collect();
    Ring::new(HashFn::Fnv1a64, Distribution::Ketama, None, &members)
}

fn pool(auth: bool) -> PoolConfig {
    let mut yaml = String::from("p:\n  listen: 127.0.0.1:6379\n  redis: true\n");
    if auth {
        yaml.push_str("  redis_auth: sesame\n");
    }
    yaml.push_str("  servers:\n");
    for s in SERVERS {
        yaml.push_str(&format!("   - {s}:1\n"));
    }
    Config::parse(&yaml).expect("valid pool").pools.remove(0)
}

fn redis_plan(args: &[&str], ring: &Ring, config: &PoolConfig, session: &mut Session) -> Plan {
    let mut raw = BytesMut::new();
    resp::encode_command(args, &mut raw);
    let (raw, value) = resp::decode_frame(&mut raw, &redis::limits(1 << 20))
        .unwrap()
        .unwrap();
    redis::plan(raw, value, ring, config, session).expect("a command")
}

fn open() -> Session {
    Session {
        authenticated: true,
    }
}

fn reply_text(plan: &Plan) -> String {
    match plan {
        Plan::Reply(b) | Plan::Close(b) => String::from_utf8_lossy(b).into_owned(),
        _ => panic!("expected a local reply"),
    }
}

fn command_args(frame: &Bytes) -> Vec<String> {
    let mut buf = BytesMut::from(&frame[..]);
    match resp::decode(&mut buf, &resp::Limits::default()) {
        Ok(Some(Value::Array(items))) => items
            .into_iter()
            .map(|v| match v {
                Value::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
                other => panic!("not a bulk string: {other:?}"),
            })
            .collect(),
        other => panic!("not a command: {other:?}"),
    }
}

/// Keys that land on three different shards, so that splits are certain.
fn keys_on_every_shard(ring: &Ring) -> Vec<String> {
    let mut found: [Option<String>; 3] = Default::default();
    for i in 0.. {
        let key = format!("k{i}");
        let shard = ring.route(key.as_bytes()).unwrap();
        found[shard].get_or_insert(key);
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    found.into_iter().map(Option::unwrap).collect()
}

#[test]
fn a_keyed_command_goes_to_the_owner_of_its_key_unchanged() {
    let ring = ring([true; 3]);
    let config = pool(false);
    for key in keys_on_every_shard(&ring) {
        let Plan::One { shard, call } =
            redis_plan(&["SET", &key, "v"], &ring, &config, &mut open())
        else {
            panic!("SET should be forwarded");
        };
        assert_eq!(Some(shard), ring.route(key.as_bytes()));
        assert_eq!(command_args(&call.frame), ["SET", key.as_str(), "v"]);
    }
}

#[test]
fn mget_splits_per_shard_and_remembers_positions() {
    let ring = ring([true; 3]);
    let keys = keys_on_every_shard(&ring);
    // Interleave so that each shard's keys are not contiguous.
    let order = [&keys[0], &keys[1], &keys[2], &keys[0], &keys[2]];
    let mut args = vec!["MGET"];
    args.extend(order.iter().map(|k| k.as_str()));
    let Plan::Split { op, parts, keys: n } = redis_plan(&args, &ring, &pool(false), &mut open())
    else {
        panic!("MGET over three shards should split");
    };
    assert_eq!(op, GatherOp::Mget);
    assert_eq!(n, order.len());
    assert_eq!(parts.len(), 3);
    let mut seen: Vec<u32> = Vec::new();
    for part in &parts {
        let sent = command_args(&part.call.frame);
        assert_eq!(sent[0], "MGET");
        let want: Vec<&str> = part
            .positions
            .iter()
            .map(|&p| order[p as usize].as_str())
            .collect();
        assert_eq!(sent[1..], want);
        for key in &want {
            assert_eq!(ring.route(key.as_bytes()), Some(part.shard));
        }
        seen.extend(&part.positions);
    }
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2, 3, 4], "every key exactly once");
}

#[test]
fn mset_keeps_each_value_with_its_key() {
    let ring = ring([true; 3]);
    let keys = keys_on_every_shard(&ring);
    let args = ["MSET", &keys[0], "a", &keys[1], "b", &keys[2], "c"];
    let Plan::Split { op, parts, keys: n } = redis_plan(&args, &ring, &pool(false), &mut open())
    else {
        panic!("MSET over three shards should split");
    };
    assert_eq!((op, n), (GatherOp::Mset, 3));
    for part in parts {
        let sent = command_args(&part.call.frame);
        let p = part.positions[0] as usize;
        assert_eq!(sent, ["MSET", keys[p].as_str(), ["a", "b", "c"][p]]);
    }
}

#[test]
fn keys_on_one_shard_are_forwarded_without_a_split() {
    let ring = ring([true; 3]);
    let key = &keys_on_every_shard(&ring)[1];
    for (args, op) in [
        (vec!["DEL", key, key], "DEL"),
        (vec!["MGET", key], "MGET"),
        (vec!["MSET", key, "1", key, "2"], "MSET"),
    ] {
        let Plan::One { shard, call } = redis_plan(&args, &ring, &pool(false), &mut open()) else {
            panic!("{op} on one shard should not split");
        };
        assert_eq!(shard, 1);
        assert_eq!(command_args(&call.frame), args);
    }
}

#[test]
fn unroutable_commands_are_refused_by_name() {
    let ring = ring([true; 3]);
    let config = pool(false);
    for (args, want) in [
        (
            vec!["KEYS", "*"],
            "-ERR KEYS is not supported by the ambassador",
        ),
        (vec!["blpop", "q", "0"], "-ERR BLPOP is not supported"),
        (vec!["MULTI"], "-ERR MULTI is not supported"),
        (vec!["SELECT", "3"], "-ERR SELECT to a non-zero database"),
        (
            vec!["NOSUCH"],
            "-ERR unknown or unsupported command 'NOSUCH'",
        ),
        (
            vec!["GET"],
            "-ERR wrong number of arguments for 'get' command",
        ),
        (
            vec!["MSET", "a", "1", "b"],
            "-ERR wrong number of arguments",
        ),
        (
            vec!["EVAL", "return 1", "0"],
            "-ERR EVAL through the ambassador needs",
        ),
    ] {
        let text = reply_text(&redis_plan(&args, &ring, &config, &mut open()));
        assert!(text.starts_with(want), "{args:?}: {text:?}");
    }
    assert_eq!(
        reply_text(&redis_plan(&["PING"], &ring, &config, &mut open())),
        "+PONG\r\n"
    );
    assert!(matches!(
        redis_plan(&["QUIT"], &ring, &config, &mut open()),
        Plan::Close(_)
    ));
}

#[test]
fn no_live_shard_is_an_error_reply_not_a_panic() {
    let ring = ring([false; 3]);
    for args in [vec!["GET", "a"], vec!["MGET", "a", "b"], vec!["DEL", "a"]] {
        let text = reply_text(&redis_plan(&args, &ring, &pool(false), &mut open()));
        assert_eq!(text, "-ERR no live shard to route to\r\n");
    }
}

#[test]
fn auth_gates_everything_but_auth_and_quit() {
    let ring = ring([true; 3]);
    let config = pool(true);
    let mut session = Session {
        authenticated: false,
    };
    let text = reply_text(&redis_plan(&["GET", "a"], &ring, &config, &mut session));
    assert!(text.starts_with("-NOAUTH"), "{text}");
    let text = reply_text(&redis_plan(
        &["AUTH", "wrong"],
        &ring,
        &config,
        &mut session,
    ));
    assert!(text.starts_with("-ERR invalid password"), "{text}");
    assert!(!session.authenticated);
    assert_eq!(
        reply_text(&redis_plan(
            &["AUTH", "sesame"],
            &ring,
            &config,
            &mut session
        )),
        "+OK\r\n"
    );
    assert!(matches!(
        redis_plan(&["GET", "a"], &ring, &config, &mut session),
        Plan::One { .. }
    ));
}

#[test]
fn a_frame_that_is_not_a_command_is_a_client_error() {
    let ring = ring([true; 3]);
    for bad in [&b"*0\r\n"[..], b"*1\r\n:1\r\n", b"+OK\r\n"] {
        let mut buf = BytesMut::from(bad);
        let (raw, value) = resp::decode_frame(&mut buf, &redis::limits(1024))
            .unwrap()
            .unwrap();
        assert!(
            redis::plan(raw, value, &ring, &pool(false), &mut open()).is_err(),
            "{bad:?}"
        );
    }
}

fn mc_plan(line: &str, ring: &Ring) -> Plan {
    let req = mc::parse_request(line.as_bytes(), &memcache::limits(1 << 20))
        .unwrap()
        .unwrap();
    memcache::plan(Bytes::copy_from_slice(line.as_bytes()), &req, ring)
}

#[test]
fn memcached_get_splits_and_storage_follows_its_key() {
    let ring = ring([true; 3]);
    let keys = keys_on_every_shard(&ring);
    let line = format!("gets {} {} {} {}\r\n", keys[2], keys[0], keys[1], keys[2]);
    let Plan::Split { op, parts, keys: n } = mc_plan(&line, &ring) else {
        panic!("gets over three shards should split");
    };
    assert_eq!((op, n), (GatherOp::McGet, 4));
    let lines: Vec<String> = parts
        .iter()
        .map(|p| String::from_utf8_lossy(&p.call.frame).into_owned())
        .collect();
    assert_eq!(
        lines,
        [
            format!("gets {} {}\r\n", keys[2], keys[2]),
            format!("gets {}\r\n", keys[0]),
            format!("gets {}\r\n", keys[1]),
        ]
    );
    assert_eq!(parts[0].positions, [0, 3]);

    let set = format!("set {} 0 0 1 noreply\r\nx\r\n", keys[1]);
    let Plan::One { shard, call } = mc_plan(&set, &ring) else {
        panic!("set should be forwarded");
    };
    assert_eq!(shard, 1);
    assert!(call.noreply);
    assert_eq!(&call.frame[..], set.as_bytes());
}

#[test]
fn memcached_local_answers() {
    let ring = ring([false; 3]);
    assert!(reply_text(&mc_plan("version\r\n", &ring)).starts_with("VERSION tessera-ambassador-"));
    assert_eq!(reply_text(&mc_plan("quit\r\n", &ring)), "");
    assert!(matches!(mc_plan("quit\r\n", &ring), Plan::Close(_)));
    assert_eq!(
        reply_text(&mc_plan("get a\r\n", &ring)),
        "SERVER_ERROR no live shard to route to\r\n"
    );
}
