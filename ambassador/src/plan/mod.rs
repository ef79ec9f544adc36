//! What to do with one client request, decided without I/O: answer it in
//! the proxy, send it to one shard, or split it into one request per shard.
//!
//! Both protocols plan here and [`execute`] carries a plan out, so routing
//! rules are unit-tested and fuzzed (`fuzz/fuzz_targets/*_plan.rs`) with no
//! sockets and no runtime.

#[cfg(test)]
mod tests;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::client::{GatherOp, Part, Pending, Stacks};
use crate::ring::Ring;
use crate::upstream::service::Call;

/// The plan for one request.
pub enum Plan {
    /// The proxy answers with these bytes.
    Reply(Bytes),
    /// The proxy answers (possibly with nothing), then closes the connection.
    Close(Bytes),
    /// Shard `shard` answers `call`.
    One { shard: usize, call: Call },
    /// One call per shard; the replies are merged by `op` into the answer
    /// for `keys` keys.
    Split {
        op: GatherOp,
        parts: Vec<SplitPart>,
        keys: usize,
    },
}

/// One shard's share of a split request.
pub struct SplitPart {
    pub shard: usize,
    pub call: Call,
    /// Where this part's keys sit in the original request, ascending.
    pub positions: Vec<u32>,
}

/// Groups key positions by the shard that owns each key, shards in order of
/// first appearance. `None` when no shard is live.
pub fn group_by_shard<'k>(
    keys: impl Iterator<Item = &'k [u8]>,
    ring: &Ring,
) -> Option<Vec<(usize, Vec<u32>)>> {
    let mut groups: Vec<(usize, Vec<u32>)> = Vec::new();
    for (k, key) in keys.enumerate() {
        let shard = ring.route(key)?;
        match groups.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, positions)) => positions.push(k as u32),
            None => groups.push((shard, vec![k as u32])),
        }
    }
    Some(groups)
}

/// Carries a plan out: sends its calls through the connection's shard
/// stacks and queues where the reply will come from on `replies`, in
/// request order. False when the connection is to close: the plan said so
/// or the writer is gone.
pub async fn execute(plan: Plan, stacks: &mut Stacks, replies: &mpsc::Sender<Pending>) -> bool {
    let (pending, close) = match plan {
        Plan::Reply(b) => (Some(Pending::Ready(b)), false),
        Plan::Close(b) => (Some(Pending::Ready(b)), true),
        Plan::One { shard, call } => {
            let noreply = call.noreply;
            let reply = stacks.call(shard, call).await;
            ((!noreply).then_some(Pending::One(reply)), false)
        }
        Plan::Split { op, parts, keys } => {
            let mut pending = Vec::with_capacity(parts.len());
            for part in parts {
                let shard = stacks.label(part.shard);
                let reply = stacks.call(part.shard, part.call).await;
                pending.push(Part {
                    reply,
                    positions: part.positions,
                    shard,
                });
            }
            let gather = Pending::Gather {
                op,
                parts: pending,
                keys,
            };
            (Some(gather), false)
        }
    };
    match pending {
        Some(p) => replies.send(p).await.is_ok() && !close,
        None => true,
    }
}
