//! Pipelined, multiplexed connections to one shard.
//!
//! Each of the shard's `server_connections` connections is one task that
//! batches every queued request into a single write and matches replies to
//! requests in order. A request whose shard sends nothing for `timeout`
//! fails the connection: every request in flight on it gets an error and
//! the next request reconnects, as in twemproxy.

pub mod replies;
pub mod service;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prometheus::Histogram;
use tessera_clients::resp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::UpstreamError;
use replies::{Outcome, Replies};

/// The outcome of one forwarded request: the raw reply frame.
pub type Reply = Result<Bytes, UpstreamError>;

/// How to find the end of the reply to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Resp,
    McLine,
    McRetrieval,
}

/// A request on its way to a shard. `reply` is `None` for memcached
/// `noreply` requests, which get no answer.
pub struct Request {
    pub frame: Bytes,
    pub kind: ReplyKind,
    pub reply: Option<oneshot::Sender<Reply>>,
}

/// Consecutive-failure accounting for auto-ejection.
pub struct Health {
    failures: AtomicU32,
    limit: u32,
    /// Told the shard's id when it reaches the limit; `None` without
    /// `auto_eject_hosts`.
    eject: Option<mpsc::UnboundedSender<u64>>,
    id: u64,
}

impl Health {
    pub fn new(id: u64, limit: u32, eject: Option<mpsc::UnboundedSender<u64>>) -> Self {
        Health {
            failures: AtomicU32::new(0),
            limit: limit.max(1),
            eject,
            id,
        }
    }

    pub fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    pub fn failure(&self) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.limit
            && let Some(eject) = &self.eject
        {
            self.failures.store(0, Ordering::Relaxed);
            let _ = eject.send(self.id);
        }
    }

    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// What a shard's connections need to know.
pub struct Settings {
    pub shard: Arc<str>,
    pub addr: String,
    pub timeout: Option<Duration>,
    pub connections: usize,
    /// Sent as `AUTH` on every new Redis connection.
    pub auth: Option<String>,
    /// Selected on every new Redis connection when non-zero.
    pub db: u32,
    /// Largest reply relayed (`tessera.max_reply_bytes`).
    pub max_reply_bytes: usize,
    pub latency: Histogram,
    pub health: Arc<Health>,
}

/// A handle to a shard's connections; cheap to clone. The connection tasks
/// end once every handle is gone and their in-flight requests are answered.
#[derive(Clone)]
pub struct Upstream {
    /// `per_worker` connections for each worker, worker-major.
    senders: Arc<[mpsc::Sender<Request>]>,
    per_worker: usize,
    next: Arc<AtomicUsize>,
    shard: Arc<str>,
}

/// Requests queued per connection before senders wait.
const QUEUE: usize = 4096;
/// At most this many scheduler rounds gather requests into one write.
const GATHER_ROUNDS: u32 = 8;
/// Stop taking requests while this much is waiting to be written.
const WRITE_HIGH_WATER: usize = 256 * 1024;

impl Upstream {
    /// Starts the shard's connection tasks, `connections` on every worker
    /// (they connect lazily).
    pub fn spawn(settings: Settings) -> Upstream {
        let settings = Arc::new(settings);
        let per_worker = settings.connections.max(1);
        let workers = crate::workers::handles();
        let mut senders = Vec::new();
        let mut start = |spawn: &dyn Fn(mpsc::Receiver<Request>)| {
            for _ in 0..per_worker {
                let (tx, rx) = mpsc::channel(QUEUE);
                spawn(rx);
                senders.push(tx);
            }
        };
        if workers.is_empty() {
            start(&|rx| {
                tokio::spawn(run(rx, settings.clone()));
            });
        } else {
            for handle in workers {
                start(&|rx| {
                    handle.spawn(run(rx, settings.clone()));
                });
            }
        }
        Upstream {
            senders: senders.into(),
            per_worker,
            next: Arc::new(AtomicUsize::new(0)),
            shard: settings.shard.clone(),
        }
    }

    /// A service bound to one of the calling worker's connections.
    pub fn service(&self) -> service::ShardService {
        let groups = self.senders.len() / self.per_worker;
        let mut i = (crate::workers::current() % groups) * self.per_worker;
        if self.per_worker > 1 {
            i += self.next.fetch_add(1, Ordering::Relaxed) % self.per_worker;
        }
        service::ShardService::new(self.senders[i].clone(), self.shard.clone())
    }
}

struct InFlight {
    kind: ReplyKind,
    reply: Option<oneshot::Sender<Reply>>,
    sent: Instant,
}

async fn run(mut rx: mpsc::Receiver<Request>, s: Arc<Settings>) {
    // Requests taken from the queue but not yet written.
    let mut pending: VecDeque<Request> = VecDeque::new();
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(req) => pending.push_back(req),
                None => return,
            }
        }
        let stream = match connect(&s).await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(shard = %s.shard, error = %e, "connect failed");
                // A refused password is a configuration error, not a sick
                // shard: ejecting would move its keys and fix nothing.
                if !matches!(e, UpstreamError::Auth { .. }) {
                    s.health.failure();
                }
                // Fail what is queued now rather than let it wait for the
                // next attempt: a down shard answers fast, like twemproxy.
                while let Ok(req) = rx.try_recv() {
                    pending.push_back(req);
                }
                for req in pending.drain(..) {
                    if let Some(reply) = req.reply {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
                continue;
            }
        };
        let mut inflight = VecDeque::new();
        let result = serve(&mut rx, &mut pending, &mut inflight, stream, &s).await;
        let err = match result {
            Ok(()) => return,
            Err(e) => e,
        };
        tracing::warn!(shard = %s.shard, error = %err, "shard connection failed");
        s.health.failure();
        for f in inflight.drain(..) {
            if let Some(reply) = f.reply {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

async fn connect(s: &Settings) -> Result<TcpStream, UpstreamError> {
    let fail = |reason: String| UpstreamError::Connect {
        shard: s.shard.clone(),
        reason,
    };
    let attempt = async {
        let mut stream = TcpStream::connect(&s.addr)
            .await
            .map_err(|e| fail(e.to_string()))?;
        stream.set_nodelay(true).map_err(|e| fail(e.to_string()))?;
        let mut setup = BytesMut::new();
        let mut sent: Vec<&str> = Vec::new();
        if let Some(auth) = &s.auth {
            resp::encode_command(&[b"AUTH", auth.as_bytes()], &mut setup);
            sent.push("AUTH");
        }
        if s.db != 0 {
            resp::encode_command(
                &[b"SELECT".as_slice(), s.db.to_string().as_bytes()],
                &mut setup,
            );
            sent.push("SELECT");
        }
        if sent.is_empty() {
            return Ok(stream);
        }
        stream
            .write_all(&setup)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut buf = BytesMut::new();
        for command in sent {
            let reply = loop {
                match resp::decode(&mut buf, &resp::Limits::default()) {
                    Ok(Some(reply)) => break reply,
                    Ok(None) => {
                        let n = stream
                            .read_buf(&mut buf)
                            .await
                            .map_err(|e| fail(e.to_string()))?;
                        if n == 0 {
                            return Err(fail("closed during setup".into()));
                        }
                    }
                    Err(e) => return Err(fail(e.to_string())),
                }
            };
            let resp::Value::Error(e) = reply else {
                continue;
            };
            let reason = String::from_utf8_lossy(&e).into_owned();
            match command {
                "AUTH" if auth_not_needed(&reason) => {
                    // twemproxy ignores this answer too: the shard takes
                    // requests without a password.
                    tracing::warn!(shard = %s.shard, reply = %reason, "redis_auth is set but the shard has no password");
                }
                "AUTH" => {
                    return Err(UpstreamError::Auth {
                        shard: s.shard.clone(),
                        reason,
                    });
                }
                _ => return Err(fail(format!("{command}: {reason}"))),
            }
        }
        Ok(stream)
    };
    match s.timeout {
        Some(t) => tokio::time::timeout(t, attempt)
            .await
            .unwrap_or_else(|_| Err(fail(format!("timed out after {} ms", t.as_millis())))),
        None => attempt.await,
    }
}

/// True for the error a shard without a password gives to `AUTH`
/// (Redis 5: "Client sent AUTH, but no password is set"; Redis 6+ and
/// Valkey: "AUTH <password> called without any password configured").
fn auth_not_needed(reply: &str) -> bool {
    reply.contains("no password is set") || reply.contains("without any password configured")
}

/// Runs one connection until it fails (`Err`) or the handle is dropped and
/// nothing is left in flight (`Ok`).
async fn serve(
    rx: &mut mpsc::Receiver<Request>,
    pending: &mut VecDeque<Request>,
    inflight: &mut VecDeque<InFlight>,
    mut stream: TcpStream,
    s: &Settings,
) -> Result<(), UpstreamError> {
    let (mut reader, mut writer) = stream.split();
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut wbuf = BytesMut::with_capacity(16 * 1024);
    let mut replies = Replies::new(s.max_reply_bytes);
    // When the shard last sent anything: a reply still streaming in is an
    // answer in progress, so the timeout counts from the later of this and
    // the request's write.
    let mut last_read = Instant::now();
    let mut closed = false;
    let far = Instant::now() + Duration::from_secs(86400 * 365);
    let sleep = tokio::time::sleep_until(far);
    tokio::pin!(sleep);
    let mut armed = far;
    // Rounds this batch has waited for more requests, and its size then.
    let mut rounds = 0u32;
    let mut gathered = 0usize;
    let lost = |reason: String| UpstreamError::ConnectionLost {
        shard: s.shard.clone(),
        reason,
    };
    loop {
        // Take everything already queued into one write.
        let now = Instant::now();
        while wbuf.len() < WRITE_HIGH_WATER {
            let req = match pending.pop_front() {
                Some(r) => r,
                None => match rx.try_recv() {
                    Ok(r) => r,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                },
            };
            wbuf.extend_from_slice(&req.frame);
            if let Some(reply) = req.reply {
                inflight.push_back(InFlight {
                    kind: req.kind,
                    reply: Some(reply),
                    sent: now,
                });
            }
        }
        if closed && inflight.is_empty() && wbuf.is_empty() {
            return Ok(());
        }
        // Before writing, let the worker poll its sockets once more: client
        // requests that arrived meanwhile join this write. Every shard
        // wake-up costs the shard a read and a write, so bigger batches are
        // what keeps CPU per request low when cores are scarce. Stop as
        // soon as a round brings nothing, so an idle proxy pays one poll.
        if !wbuf.is_empty()
            && wbuf.len() < WRITE_HIGH_WATER
            && rounds < GATHER_ROUNDS
            && wbuf.len() > gathered
        {
            rounds += 1;
            gathered = wbuf.len();
            tokio::task::yield_now().await;
            continue;
        }
        let deadline = match (s.timeout, inflight.front()) {
            (Some(t), Some(f)) => f.sent.max(last_read) + t,
            _ => far,
        };
        if deadline != armed {
            sleep.as_mut().reset(deadline);
            armed = deadline;
        }
        if rbuf.capacity() - rbuf.len() < 4096 {
            rbuf.reserve(16 * 1024);
        }
        tokio::select! {
            biased;
            n = reader.read_buf(&mut rbuf) => {
                let n = n.map_err(|e| lost(e.to_string()))?;
                if n == 0 {
                    return Err(lost("closed by the shard".into()));
                }
                let now = Instant::now();
                last_read = now;
                while let Some(f) = inflight.front() {
                    let outcome = match replies.next(&mut rbuf, f.kind) {
                        Ok(Some(outcome)) => outcome,
                        Ok(None) => break,
                        Err(reason) => return Err(UpstreamError::Protocol { shard: s.shard.clone(), reason }),
                    };
                    let mut f = inflight.pop_front().expect("front exists");
                    s.latency.observe(now.duration_since(f.sent).as_secs_f64());
                    let reply = match outcome {
                        Outcome::Frame(frame) => Ok(frame),
                        Outcome::TooLarge => {
                            tracing::warn!(shard = %s.shard, limit = s.max_reply_bytes, "reply larger than max_reply_bytes skipped");
                            Err(UpstreamError::ReplyTooLarge { shard: s.shard.clone(), limit: s.max_reply_bytes })
                        }
                    };
                    if let Some(tx) = f.reply.take() {
                        let _ = tx.send(reply);
                    }
                }
                if inflight.is_empty() && !rbuf.is_empty() {
                    return Err(UpstreamError::Protocol { shard: s.shard.clone(), reason: "reply without a request".into() });
                }
                Replies::shrink(&mut rbuf);
                s.health.success();
            }
            w = writer.write_buf(&mut wbuf), if !wbuf.is_empty() => {
                w.map_err(|e| lost(e.to_string()))?;
                rounds = 0;
                gathered = 0;
            }
            req = rx.recv(), if !closed && wbuf.len() < WRITE_HIGH_WATER && pending.is_empty() => {
                match req {
                    Some(req) => pending.push_back(req),
                    None => closed = true,
                }
            }
            () = &mut sleep, if deadline != far => {
                return Err(UpstreamError::Timeout {
                    shard: s.shard.clone(),
                    ms: s.timeout.map_or(0, |t| t.as_millis() as u64),
                });
            }
        }
    }
}
