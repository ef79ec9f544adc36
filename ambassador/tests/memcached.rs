//! The memcached path: key placement against nutcracker in memcached mode,
//! and the commands through the proxy.

mod support;

use std::collections::HashMap;

use support::*;

/// Printable ASCII and high bytes: memcached keys exclude spaces and
/// control characters.
fn alphabet() -> Vec<u8> {
    (0x21..=0x7e).chain(0x80..=0xff).collect()
}

fn random_key(rng: &mut fastrand::Rng, prefix: &str, alphabet: &[u8], i: usize) -> Vec<u8> {
    let mut k = prefix.as_bytes().to_vec();
    let n = rng.usize(1..30);
    for j in 0..n {
        // Some keys carry a hash tag.
        if i.is_multiple_of(3) && (j == 2 || j == 6) {
            k.push(if j == 2 { b'{' } else { b'}' });
        } else {
            k.push(alphabet[rng.usize(..alphabet.len())]);
        }
    }
    k
}

fn set_all(port: u16, keys: &[Vec<u8>]) {
    let mut c = McClient::connect(port);
    for chunk in keys.chunks(500) {
        let mut out = Vec::new();
        for k in chunk {
            out.extend_from_slice(b"set ");
            out.extend_from_slice(k);
            out.extend_from_slice(b" 0 0 1\r\nv\r\n");
        }
        c.send(&out);
        for k in chunk {
            assert_eq!(
                c.line().unwrap(),
                b"STORED",
                "set {:?}",
                String::from_utf8_lossy(k)
            );
        }
    }
}

/// Which shard holds each key, read directly from every shard.
fn placement(shards: &[Memcached], keys: &[Vec<u8>]) -> HashMap<Vec<u8>, usize> {
    let mut owner = HashMap::new();
    for (i, s) in shards.iter().enumerate() {
        let mut c = McClient::connect(s.port);
        for chunk in keys.chunks(100) {
            let mut line = b"get".to_vec();
            for k in chunk {
                line.push(b' ');
                line.extend_from_slice(k);
            }
            line.extend_from_slice(b"\r\n");
            c.send(&line);
            for (k, _) in c.values() {
                assert!(owner.insert(k, i).is_none(), "key on two shards");
            }
        }
    }
    owner
}

fn flush(shards: &[Memcached]) {
    for s in shards {
        let mut c = McClient::connect(s.port);
        c.send(b"flush_all\r\n");
        assert_eq!(c.line().unwrap(), b"OK");
    }
}

#[test]
fn memcached_keys_land_where_nutcracker_puts_them() {
    let shards: Vec<Memcached> = (0..3).map(|_| memcached()).collect();
    let dir = tempdir();
    let mut text = String::new();
    let mut ports = Vec::new();
    let mut rng = fastrand::Rng::with_seed(11);
    let alphabet = alphabet();
    let mut keys: Vec<Vec<Vec<u8>>> = Vec::new();
    for hash in HASHES {
        for dist in ["ketama", "modula"] {
            for tag in [false, true] {
                for named in [false, true] {
                    let port = free_port();
                    let n = ports.len();
                    text += &format!(
                        "m{n}:\n  listen: 127.0.0.1:{port}\n  hash: {hash}\n  distribution: {dist}\n"
                    );
                    if tag {
                        text += "  hash_tag: \"{}\"\n";
                    }
                    text += &servers(shards.iter().map(|s| s.port), named.then_some("mc"));
                    ports.push(port);
                    let prefix = format!("{n}/");
                    let mut ks: Vec<Vec<u8>> = (0..KEYS_PER_POOL)
                        .map(|i| random_key(&mut rng, &prefix, &alphabet, i))
                        .collect();
                    ks.sort();
                    ks.dedup();
                    keys.push(ks);
                }
            }
        }
    }
    let path = dir.path().join("pool.yml");
    write(&path, &text);
    let all: Vec<Vec<u8>> = keys.iter().flatten().cloned().collect();

    let nut = nutcracker(&path, ports[0]);
    for (port, ks) in ports.iter().zip(&keys) {
        set_all(*port, ks);
    }
    drop(nut);
    let want = placement(&shards, &all);
    assert_eq!(want.len(), all.len());

    flush(&shards);
    let amb = ambassador(&path, ports[0], &[]);
    for (port, ks) in ports.iter().zip(&keys) {
        set_all(*port, ks);
    }
    drop(amb);
    let got = placement(&shards, &all);
    let wrong = want.iter().filter(|(k, s)| got.get(*k) != Some(s)).count();
    assert_eq!(
        wrong,
        0,
        "{wrong} of {} keys placed differently",
        want.len()
    );
}

struct Setup {
    shards: Vec<Memcached>,
    amb: Proc,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let shards: Vec<Memcached> = (0..3).map(|_| memcached()).collect();
    let dir = tempdir();
    let port = free_port();
    let text = format!(
        "m:\n  listen: 127.0.0.1:{port}\n  timeout: 2000\n  tessera:\n    max_request_bytes: 100000\n"
    ) + &servers(shards.iter().map(|s| s.port), Some("mc"));
    let path = dir.path().join("pool.yml");
    write(&path, &text);
    let amb = ambassador(&path, port, &[]);
    Setup {
        shards,
        amb,
        _dir: dir,
    }
}

#[test]
fn commands_through_the_proxy() {
    let s = setup();
    let mut c = McClient::connect(s.amb.port);
    let keys: Vec<String> = (0..100).map(|i| format!("{i}:mc")).collect();
    for k in &keys {
        c.send(format!("set {k} 7 0 {}\r\n{k}!\r\n", k.len() + 1).as_bytes());
        assert_eq!(c.line().unwrap(), b"STORED");
    }
    // Every shard holds some of the keys.
    let placed = {
        let mut n = [0usize; 3];
        for (i, shard) in s.shards.iter().enumerate() {
            let mut d = McClient::connect(shard.port);
            d.send(format!("get {}\r\n", keys.join(" ")).as_bytes());
            n[i] = d.values().len();
        }
        n
    };
    assert_eq!(placed.iter().sum::<usize>(), 100);
    assert!(placed.iter().filter(|&&n| n > 0).count() >= 2, "{placed:?}");

    // A multi-key get is split per shard and merged: every hit comes back.
    c.send(format!("get {} nope\r\n", keys.join(" ")).as_bytes());
    let mut got: Vec<(Vec<u8>, Vec<u8>)> = c.values();
    got.sort();
    let mut want: Vec<(Vec<u8>, Vec<u8>)> = keys
        .iter()
        .map(|k| (k.clone().into_bytes(), format!("{k}!").into_bytes()))
        .collect();
    want.sort();
    assert_eq!(got, want);

    c.send(b"gets 0:mc\r\n");
    let line = c.line().unwrap();
    let cas: u64 = String::from_utf8(line.clone())
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        line.starts_with(b"VALUE 0:mc 7 5 "),
        "{:?}",
        String::from_utf8_lossy(&line)
    );
    assert_eq!(c.line().unwrap(), b"0:mc!");
    assert_eq!(c.line().unwrap(), b"END");
    c.send(format!("cas 0:mc 0 0 1 {cas}\r\nz\r\ncas 0:mc 0 0 1 {cas}\r\ny\r\n").as_bytes());
    assert_eq!(c.line().unwrap(), b"STORED");
    assert_eq!(c.line().unwrap(), b"EXISTS");
    c.send(b"add 0:mc 0 0 1\r\nq\r\nreplace nope 0 0 1\r\nq\r\nappend 0:mc 0 0 2\r\nab\r\nprepend 0:mc 0 0 2\r\nyx\r\n");
    for want in [&b"NOT_STORED"[..], b"NOT_STORED", b"STORED", b"STORED"] {
        assert_eq!(c.line().unwrap(), want);
    }
    c.send(b"get 0:mc\r\n");
    assert_eq!(c.values(), vec![(b"0:mc".to_vec(), b"yxzab".to_vec())]);
    c.send(b"set n 0 0 1\r\n5\r\nincr n 10\r\ndecr n 3\r\ntouch n 100\r\ndelete n\r\ndelete n\r\nincr n 1\r\n");
    for want in [
        &b"STORED"[..],
        b"15",
        b"12",
        b"TOUCHED",
        b"DELETED",
        b"NOT_FOUND",
        b"NOT_FOUND",
    ] {
        assert_eq!(c.line().unwrap(), want);
    }
    // noreply: nothing comes back, and the next reply is the next command's.
    c.send(b"set q 0 0 1 noreply\r\n1\r\nincr q 1 noreply\r\ndelete nope noreply\r\nget q\r\n");
    assert_eq!(c.values(), vec![(b"q".to_vec(), b"2".to_vec())]);
    c.send(b"version\r\n");
    assert!(c.line().unwrap().starts_with(b"VERSION "));
    c.send(b"quit\r\n");
    assert_eq!(c.line(), None);
}

#[test]
fn malformed_memcached_input_is_refused_and_the_proxy_lives_on() {
    let s = setup();
    for (bad, reply) in [
        (&b"stats\r\n"[..], &b"ERROR"[..]),
        (b"set k 0 0 -1\r\n", b"CLIENT_ERROR"),
        (b"set k 0 0 2147483648\r\n", b"CLIENT_ERROR"),
        (b"set k 0 0 1\r\nxyz\r\n", b"CLIENT_ERROR"),
        (b"set k 0 0 200000\r\n", b"CLIENT_ERROR"),
    ] {
        let mut c = McClient::connect(s.amb.port);
        c.send(bad);
        let line = c.line().unwrap();
        assert!(
            line.starts_with(reply),
            "{:?} -> {:?}",
            String::from_utf8_lossy(bad),
            String::from_utf8_lossy(&line)
        );
        assert_eq!(c.line(), None);
    }
    let mut c = McClient::connect(s.amb.port);
    c.send(b"set k 0 0 1\r\nv\r\n");
    assert_eq!(c.line().unwrap(), b"STORED");
}
