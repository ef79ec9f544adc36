use super::*;

const GOOD: &str = "\
alpha:
  listen: 127.0.0.1:22121
  hash: fnv1a_64
  hash_tag: \"{}\"
  distribution: ketama
  auto_eject_hosts: true
  redis: true
  redis_auth: secret
  server_retry_timeout: 2000
  server_failure_limit: 1
  timeout: 400
  servers:
   - 127.0.0.1:6379:1 shard-0
   - 127.0.0.1:6380:2 shard-1
  tessera:
    max_request_bytes: 1048576
    max_reply_bytes: 2097152

beta:
  listen: 127.0.0.1:22122
  servers:
   - 10.0.0.1:11211:1
";

#[test]
fn parses_a_twemproxy_file_with_defaults() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.pools.len(), 2);
    let a = &c.pools[0];
    assert_eq!(a.name, "alpha");
    assert_eq!(a.hash_tag, Some(*b"{}"));
    assert_eq!(a.timeout, Some(Duration::from_millis(400)));
    assert_eq!(a.redis_auth.as_deref(), Some("secret"));
    assert_eq!(a.server_failure_limit, 1);
    assert_eq!(a.max_request_bytes, 1 << 20);
    assert_eq!(a.max_reply_bytes, 2 << 20);
    assert_eq!(a.servers[1].weight, 2);
    assert_eq!(a.servers[1].identity(), "shard-1");
    let b = &c.pools[1];
    assert_eq!(b.hash, HashFn::Fnv1a64);
    assert_eq!(b.distribution, Distribution::Ketama);
    assert_eq!(b.timeout, None);
    assert!(!b.redis && !b.auto_eject_hosts);
    assert_eq!(b.server_connections, 1);
    assert_eq!(b.server_retry_timeout, Duration::from_secs(30));
    assert_eq!(b.server_failure_limit, 2);
    assert_eq!(b.servers[0].identity(), "10.0.0.1");
    assert_eq!(b.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
    assert_eq!(b.max_reply_bytes, DEFAULT_MAX_REPLY_BYTES);
}

#[test]
fn refuses_bad_reply_limits() {
    for value in ["100", "-1", "lots"] {
        let want = format!("max_reply_bytes: expected an integer >= 1024, got \"{value}\"");
        let text = format!(
            "a:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:2:1\n  tessera:\n    max_reply_bytes: {value}\n"
        );
        let e = Config::parse(&text).unwrap_err();
        assert!(e.to_string().contains(&want), "{value}: {e}");
        assert_eq!(e.problems[0].line, Some(6), "{value}: {e}");
    }
}

#[test]
fn reports_every_problem_with_its_line() {
    let bad = "\
alpha:
  listen: 127.0.0.1:22121
  hash: fnv9
  distribution: ketama
  hash_tag: \"{\"
  servers:
   - 127.0.0.1:6379:1
   - 127.0.0.1:99999:1
   - 127.0.0.1:6380:0 zero
  bogus: 1
";
    let err = Config::parse(bad).unwrap_err();
    let got: Vec<(Option<usize>, bool)> = err
        .problems
        .iter()
        .map(|p| (p.line, !p.message.is_empty()))
        .collect();
    let lines: Vec<usize> = got.iter().filter_map(|g| g.0).collect();
    assert!(lines.contains(&3), "{err}");
    assert!(lines.contains(&5), "{err}");
    assert!(lines.contains(&8), "{err}");
    assert!(lines.contains(&9), "{err}");
    assert!(lines.contains(&10), "{err}");
    assert!(
        err.to_string().contains("unknown hash function \"fnv9\""),
        "{err}"
    );
    assert!(err.to_string().contains("invalid port"), "{err}");
    assert!(err.to_string().contains("zero weight"), "{err}");
}

#[test]
fn yaml_syntax_errors_carry_the_line() {
    let err = Config::parse("alpha:\n  listen: [\n  servers: x\n").unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert!(err.problems[0].line.is_some());
}

#[test]
fn duplicate_servers_and_listeners_are_rejected() {
    let text = "\
a:
  listen: 127.0.0.1:1
  servers:
   - 127.0.0.1:6379:1
   - 127.0.0.1:6379:1
   - h:1:1 x
   - g:2:1 x
";
    let err = Config::parse(text).unwrap_err().to_string();
    assert_eq!(err.matches("duplicate").count(), 2, "{err}");
    let text = "a:\n  listen: 127.0.0.1:1\n  servers:\n   - h:1:1\nb:\n  listen: 127.0.0.1:1\n  servers:\n   - h:1:1\n";
    let err = Config::parse(text).unwrap_err();
    assert_eq!(err.problems[0].line, Some(6), "{err}");
    assert!(err.to_string().contains("like an earlier pool"), "{err}");
}

#[test]
fn redis_auth_needs_redis_and_listen_is_required() {
    let err = Config::parse("a:\n  redis_auth: x\n  servers:\n   - h:1:1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("only valid for a redis pool"), "{err}");
    assert!(err.contains("listen"), "{err}");
}

#[test]
fn server_lines() {
    let s = parse_server("10.0.0.1:6379:3 redis-0").unwrap();
    assert_eq!(
        (s.host.as_str(), s.port, s.weight, s.name.as_deref()),
        ("10.0.0.1", 6379, 3, Some("redis-0"))
    );
    assert!(parse_server("10.0.0.1:6379").is_err());
    assert!(parse_server("10.0.0.1:x:1").is_err());
    assert!(parse_server("/tmp/sock:1").is_err());
}
