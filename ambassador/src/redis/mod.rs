//! The Redis side: which commands are routed how, and the client loop.

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use bytes::{Bytes, BytesMut};
use tessera_clients::resp::{self, Value};
use tokio::net::TcpStream;

use crate::client::{self, GatherOp, Proto, Stacks, error_reply};
use crate::config::PoolConfig;
use crate::error::{ClientError, UpstreamError};
use crate::plan::{Plan, SplitPart, execute, group_by_shard};
use crate::pool::Pool;
use crate::ring::Ring;
use crate::upstream::ReplyKind;
use crate::upstream::service::Call;

/// How a command is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Routed by the key in argument 1 (for commands naming several keys,
    /// the first one: use hash tags to keep them together).
    Single,
    /// EVAL-style: `numkeys` in argument 2, routed by the first key.
    Eval,
    Mget,
    Mset,
    /// Split per shard and the integer replies summed.
    Sum,
    Ping,
    Echo,
    Quit,
    Auth,
    Select,
    /// Never routed; the text says why.
    Unsupported(&'static str),
}

const SINGLE: &[&str] = &[
    // keys
    "DUMP",
    "EXPIRE",
    "EXPIREAT",
    "EXPIRETIME",
    "PERSIST",
    "PEXPIRE",
    "PEXPIREAT",
    "PEXPIRETIME",
    "PTTL",
    "TTL",
    "TYPE",
    "RESTORE",
    "SORT",
    "SORT_RO",
    "OBJECT_KEY",
    // strings
    "APPEND",
    "BITCOUNT",
    "BITFIELD",
    "BITFIELD_RO",
    "BITPOS",
    "DECR",
    "DECRBY",
    "GET",
    "GETBIT",
    "GETDEL",
    "GETEX",
    "GETRANGE",
    "GETSET",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "PSETEX",
    "SET",
    "SETBIT",
    "SETEX",
    "SETNX",
    "SETRANGE",
    "STRLEN",
    "SUBSTR",
    // hashes
    "HDEL",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HMSET",
    "HRANDFIELD",
    "HSCAN",
    "HSET",
    "HSETNX",
    "HSTRLEN",
    "HVALS",
    // lists
    "LINDEX",
    "LINSERT",
    "LLEN",
    "LPOP",
    "LPOS",
    "LPUSH",
    "LPUSHX",
    "LRANGE",
    "LREM",
    "LSET",
    "LTRIM",
    "RPOP",
    "RPOPLPUSH",
    "LMOVE",
    "RPUSH",
    "RPUSHX",
    // sets
    "SADD",
    "SCARD",
    "SDIFF",
    "SDIFFSTORE",
    "SINTER",
    "SINTERSTORE",
    "SISMEMBER",
    "SMEMBERS",
    "SMISMEMBER",
    "SMOVE",
    "SPOP",
    "SRANDMEMBER",
    "SREM",
    "SSCAN",
    "SUNION",
    "SUNIONSTORE",
    // sorted sets
    "ZADD",
    "ZCARD",
    "ZCOUNT",
    "ZINCRBY",
    "ZINTERSTORE",
    "ZLEXCOUNT",
    "ZMSCORE",
    "ZPOPMAX",
    "ZPOPMIN",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANGESTORE",
    "ZRANK",
    "ZREM",
    "ZREMRANGEBYLEX",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
    "ZUNIONSTORE",
    "ZDIFFSTORE",
    // hyperloglog, geo, streams
    "PFADD",
    "PFCOUNT",
    "PFMERGE",
    "GEOADD",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEORADIUS",
    "GEORADIUSBYMEMBER",
    "GEORADIUS_RO",
    "GEORADIUSBYMEMBER_RO",
    "GEOSEARCH",
    "GEOSEARCHSTORE",
    "XADD",
    "XACK",
    "XCLAIM",
    "XAUTOCLAIM",
    "XDEL",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREVRANGE",
    "XTRIM",
    "RENAME",
    "RENAMENX",
    "COPY",
];

const SPECIAL: &[(&str, Kind)] = &[
    ("EVAL", Kind::Eval),
    ("EVALSHA", Kind::Eval),
    ("EVAL_RO", Kind::Eval),
    ("EVALSHA_RO", Kind::Eval),
    ("MGET", Kind::Mget),
    ("MSET", Kind::Mset),
    ("DEL", Kind::Sum),
    ("UNLINK", Kind::Sum),
    ("EXISTS", Kind::Sum),
    ("TOUCH", Kind::Sum),
    ("PING", Kind::Ping),
    ("ECHO", Kind::Echo),
    ("QUIT", Kind::Quit),
    ("AUTH", Kind::Auth),
    ("SELECT", Kind::Select),
    (
        "KEYS",
        Kind::Unsupported("it would have to visit every shard"),
    ),
    (
        "SCAN",
        Kind::Unsupported("it would have to visit every shard"),
    ),
    (
        "RANDOMKEY",
        Kind::Unsupported("it would have to visit every shard"),
    ),
    (
        "DBSIZE",
        Kind::Unsupported("it would have to visit every shard"),
    ),
    (
        "FLUSHDB",
        Kind::Unsupported("it would have to visit every shard"),
    ),
    (
        "FLUSHALL",
        Kind::Unsupported("it would have to visit every shard"),
    ),
    (
        "MSETNX",
        Kind::Unsupported("it cannot be atomic across shards"),
    ),
    (
        "BLPOP",
        Kind::Unsupported("blocking commands would stall a shared connection"),
    ),
    (
        "BRPOP",
        Kind::Unsupported("blocking commands would stall a shared connection"),
    ),
    (
        "BRPOPLPUSH",
        Kind::Unsupported("blocking commands would stall a shared connection"),
    ),
    (
        "BLMOVE",
        Kind::Unsupported("blocking commands would stall a shared connection"),
    ),
    (
        "BLMPOP",
        Kind::Unsupported("blocking commands would stall a shared connection"),
    ),
    (
        "BZPOPMIN",
        Kind::Unsupported("blocking commands would stall a shared connection"),
    ),
    (
        "BZPOPMAX",
        Kind::Unsupported("blocking commands would stall a shared connection"),
    ),
    (
        "BZMPOP",
        Kind::Unsupported("blocking commands would stall a shared connection"),
    ),
    (
        "XREAD",
        Kind::Unsupported("it may block a shared connection"),
    ),
    (
        "XREADGROUP",
        Kind::Unsupported("it may block a shared connection"),
    ),
    (
        "WAIT",
        Kind::Unsupported("blocking commands would stall a shared connection"),
    ),
    (
        "SUBSCRIBE",
        Kind::Unsupported("pub/sub needs a dedicated connection"),
    ),
    (
        "PSUBSCRIBE",
        Kind::Unsupported("pub/sub needs a dedicated connection"),
    ),
    (
        "SSUBSCRIBE",
        Kind::Unsupported("pub/sub needs a dedicated connection"),
    ),
    (
        "UNSUBSCRIBE",
        Kind::Unsupported("pub/sub needs a dedicated connection"),
    ),
    (
        "PUNSUBSCRIBE",
        Kind::Unsupported("pub/sub needs a dedicated connection"),
    ),
    (
        "PUBLISH",
        Kind::Unsupported("pub/sub needs a dedicated connection"),
    ),
    (
        "MULTI",
        Kind::Unsupported("transactions cannot span a shared connection"),
    ),
    (
        "EXEC",
        Kind::Unsupported("transactions cannot span a shared connection"),
    ),
    (
        "DISCARD",
        Kind::Unsupported("transactions cannot span a shared connection"),
    ),
    (
        "WATCH",
        Kind::Unsupported("transactions cannot span a shared connection"),
    ),
    (
        "UNWATCH",
        Kind::Unsupported("transactions cannot span a shared connection"),
    ),
];

struct Table {
    by_name: HashMap<&'static [u8], (usize, Kind)>,
    names: Vec<&'static str>,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let mut by_name = HashMap::new();
    let mut names = Vec::new();
    let all = SINGLE
        .iter()
        .map(|&n| (n, Kind::Single))
        .chain(SPECIAL.iter().copied());
    for (i, (name, kind)) in all.enumerate() {
        by_name.insert(name.as_bytes(), (i, kind));
        names.push(&*Box::leak(name.to_ascii_lowercase().into_boxed_str()));
    }
    Table { by_name, names }
});

/// Command names as metric labels, indexed like the table.
pub fn command_names() -> &'static [&'static str] {
    &TABLE.names
}

/// Looks a command up case-insensitively.
pub fn lookup(name: &[u8]) -> Option<(usize, Kind)> {
    let mut upper = [0u8; 32];
    if name.len() > upper.len() {
        return None;
    }
    let upper = &mut upper[..name.len()];
    upper.copy_from_slice(name);
    upper.make_ascii_uppercase();
    TABLE.by_name.get(&*upper).copied()
}

fn simple(s: &'static str) -> Plan {
    Plan::Reply(Bytes::from_static(s.as_bytes()))
}

fn err(message: &str) -> Plan {
    let mut out = BytesMut::new();
    error_reply(Proto::Redis, message, &mut out);
    Plan::Reply(out.freeze())
}

fn bulk(b: &Bytes) -> Plan {
    let mut out = BytesMut::new();
    resp::encode(&Value::Bulk(b.clone()), &mut out);
    Plan::Reply(out.freeze())
}

/// Per-connection state.
pub struct Session {
    pub authenticated: bool,
}

fn args_of(value: Value) -> Result<Vec<Bytes>, ClientError> {
    let Value::Array(items) = value else {
        return Err(ClientError::NotACommand);
    };
    if items.is_empty() {
        return Err(ClientError::NotACommand);
    }
    items
        .into_iter()
        .map(|v| match v {
            Value::Bulk(b) => Ok(b),
            _ => Err(ClientError::NotACommand),
        })
        .collect()
}

fn wrong_args(name: &[u8]) -> Plan {
    err(&format!(
        "wrong number of arguments for '{}' command",
        String::from_utf8_lossy(name).to_ascii_lowercase()
    ))
}

/// Plans one command (`raw` is its frame, `value` the decoded frame): an
/// answer from the proxy, or where to forward it. `Err` means the input is
/// not a command at all and the connection must close.
pub fn plan(
    raw: Bytes,
    value: Value,
    ring: &Ring,
    config: &PoolConfig,
    session: &mut Session,
) -> Result<Plan, ClientError> {
    let args = args_of(value)?;
    let name = &args[0];
    let Some((id, kind)) = lookup(name) else {
        return Ok(err(&format!(
            "unknown or unsupported command '{}'",
            String::from_utf8_lossy(name)
        )));
    };
    if !session.authenticated && !matches!(kind, Kind::Auth | Kind::Quit) {
        return Ok(simple("-NOAUTH Authentication required.\r\n"));
    }
    Ok(match kind {
        Kind::Ping => match args.len() {
            1 => simple("+PONG\r\n"),
            2 => bulk(&args[1]),
            _ => wrong_args(name),
        },
        Kind::Echo if args.len() == 2 => bulk(&args[1]),
        Kind::Echo => wrong_args(name),
        Kind::Quit => Plan::Close(Bytes::from_static(b"+OK\r\n")),
        Kind::Auth => match (&config.redis_auth, args.len()) {
            (_, n) if n != 2 => wrong_args(name),
            (None, _) => err("Client sent AUTH, but no password is set"),
            (Some(p), _) if p.as_bytes() == &args[1][..] => {
                session.authenticated = true;
                simple("+OK\r\n")
            }
            (Some(_), _) => {
                session.authenticated = false;
                err("invalid password")
            }
        },
        Kind::Select if args.len() == 2 && &args[1][..] == b"0" => simple("+OK\r\n"),
        Kind::Select if args.len() == 2 => {
            err("SELECT to a non-zero database is not supported by the ambassador")
        }
        Kind::Select => wrong_args(name),
        Kind::Unsupported(why) => err(&format!(
            "{} is not supported by the ambassador: {why}",
            String::from_utf8_lossy(name).to_ascii_uppercase()
        )),
        Kind::Single if args.len() >= 2 => forward(raw, &args[1], id, ring),
        Kind::Single => wrong_args(name),
        Kind::Eval => {
            let numkeys = args
                .get(2)
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok());
            match numkeys {
                Some(n) if n >= 1 && args.len() >= 3 + n => forward(raw, &args[3], id, ring),
                Some(_) => err(&format!(
                    "{} through the ambassador needs at least one key to route by",
                    String::from_utf8_lossy(name).to_ascii_uppercase()
                )),
                None => wrong_args(name),
            }
        }
        Kind::Mget | Kind::Sum if args.len() >= 2 => {
            let op = if kind == Kind::Mget {
                GatherOp::Mget
            } else {
                GatherOp::Sum
            };
            split(raw, &args, 1, op, id, ring)
        }
        Kind::Mset if args.len() >= 3 && args.len() % 2 == 1 => {
            split(raw, &args, 2, GatherOp::Mset, id, ring)
        }
        Kind::Mget | Kind::Sum | Kind::Mset => wrong_args(name),
    })
}

fn call(frame: Bytes, command: usize) -> Call {
    Call {
        frame,
        kind: ReplyKind::Resp,
        command,
        noreply: false,
    }
}

fn forward(raw: Bytes, key: &[u8], command: usize, ring: &Ring) -> Plan {
    match ring.route(key) {
        Some(shard) => Plan::One {
            shard,
            call: call(raw, command),
        },
        None => err(&UpstreamError::NoLiveShards.to_string()),
    }
}

/// Splits a multi-key command (`args`, its name first) into one command
/// per shard. `stride` is 1 for key lists and 2 for key-value pairs.
fn split(
    raw: Bytes,
    args: &[Bytes],
    stride: usize,
    op: GatherOp,
    command: usize,
    ring: &Ring,
) -> Plan {
    let (name, rest) = (&args[0], &args[1..]);
    let keys = rest.len() / stride;
    let Some(groups) = group_by_shard(rest.iter().step_by(stride).map(|k| &k[..]), ring) else {
        return err(&UpstreamError::NoLiveShards.to_string());
    };
    if let [(shard, _)] = groups[..] {
        // Every key on one shard: forward as is, the reply needs no merge.
        return Plan::One {
            shard,
            call: call(raw, command),
        };
    }
    let parts = groups
        .into_iter()
        .map(|(shard, positions)| {
            let mut args: Vec<&[u8]> = Vec::with_capacity(1 + positions.len() * stride);
            args.push(name);
            for &p in &positions {
                for j in 0..stride {
                    args.push(&rest[p as usize * stride + j]);
                }
            }
            let mut frame = BytesMut::new();
            resp::encode_command(&args, &mut frame);
            SplitPart {
                shard,
                call: call(frame.freeze(), command),
                positions,
            }
        })
        .collect();
    Plan::Split { op, parts, keys }
}

/// Takes the next request from the front of `buf`. Clients must send RESP
/// arrays: anything else is refused at its first byte rather than held
/// until a line ends (docs/ambassador.md, "Client protocol").
pub fn next_request(
    buf: &mut BytesMut,
    limits: &resp::Limits,
) -> Result<Option<(Bytes, Value)>, ClientError> {
    match buf.first() {
        None => Ok(None),
        Some(b'\r' | b'\n') => Err(ClientError::EmptyLine),
        Some(b'*') => Ok(resp::decode_frame(buf, limits)?),
        Some(_) => Err(ClientError::Inline),
    }
}

/// Client request limits derived from the pool's maximum request size.
pub fn limits(max_request_bytes: usize) -> resp::Limits {
    resp::Limits {
        max_bulk_len: max_request_bytes,
        max_array_len: (max_request_bytes / 4).clamp(16, 1024 * 1024),
        max_depth: 1,
        max_line_len: 1024,
    }
}

/// Serves one Redis client until it closes, sends QUIT or sends bad input.
pub async fn serve(stream: TcpStream, pool: Arc<Pool>) {
    let (mut reader, tx, writing) = client::open(stream, Proto::Redis);
    let mut session = Session {
        authenticated: pool.routing.load().config.redis_auth.is_none(),
    };
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut stacks = Stacks::default();
    'conn: loop {
        if !client::read_more(&mut reader, &mut buf).await {
            break;
        }
        // One load per batch: a reload applies from the next batch on.
        let routing = pool.routing.load_full();
        stacks.update(&routing);
        let max = routing.config.max_request_bytes;
        let limits = limits(max);
        loop {
            let failure = match next_request(&mut buf, &limits) {
                Ok(Some((raw, _))) if raw.len() > max => ClientError::TooLarge(max),
                Ok(Some((raw, value))) => {
                    match plan(raw, value, &routing.ring, &routing.config, &mut session) {
                        Ok(plan) => {
                            if execute(plan, &mut stacks, &tx).await {
                                continue;
                            }
                            break 'conn;
                        }
                        Err(e) => e,
                    }
                }
                Ok(None) if buf.len() > max => ClientError::TooLarge(max),
                Ok(None) => break,
                Err(e) => e,
            };
            let mut out = BytesMut::new();
            error_reply(Proto::Redis, &failure.to_string(), &mut out);
            client::refuse(&pool.name, &failure, out.freeze(), &tx).await;
            break 'conn;
        }
    }
    drop(tx);
    let _ = writing.await;
}
