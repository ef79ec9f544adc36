//! The reply side of a client connection: replies are written in request
//! order, merged when a command was split across shards, and flushed only
//! when the next reply is not ready yet, so pipelined replies share writes.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use futures::FutureExt;
use tower::{Layer, Service, ServiceExt};

use crate::count::{self, Count, CountFuture};
use crate::error::ClientError;
use crate::merge::{self, PartReply};
use crate::metrics::METRICS;
use crate::pool::Routing;
use crate::upstream::Reply;
use crate::upstream::service::{Call, ReplyFuture, ShardService};

/// The per-shard service stack a client connection calls.
pub type Stack = Count<ShardService>;
/// Where the reply to one call arrives.
pub type ReplySlot = CountFuture<ReplyFuture>;

/// One client connection's stacks, one per shard of the routing it last
/// used; rebuilt when a reload or ejection publishes a new routing.
#[derive(Default)]
pub struct Stacks {
    routing: Option<Arc<Routing>>,
    services: Vec<Stack>,
}

impl Stacks {
    /// Makes sure the stacks match `routing`.
    pub fn update(&mut self, routing: &Arc<Routing>) {
        if self
            .routing
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, routing))
        {
            return;
        }
        self.services = routing
            .shards
            .iter()
            .map(|shard| count::layer(shard.counters.clone()).layer(shard.upstream.service()))
            .collect();
        self.routing = Some(routing.clone());
    }

    /// The label of shard `index`.
    pub fn label(&self, index: usize) -> Arc<str> {
        self.routing
            .as_ref()
            .and_then(|r| r.shards.get(index))
            .map_or_else(|| Arc::from("?"), |s| s.label.clone())
    }

    /// Sends `call` to shard `index`, waiting while its queue is full.
    pub async fn call(&mut self, index: usize, call: Call) -> ReplySlot {
        let svc = &mut self.services[index];
        // ShardService is always ready once it has queue space.
        let _ = svc.ready().await;
        svc.call(call)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Redis,
    Memcached,
}

/// How the replies of a split command are put back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatherOp {
    /// MGET: array elements back in key order.
    Mget,
    /// MSET: `+OK` when every part said so.
    Mset,
    /// DEL, UNLINK, EXISTS, TOUCH: the sum of the integers.
    Sum,
    /// memcached get/gets: the VALUE blocks of every part, then END.
    McGet,
}

pub struct Part {
    pub reply: ReplySlot,
    /// Where this part's keys sit in the original command (MGET only).
    pub positions: Vec<u32>,
    /// The shard's label, for errors.
    pub shard: Arc<str>,
}

pub enum Pending {
    /// A reply produced by the proxy itself.
    Ready(Bytes),
    One(ReplySlot),
    Gather {
        op: GatherOp,
        parts: Vec<Part>,
        keys: usize,
    },
}

const FLUSH_AT: usize = 64 * 1024;

/// An error reply in the client's protocol, on one line.
pub fn error_reply(proto: Proto, message: &str, out: &mut BytesMut) {
    match proto {
        Proto::Redis => error_line(proto, &format!("ERR {message}"), out),
        Proto::Memcached => error_line(proto, message, out),
    }
}

/// An error line whose text starts with its own code for Redis
/// (`READONLY ...`), or follows `SERVER_ERROR` for memcached.
pub fn error_line(proto: Proto, text: &str, out: &mut BytesMut) {
    let clean = text.replace(['\r', '\n'], " ");
    match proto {
        Proto::Redis => out.put_u8(b'-'),
        Proto::Memcached => out.put_slice(b"SERVER_ERROR "),
    }
    out.put_slice(clean.as_bytes());
    out.put_slice(b"\r\n");
}

async fn flush(w: &mut OwnedWriteHalf, out: &mut BytesMut) -> std::io::Result<()> {
    if !out.is_empty() {
        w.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// Waits for a reply, flushing what is buffered first if it is not ready.
async fn resolve(
    mut reply: ReplySlot,
    w: &mut OwnedWriteHalf,
    out: &mut BytesMut,
) -> std::io::Result<Reply> {
    // A reply from another shard is often a moment away: give the shard
    // tasks a couple of turns before paying for a separate write.
    for turn in 0..3 {
        if let Some(r) = (&mut reply).now_or_never() {
            return Ok(r);
        }
        if turn == 2 || out.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    flush(w, out).await?;
    Ok(reply.await)
}

/// Writes replies in order until the reader side hangs up, then closes.
pub async fn write_replies(mut w: OwnedWriteHalf, mut rx: mpsc::Receiver<Pending>, proto: Proto) {
    let mut out = BytesMut::with_capacity(16 * 1024);
    let result: std::io::Result<()> = async {
        while let Some(p) = rx.recv().await {
            match p {
                Pending::Ready(b) => out.put_slice(&b),
                Pending::One(reply) => match resolve(reply, &mut w, &mut out).await? {
                    Ok(b) => out.put_slice(&b),
                    Err(e) => merge::upstream_error(proto, &e, &mut out),
                },
                Pending::Gather { op, parts, keys } => {
                    let mut replies = Vec::with_capacity(parts.len());
                    for part in parts {
                        replies.push(PartReply {
                            reply: resolve(part.reply, &mut w, &mut out).await?,
                            positions: part.positions,
                            shard: part.shard,
                        });
                    }
                    merge::merge(op, proto, replies, keys, &mut out);
                }
            }
            if out.len() >= FLUSH_AT || rx.is_empty() {
                flush(&mut w, &mut out).await?;
            }
        }
        flush(&mut w, &mut out).await?;
        w.shutdown().await
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "client write failed");
    }
}

/// Answers input that cannot be served with `reply`, counted by why, before
/// the connection closes.
pub async fn refuse(
    pool: &str,
    failure: &ClientError,
    reply: Bytes,
    replies: &mpsc::Sender<Pending>,
) {
    METRICS
        .client_errors
        .with_label_values(&[pool, failure.label()])
        .inc();
    tracing::debug!(pool, error = %failure, "closing client");
    let _ = replies.send(Pending::Ready(reply)).await;
}

/// Replies queued for one client before its reader waits.
const REPLY_QUEUE: usize = 1024;

/// Splits a client connection into its reading half and the queue feeding
/// a writer task.
pub fn open(
    stream: TcpStream,
    proto: Proto,
) -> (OwnedReadHalf, mpsc::Sender<Pending>, JoinHandle<()>) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel(REPLY_QUEUE);
    (reader, tx, tokio::spawn(write_replies(writer, rx, proto)))
}

/// Reads more client bytes into `buf`; false when the client is gone.
pub async fn read_more(reader: &mut OwnedReadHalf, buf: &mut BytesMut) -> bool {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 * 1024);
    }
    matches!(reader.read_buf(buf).await, Ok(n) if n > 0)
}
