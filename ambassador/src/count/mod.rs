//! A layer counting requests and failed requests by command and shard.

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use crate::error::UpstreamError;
use crate::metrics::ShardCounters;
use crate::upstream::service::Call;

/// Counts every call into `tessera_ambassador_requests_total` and every
/// failed one into `tessera_ambassador_errors_total`.
pub struct Count<S> {
    inner: S,
    counters: Arc<ShardCounters>,
}

pub struct CountLayer {
    counters: Arc<ShardCounters>,
}

/// The layer for one shard's counters.
pub fn layer(counters: Arc<ShardCounters>) -> CountLayer {
    CountLayer { counters }
}

impl<S> Layer<S> for CountLayer {
    type Service = Count<S>;
    fn layer(&self, inner: S) -> Count<S> {
        Count {
            inner,
            counters: self.counters.clone(),
        }
    }
}

impl<S> Service<Call> for Count<S>
where
    S: Service<Call, Error = UpstreamError>,
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = UpstreamError;
    type Future = CountFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let command = call.command;
        self.counters.request(command);
        CountFuture {
            inner: self.inner.call(call),
            counters: self.counters.clone(),
            command,
        }
    }
}

pub struct CountFuture<F> {
    inner: F,
    counters: Arc<ShardCounters>,
    command: usize,
}

impl<F, T> Future for CountFuture<F>
where
    F: Future<Output = Result<T, UpstreamError>> + Unpin,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let out = Pin::new(&mut this.inner).poll(cx);
        if let Poll::Ready(Err(e)) = &out {
            this.counters.error(this.command, e.label());
        }
        out
    }
}
