//! Real processes on 127.0.0.1 for the cross-process tests: every child is
//! killed when its handle drops, including when a test panics.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tessera_clients::resp::{self, Value};
pub use tessera_testing::{Memcached, RedisServer};

/// A port nothing listens on right now, never handed out twice in a process
/// (the kernel happily returns the same ephemeral port again).
/// Keys written per pool variant by the nutcracker compatibility tests.
pub const KEYS_PER_POOL: usize = 10_000;
/// Every twemproxy hash function, by its pool-file name.
pub const HASHES: [&str; 12] = [
    "one_at_a_time",
    "md5",
    "crc16",
    "crc32",
    "crc32a",
    "fnv1_64",
    "fnv1a_64",
    "fnv1_32",
    "fnv1a_32",
    "hsieh",
    "murmur",
    "jenkins",
];

pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

pub struct Proc {
    pub child: Child,
    pub port: u16,
    pub name: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on {port} within 10 s");
}

/// A redis-server shard (tessera-testing's launcher, killed on drop).
pub fn redis() -> RedisServer {
    RedisServer::start().expect("redis-server starts (hack/install-test-deps.sh)")
}

/// A redis-server shard that requires `password`.
pub fn redis_with_password(password: &str) -> RedisServer {
    let shard = redis();
    let set = Client::connect(shard.port).cmd(&["CONFIG", "SET", "requirepass", password]);
    assert_eq!(set, ok(), "CONFIG SET requirepass");
    shard
}

/// A memcached shard (tessera-testing's launcher, killed on drop) with room
/// for every key of the compatibility tests at once.
pub fn memcached() -> Memcached {
    Memcached::start_with_memory_mb(64).expect("memcached starts (hack/install-test-deps.sh)")
}

/// Starts nutcracker on `pool_file`; `port` is the first pool's listen port.
pub fn nutcracker(pool_file: &Path, port: u16) -> Proc {
    let stats = free_port();
    let dir = pool_file.parent().unwrap();
    let mut child = Command::new("/usr/sbin/nutcracker")
        .arg("-c")
        .arg(pool_file)
        .args(["-s", &stats.to_string(), "-a", "127.0.0.1"])
        .arg("-o")
        .arg(dir.join("nutcracker.log"))
        .arg("-p")
        .arg(dir.join("nutcracker.pid"))
        .spawn()
        .expect("nutcracker is installed");
    wait_for_port(port, "nutcracker", &mut child);
    Proc {
        child,
        port,
        name: "nutcracker",
    }
}

pub fn ambassador_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tessera-ambassador"))
}

/// Starts the ambassador on `pool_file`; `port` is the first pool's port.
pub fn ambassador(pool_file: &Path, port: u16, extra: &[&str]) -> Proc {
    let log = std::fs::File::create(pool_file.with_extension("ambassador.log")).unwrap();
    let mut child = Command::new(ambassador_bin())
        .arg("--config")
        .arg(pool_file)
        .args(extra)
        .env("TESSERA_LOG_LEVEL", "info")
        .stderr(log)
        .spawn()
        .unwrap();
    wait_for_port(port, "tessera-ambassador", &mut child);
    Proc {
        child,
        port,
        name: "ambassador",
    }
}

/// Writes the pool file `text(port)` for a free `port` into a new
/// directory and starts the ambassador on it with `extra` flags; the
/// directory lives as long as the returned handle.
pub fn start_pool(text: impl FnOnce(u16) -> String, extra: &[&str]) -> (Proc, tempfile::TempDir) {
    let dir = tempdir();
    let port = free_port();
    let path = dir.path().join("pool.yml");
    write(&path, &text(port));
    (ambassador(&path, port, extra), dir)
}

/// A blocking RESP client with a read timeout. Replies are framed as the
/// proxy frames shard replies (any depth, any size).
pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
    framer: resp::ReplyFramer,
}

/// Replies are trusted here: only the depth of the recursive decoder is
/// bounded, far past anything the tests send.
fn reply_limits() -> resp::Limits {
    resp::Limits {
        max_bulk_len: 1 << 40,
        max_array_len: 1 << 40,
        max_depth: 1000,
        max_line_len: 1 << 40,
    }
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: BytesMut::new(),
            framer: resp::ReplyFramer::new(),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one reply as it came; `Ok(None)` when the server closed.
    pub fn try_read_raw(&mut self) -> std::io::Result<Option<bytes::Bytes>> {
        loop {
            if let Some(len) = self.framer.next_frame(&self.buf).unwrap() {
                return Ok(Some(self.buf.split_to(len).freeze()));
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e),
            }
        }
    }

    pub fn try_read(&mut self) -> std::io::Result<Option<Value>> {
        Ok(self.try_read_raw()?.map(|frame| {
            resp::decode(&mut BytesMut::from(&frame[..]), &reply_limits())
                .unwrap()
                .expect("a complete frame")
        }))
    }

    /// Reads one reply; `None` when the server closed the connection.
    pub fn read(&mut self) -> Option<Value> {
        self.try_read()
            .unwrap_or_else(|e| panic!("read failed: {e}"))
    }

    /// Reads one reply's raw bytes; panics when the server closed.
    pub fn read_raw(&mut self) -> bytes::Bytes {
        self.try_read_raw()
            .unwrap_or_else(|e| panic!("read failed: {e}"))
            .expect("connection closed")
    }

    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Value {
        let mut out = BytesMut::new();
        resp::encode_command(args, &mut out);
        self.send_raw(&out);
        self.read().expect("connection closed")
    }

    /// Sends every command, then reads every reply.
    pub fn pipeline(&mut self, commands: &[Vec<Vec<u8>>]) -> Vec<Value> {
        let mut replies = Vec::with_capacity(commands.len());
        for chunk in commands.chunks(500) {
            let mut out = BytesMut::new();
            for c in chunk {
                resp::encode_command(c, &mut out);
            }
            self.send_raw(&out);
            for _ in chunk {
                replies.push(self.read().expect("connection closed"));
            }
        }
        replies
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }
}

pub fn bulk(s: impl AsRef<[u8]>) -> Value {
    Value::Bulk(bytes::Bytes::copy_from_slice(s.as_ref()))
}

pub fn ok() -> Value {
    Value::Simple(bytes::Bytes::from_static(b"OK"))
}

/// A line-oriented memcached client.
pub struct McClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl McClient {
    pub fn connect(port: u16) -> McClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        McClient {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Reads one line, CRLF stripped; `None` on close.
    pub fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Reads a retrieval reply: (key, value) pairs until END.
    pub fn values(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let line = self.line().expect("closed");
            if line == b"END" {
                return out;
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            assert_eq!(parts[0], b"VALUE", "unexpected line {text}");
            let len: usize = std::str::from_utf8(parts[3]).unwrap().parse().unwrap();
            while self.buf.len() < len + 2 {
                assert!(self.fill(), "closed inside a value");
            }
            let data = self.buf[..len].to_vec();
            self.buf.drain(..len + 2);
            out.push((parts[1].to_vec(), data));
        }
    }
}

/// A pool's `servers:` section for shards on `ports`, weight 1, named
/// `<name>-<i>` in order, or unnamed.
pub fn servers(ports: impl IntoIterator<Item = u16>, name: Option<&str>) -> String {
    let mut text = String::from("  servers:\n");
    for (i, port) in ports.into_iter().enumerate() {
        match name {
            Some(name) => text += &format!("   - 127.0.0.1:{port}:1 {name}-{i}\n"),
            None => text += &format!("   - 127.0.0.1:{port}:1\n"),
        }
    }
    text
}

/// A temporary directory holding pool files and logs.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// The body of a GET on 127.0.0.1:`port`.
pub fn http_get(port: u16, path: &str) -> String {
    tessera_testing::http_get(port, path, &[], Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("GET {path} on {port}: {e}"))
        .1
}
