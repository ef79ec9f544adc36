//! The memcached side: multi-key `get`/`gets` split per shard and merged,
//! everything else routed by its key; `noreply` requests get no reply.

use std::sync::{Arc, LazyLock};

use bytes::{BufMut, Bytes, BytesMut};
use tessera_clients::memcached::codec::{self as mc, Command};
use tokio::net::TcpStream;

use crate::client::{self, GatherOp, Proto, Stacks, error_reply};
use crate::error::{ClientError, UpstreamError};
use crate::plan::{Plan, SplitPart, execute, group_by_shard};
use crate::pool::Pool;
use crate::ring::Ring;
use crate::upstream::ReplyKind;
use crate::upstream::service::Call;

static NAMES: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| Command::ALL.iter().map(|c| c.name()).collect());

/// Command names as metric labels, indexed by position in `Command::ALL`.
pub fn command_names() -> &'static [&'static str] {
    &NAMES
}

fn command_id(c: Command) -> usize {
    Command::ALL.iter().position(|&x| x == c).unwrap_or(0)
}

pub fn limits(max_request_bytes: usize) -> mc::Limits {
    mc::Limits {
        max_line_len: 64 * 1024,
        max_value_len: max_request_bytes,
        max_key_len: 250,
    }
}

fn server_error(message: &str) -> Plan {
    let mut out = BytesMut::new();
    error_reply(Proto::Memcached, message, &mut out);
    Plan::Reply(out.freeze())
}

/// Plans one parsed request (`frame` is its bytes): answered here, routed by
/// its key, or, for a `get`/`gets` whose keys live on several shards, split
/// into one retrieval per shard.
pub fn plan(frame: Bytes, req: &mc::Request, ring: &Ring) -> Plan {
    let command = command_id(req.command);
    match req.command {
        Command::Quit => return Plan::Close(Bytes::new()),
        Command::Version => {
            return Plan::Reply(Bytes::from_static(
                concat!(
                    "VERSION tessera-ambassador-",
                    env!("CARGO_PKG_VERSION"),
                    "\r\n"
                )
                .as_bytes(),
            ));
        }
        _ => {}
    }
    let key = |i: usize| &frame[req.keys[i].clone()];
    let kind = if req.command.is_retrieval() {
        ReplyKind::McRetrieval
    } else {
        ReplyKind::McLine
    };
    if req.command.is_retrieval() {
        let Some(groups) = group_by_shard((0..req.keys.len()).map(key), ring) else {
            return server_error(&UpstreamError::NoLiveShards.to_string());
        };
        if groups.len() > 1 {
            let parts = groups
                .into_iter()
                .map(|(shard, positions)| {
                    let mut line = BytesMut::new();
                    line.put_slice(req.command.name().as_bytes());
                    for &p in &positions {
                        line.put_u8(b' ');
                        line.put_slice(key(p as usize));
                    }
                    line.put_slice(b"\r\n");
                    let call = Call {
                        frame: line.freeze(),
                        kind,
                        command,
                        noreply: false,
                    };
                    SplitPart {
                        shard,
                        call,
                        positions,
                    }
                })
                .collect();
            return Plan::Split {
                op: GatherOp::McGet,
                parts,
                keys: req.keys.len(),
            };
        }
    }
    let Some(shard) = ring.route(key(0)) else {
        return server_error(&UpstreamError::NoLiveShards.to_string());
    };
    let noreply = req.noreply;
    Plan::One {
        shard,
        call: Call {
            frame,
            kind,
            command,
            noreply,
        },
    }
}

/// Serves one memcached client until it closes, sends `quit` or bad input.
pub async fn serve(stream: TcpStream, pool: Arc<Pool>) {
    let (mut reader, tx, writing) = client::open(stream, Proto::Memcached);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut stacks = Stacks::default();
    'conn: loop {
        if !client::read_more(&mut reader, &mut buf).await {
            break;
        }
        let routing = pool.routing.load_full();
        stacks.update(&routing);
        let limits = limits(routing.config.max_request_bytes);
        loop {
            let failure = match mc::parse_request(&buf, &limits) {
                Ok(Some(req)) if req.len > routing.config.max_request_bytes => {
                    ClientError::TooLarge(routing.config.max_request_bytes)
                }
                Ok(Some(req)) => {
                    let frame = buf.split_to(req.len).freeze();
                    if execute(plan(frame, &req, &routing.ring), &mut stacks, &tx).await {
                        continue;
                    }
                    break 'conn;
                }
                Ok(None) => break,
                Err(e) => ClientError::Memcached(e),
            };
            let reply = match &failure {
                ClientError::Memcached(mc::Error::UnknownCommand) => {
                    Bytes::from_static(b"ERROR\r\n")
                }
                other => Bytes::from(format!("CLIENT_ERROR {other}\r\n")),
            };
            client::refuse(&pool.name, &failure, reply, &tx).await;
            break 'conn;
        }
    }
    drop(tx);
    let _ = writing.await;
}
