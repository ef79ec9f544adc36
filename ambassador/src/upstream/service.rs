//! The shard connection as a tower [`Service`]: a client connection holds
//! one per shard, bound to a connection on its own worker.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::PollSender;
use tower::Service;

use super::{Reply, ReplyKind, Request};
use crate::error::UpstreamError;

/// One request for a shard.
pub struct Call {
    pub frame: Bytes,
    pub kind: ReplyKind,
    /// Index into the protocol's command names, for metrics.
    pub command: usize,
    /// memcached `noreply`: nothing comes back and nothing is awaited.
    pub noreply: bool,
}

/// Sends calls to one shard connection; waits (in `poll_ready`) while its
/// queue is full.
pub struct ShardService {
    tx: PollSender<Request>,
    shard: Arc<str>,
}

impl ShardService {
    pub fn new(tx: mpsc::Sender<Request>, shard: Arc<str>) -> Self {
        ShardService {
            tx: PollSender::new(tx),
            shard,
        }
    }
}

impl Service<Call> for ShardService {
    type Response = Bytes;
    type Error = UpstreamError;
    type Future = ReplyFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        // A closed queue (the shard was removed) is reported by the call's
        // future, so that a client's other requests are not held up.
        self.tx.poll_reserve(cx).map(|_| Ok(()))
    }

    fn call(&mut self, call: Call) -> ReplyFuture {
        let (reply, future) = if call.noreply {
            (None, ReplyFuture::Done(Some(Ok(Bytes::new()))))
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), ReplyFuture::Waiting(rx))
        };
        let request = Request {
            frame: call.frame,
            kind: call.kind,
            reply,
        };
        match self.tx.send_item(request) {
            Ok(()) => future,
            Err(_) => ReplyFuture::Done(Some(Err(UpstreamError::Removed {
                shard: self.shard.clone(),
            }))),
        }
    }
}

/// The reply to a [`Call`].
pub enum ReplyFuture {
    Waiting(oneshot::Receiver<Reply>),
    Done(Option<Reply>),
}

impl Future for ReplyFuture {
    type Output = Reply;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        match self.get_mut() {
            ReplyFuture::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(UpstreamError::Dropped))),
            ReplyFuture::Done(r) => Poll::Ready(r.take().unwrap_or(Err(UpstreamError::Dropped))),
        }
    }
}
