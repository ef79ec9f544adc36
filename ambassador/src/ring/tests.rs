use super::*;

fn members(list: &[(&str, u32)]) -> Vec<Member> {
    list.iter()
        .map(|&(identity, weight)| Member {
            identity: identity.to_owned(),
            weight,
            live: true,
        })
        .collect()
}

fn weighted() -> Vec<Member> {
    members(&[
        ("127.0.0.1:6379", 1),
        ("127.0.0.1:6380", 2),
        ("shard-2", 3),
        ("10.0.0.7", 7),
    ])
}

#[test]
fn ketama_matches_a_c_build_of_the_continuum_with_unequal_weights() {
    // Reference computed in C with twemproxy's md5 and ketama arithmetic:
    // points per server 48, 96, 144, 344 (float flooring loses 8 points).
    let ring = Ring::new(HashFn::Fnv1a64, Distribution::Ketama, None, &weighted());
    assert_eq!(ring.points(), 48 + 96 + 144 + 344);
    assert_eq!(ring.continuum.first(), Some(&(674_680, 2)));
    assert_eq!(ring.continuum.last(), Some(&(4_278_903_695, 3)));
    let want = [
        3, 2, 3, 3, 2, 3, 3, 2, 0, 3, 2, 3, 3, 1, 3, 0, 3, 3, 3, 2, 3, 3, 3, 1, 2, 3, 2, 3, 1, 3,
        3, 3, 2, 2, 3, 3, 3, 1, 3, 0,
    ];
    for (k, want) in want.iter().enumerate() {
        let key = format!("key:{}", k * 7919);
        assert_eq!(ring.route(key.as_bytes()), Some(*want), "{key}");
    }
}

#[test]
fn ketama_gives_160_points_per_equal_weight_server() {
    for n in 1..=9 {
        let list: Vec<_> = (0..n).map(|i| (format!("s{i}"), 1)).collect();
        let ms: Vec<_> = list.iter().map(|(s, w)| (s.as_str(), *w)).collect();
        let ring = Ring::new(HashFn::Fnv1a64, Distribution::Ketama, None, &members(&ms));
        assert_eq!(ring.points(), 160 * n, "{n} servers");
    }
}

#[test]
fn ejected_members_leave_the_ring_and_others_keep_their_keys() {
    let mut ms = members(&[("a", 1), ("b", 1), ("c", 1)]);
    let full = Ring::new(HashFn::Fnv1a64, Distribution::Ketama, None, &ms);
    ms[1].live = false;
    let degraded = Ring::new(HashFn::Fnv1a64, Distribution::Ketama, None, &ms);
    assert_eq!(degraded.points(), 320);
    for i in 0..2000 {
        let key = format!("k{i}");
        let before = full.route(key.as_bytes()).unwrap();
        let after = degraded.route(key.as_bytes()).unwrap();
        assert_ne!(after, 1);
        if before != 1 {
            assert_eq!(before, after, "{key} moved although its server stayed");
        }
    }
    for m in &mut ms {
        m.live = false;
    }
    let dead = Ring::new(HashFn::Fnv1a64, Distribution::Ketama, None, &ms);
    assert_eq!(dead.route(b"x"), None);
}

#[test]
fn modula_is_hash_mod_total_live_weight() {
    // Slots follow nutcracker's name order (length, then bytes), not the
    // order of the file: "b" (weight 2), "c", "aa".
    let ms = members(&[("aa", 1), ("b", 2), ("c", 1)]);
    let ring = Ring::new(HashFn::Crc32a, Distribution::Modula, None, &ms);
    let slots = [1, 1, 2, 0];
    for i in 0..1000 {
        let key = format!("user:{i}");
        let h = HashFn::Crc32a.hash(key.as_bytes());
        assert_eq!(ring.route(key.as_bytes()), Some(slots[h as usize % 4]));
    }
}

#[test]
fn random_uses_only_live_servers_and_all_of_them() {
    let mut ms = members(&[("a", 1), ("b", 1), ("c", 1)]);
    ms[0].live = false;
    let ring = Ring::new(HashFn::Fnv1a64, Distribution::Random, None, &ms);
    let mut seen = [0usize; 3];
    for _ in 0..600 {
        seen[ring.route(b"same-key").unwrap()] += 1;
    }
    assert_eq!(seen[0], 0);
    assert!(seen[1] > 100 && seen[2] > 100, "{seen:?}");
}

#[test]
fn single_server_and_empty_key() {
    let one = Ring::new(
        HashFn::Md5,
        Distribution::Ketama,
        None,
        &members(&[("a", 1)]),
    );
    assert_eq!(one.route(b"anything"), Some(0));
    let ring = Ring::new(
        HashFn::Md5,
        Distribution::Modula,
        None,
        &members(&[("a", 1), ("b", 1), ("c", 1)]),
    );
    assert_eq!(ring.key_hash(b""), 0);
    assert_eq!(ring.route(b""), Some(0));
}

#[test]
fn hash_tags_select_the_first_non_empty_tag() {
    let t = Some(*b"{}");
    assert_eq!(hash_tagged(b"{user1000}.following", t), b"user1000");
    assert_eq!(hash_tagged(b"foo{bar}{zap}", t), b"bar");
    assert_eq!(hash_tagged(b"foo{}{bar}", t), b"foo{}{bar}");
    assert_eq!(hash_tagged(b"foo{bar", t), b"foo{bar");
    assert_eq!(hash_tagged(b"}foo{x}", t), b"x");
    assert_eq!(hash_tagged(b"plain", t), b"plain");
    assert_eq!(hash_tagged(b"{a}", None), b"{a}");
    assert_eq!(hash_tagged(b"a:b:c", Some(*b"::")), b"b");
    let ring = Ring::new(HashFn::Fnv1a64, Distribution::Ketama, t, &weighted());
    for i in 0..500 {
        let a = format!("{{tag{i}}}:one");
        let b = format!("x{{tag{i}}}:two");
        assert_eq!(ring.route(a.as_bytes()), ring.route(b.as_bytes()));
        assert_eq!(
            ring.key_hash(a.as_bytes()),
            HashFn::Fnv1a64.hash(format!("tag{i}").as_bytes())
        );
    }
}

#[test]
fn identities_follow_twemproxy() {
    assert_eq!(server_identity("10.0.0.1", 6379, None), "10.0.0.1:6379");
    assert_eq!(server_identity("10.0.0.1", 11211, None), "10.0.0.1");
    assert_eq!(server_identity("10.0.0.1", 11211, Some("mc-0")), "mc-0");
}

#[test]
fn distribution_names() {
    for d in [
        Distribution::Ketama,
        Distribution::Modula,
        Distribution::Random,
    ] {
        assert_eq!(d.name().parse::<Distribution>(), Ok(d));
    }
    assert!("consistent".parse::<Distribution>().is_err());
}
