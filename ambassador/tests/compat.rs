//! Key placement against nutcracker itself: the same pool file, real Redis
//! shards, 10,000 random keys per pool, every hash function × ketama/modula
//! × with/without hash tag × with/without named servers. Each shard is read
//! directly to see where every key landed.

mod support;

use std::collections::HashMap;
use std::path::Path;

use support::*;
use tessera_clients::resp::Value;

struct PoolSpec {
    port: u16,
    prefix: String,
}

/// Random keys with bytes from `alphabet`, half of them with hash tags
/// (some empty, some unclosed).
fn keys(rng: &mut fastrand::Rng, prefix: &str, alphabet: &[u8]) -> Vec<Vec<u8>> {
    fn random(rng: &mut fastrand::Rng, alphabet: &[u8], n: usize, k: &mut Vec<u8>) {
        for _ in 0..n {
            k.push(alphabet[rng.usize(..alphabet.len())]);
        }
    }
    (0..KEYS_PER_POOL)
        .map(|i| {
            let mut k = prefix.as_bytes().to_vec();
            match i % 4 {
                0 | 1 => {
                    let n = rng.usize(1..40);
                    random(rng, alphabet, n, &mut k);
                }
                2 => {
                    let (a, b, c) = (rng.usize(0..5), rng.usize(0..3), rng.usize(0..8));
                    random(rng, alphabet, a, &mut k);
                    k.push(b'{');
                    random(rng, alphabet, b, &mut k);
                    k.push(b'}');
                    random(rng, alphabet, c, &mut k);
                }
                _ => {
                    let (a, b) = (rng.usize(1..10), rng.usize(1..10));
                    k.extend_from_slice(b"{}");
                    random(rng, alphabet, a, &mut k);
                    k.push(b'{');
                    random(rng, alphabet, b, &mut k);
                }
            }
            k
        })
        .collect()
}

/// Every key held by each shard, read directly.
fn placement(shards: &[RedisServer]) -> HashMap<Vec<u8>, usize> {
    let mut owner = HashMap::new();
    for (i, s) in shards.iter().enumerate() {
        let Value::Array(keys) = Client::connect(s.port).cmd(&["KEYS", "*"]) else {
            panic!("KEYS failed");
        };
        for k in keys {
            let Value::Bulk(k) = k else {
                panic!("not a key")
            };
            assert!(owner.insert(k.to_vec(), i).is_none(), "key on two shards");
        }
    }
    owner
}

fn flush(shards: &[RedisServer]) {
    for s in shards {
        assert_eq!(Client::connect(s.port).cmd(&["FLUSHALL"]), ok());
    }
}

fn set_all(pools: &[PoolSpec], keys: &[Vec<Vec<u8>>]) {
    for (pool, keys) in pools.iter().zip(keys) {
        let mut c = Client::connect(pool.port);
        let cmds: Vec<Vec<Vec<u8>>> = keys
            .iter()
            .map(|k| vec![b"SET".to_vec(), k.clone(), b"v".to_vec()])
            .collect();
        for (k, r) in keys.iter().zip(c.pipeline(&cmds)) {
            assert_eq!(r, ok(), "SET {k:?} on pool {}", pool.prefix);
        }
    }
}

fn pool_file(shards: &[RedisServer], dir: &Path) -> (std::path::PathBuf, Vec<PoolSpec>) {
    let mut text = String::new();
    let mut pools = Vec::new();
    for hash in HASHES {
        for dist in ["ketama", "modula"] {
            for tag in [false, true] {
                for named in [false, true] {
                    let port = free_port();
                    let prefix = format!("{}/", pools.len());
                    text += &format!(
                        "p{}_{hash}_{dist}_{tag}_{named}:\n  listen: 127.0.0.1:{port}\n  hash: {hash}\n  distribution: {dist}\n  redis: true\n",
                        pools.len()
                    );
                    if tag {
                        text += "  hash_tag: \"{}\"\n";
                    }
                    text += &servers(shards.iter().map(|s| s.port), named.then_some("shard"));
                    pools.push(PoolSpec { port, prefix });
                }
            }
        }
    }
    let path = dir.join("pool.yml");
    write(&path, &text);
    (path, pools)
}

#[test]
fn redis_keys_land_where_nutcracker_puts_them() {
    let shards: Vec<RedisServer> = (0..3).map(|_| redis()).collect();
    let dir = tempdir();
    let (path, pools) = pool_file(&shards, dir.path());
    let mut rng = fastrand::Rng::with_seed(7);
    let alphabet: Vec<u8> = (0..=255).collect();
    let keys: Vec<Vec<Vec<u8>>> = pools
        .iter()
        .map(|p| keys(&mut rng, &p.prefix, &alphabet))
        .collect();

    let nut = nutcracker(&path, pools[0].port);
    set_all(&pools, &keys);
    drop(nut);
    let want = placement(&shards);
    assert_eq!(want.len(), pools.len() * KEYS_PER_POOL - duplicates(&keys));
    for i in 0..3 {
        assert!(
            want.values().filter(|&&s| s == i).count() > want.len() / 10,
            "shard {i} nearly empty"
        );
    }

    flush(&shards);
    let amb = ambassador(&path, pools[0].port, &[]);
    set_all(&pools, &keys);
    drop(amb);
    let got = placement(&shards);
    let mut wrong: Vec<String> = want
        .iter()
        .filter(|(k, s)| got.get(*k) != Some(s))
        .map(|(k, s)| {
            format!(
                "{:?}: nutcracker {s}, ambassador {:?}",
                String::from_utf8_lossy(k),
                got.get(k)
            )
        })
        .collect();
    wrong.sort();
    assert!(
        wrong.is_empty(),
        "{} keys placed differently, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    assert_eq!(got.len(), want.len());
}

fn duplicates(keys: &[Vec<Vec<u8>>]) -> usize {
    let all: Vec<&Vec<u8>> = keys.iter().flatten().collect();
    let unique: std::collections::HashSet<&Vec<u8>> = all.iter().copied().collect();
    all.len() - unique.len()
}

#[test]
fn random_distribution_spreads_keys_through_both_proxies() {
    let shards: Vec<RedisServer> = (0..3).map(|_| redis()).collect();
    let dir = tempdir();
    let port = free_port();
    let text = format!("r:\n  listen: 127.0.0.1:{port}\n  distribution: random\n  redis: true\n")
        + &servers(shards.iter().map(|s| s.port), None);
    let path = dir.path().join("random.yml");
    write(&path, &text);
    let pools = [PoolSpec {
        port,
        prefix: "r".into(),
    }];
    let keys: Vec<Vec<Vec<u8>>> = vec![(0..3000).map(|i| format!("k{i}").into_bytes()).collect()];
    for proxy in ["nutcracker", "ambassador"] {
        flush(&shards);
        let p = if proxy == "nutcracker" {
            nutcracker(&path, port)
        } else {
            ambassador(&path, port, &[])
        };
        set_all(&pools, &keys);
        let placed = placement(&shards);
        assert_eq!(placed.len(), 3000, "{proxy}");
        for i in 0..3 {
            let n = placed.values().filter(|&&s| s == i).count();
            assert!(
                (700..1300).contains(&n),
                "{proxy}: shard {i} got {n} of 3000"
            );
        }
        // A read goes to a random shard too, so about a third find the value.
        let mut c = Client::connect(port);
        let gets: Vec<Vec<Vec<u8>>> = keys[0]
            .iter()
            .map(|k| vec![b"GET".to_vec(), k.clone()])
            .collect();
        let found = c
            .pipeline(&gets)
            .iter()
            .filter(|v| **v == bulk("v"))
            .count();
        assert!(
            (700..1300).contains(&found),
            "{proxy}: {found} of 3000 reads found their write"
        );
        drop(p);
    }
}
