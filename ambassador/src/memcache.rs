//! The memcached side: multi-key `get`/`gets` split per shard and merged,
//! everything else routed by its key; `noreply` requests get no reply.

use std::sync::{Arc, LazyLock};

use bytes::{BufMut, Bytes, BytesMut};
use tessera_clients::memcached::codec::{self as mc, Command};
use tokio::net::TcpStream;

use crate::client::{self, GatherOp, Part, Pending, Proto, Stacks, error_reply};
use crate::error::{ClientError, UpstreamError};
use crate::metrics::METRICS;
use crate::pool::{Pool, Routing};
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

fn server_error(message: &str) -> Pending {
    let mut out = BytesMut::new();
    error_reply(Proto::Memcached, message, &mut out);
    Pending::Ready(out.freeze())
}

enum Step {
    Reply(Pending),
    Nothing,
    Close,
}

async fn request(frame: Bytes, req: &mc::Request, routing: &Routing, stacks: &mut Stacks) -> Step {
    let id = command_id(req.command);
    match req.command {
        Command::Quit => return Step::Close,
        Command::Version => {
            return Step::Reply(Pending::Ready(Bytes::from_static(
                concat!(
                    "VERSION tessera-ambassador-",
                    env!("CARGO_PKG_VERSION"),
                    "\r\n"
                )
                .as_bytes(),
            )));
        }
        _ => {}
    }
    let key = |i: usize| &frame[req.keys[i].clone()];
    if req.command.is_retrieval() {
        let mut groups: Vec<(usize, Vec<u32>)> = Vec::new();
        for k in 0..req.keys.len() {
            let Some(idx) = routing.ring.route(key(k)) else {
                return Step::Reply(server_error(&UpstreamError::NoLiveShards.to_string()));
            };
            match groups.iter_mut().find(|(i, _)| *i == idx) {
                Some((_, p)) => p.push(k as u32),
                None => groups.push((idx, vec![k as u32])),
            }
        }
        if groups.len() > 1 {
            let mut parts = Vec::with_capacity(groups.len());
            for (idx, positions) in groups {
                let mut line = BytesMut::new();
                line.put_slice(req.command.name().as_bytes());
                for &p in &positions {
                    line.put_u8(b' ');
                    line.put_slice(key(p as usize));
                }
                line.put_slice(b"\r\n");
                let call = Call {
                    frame: line.freeze(),
                    kind: ReplyKind::McRetrieval,
                    command: id,
                    noreply: false,
                };
                let reply = stacks.call(idx, call).await;
                parts.push(Part { reply, positions });
            }
            return Step::Reply(Pending::Gather {
                op: GatherOp::McGet,
                parts,
                keys: req.keys.len(),
            });
        }
    }
    let Some(index) = routing.shard_for(key(0)) else {
        return Step::Reply(server_error(&UpstreamError::NoLiveShards.to_string()));
    };
    let kind = if req.command.is_retrieval() {
        ReplyKind::McRetrieval
    } else {
        ReplyKind::McLine
    };
    let call = Call {
        frame,
        kind,
        command: id,
        noreply: req.noreply,
    };
    let reply = stacks.call(index, call).await;
    if req.noreply {
        return Step::Nothing;
    }
    Step::Reply(Pending::One(reply))
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
                    match request(frame, &req, &routing, &mut stacks).await {
                        Step::Reply(p) => {
                            if tx.send(p).await.is_err() {
                                break 'conn;
                            }
                        }
                        Step::Nothing => {}
                        Step::Close => break 'conn,
                    }
                    continue;
                }
                Ok(None) => break,
                Err(e) => ClientError::Memcached(e),
            };
            METRICS
                .client_errors
                .with_label_values(&[&*pool.name, failure.label()])
                .inc();
            let reply = match &failure {
                ClientError::Memcached(mc::Error::UnknownCommand) => {
                    Bytes::from_static(b"ERROR\r\n")
                }
                other => Bytes::from(format!("CLIENT_ERROR {other}\r\n")),
            };
            let _ = tx.send(Pending::Ready(reply)).await;
            break 'conn;
        }
    }
    drop(tx);
    let _ = writing.await;
}
