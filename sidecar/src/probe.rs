//! Runs checks with a deadline, shares one in-flight check between
//! concurrent requests, and records the outcome in the metrics.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::checks::{Checker, Kind, Verdict};
use crate::metrics::Metrics;

/// A finished check, as served to every request that waited for it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    pub duration: Duration,
}

type InFlight = Shared<BoxFuture<'static, Outcome>>;

pub struct Prober {
    checker: Arc<Checker>,
    metrics: Arc<Metrics>,
    timeout: Duration,
    readiness: Mutex<Option<InFlight>>,
    liveness: Mutex<Option<InFlight>>,
}

impl Prober {
    pub fn new(checker: Checker, metrics: Arc<Metrics>, timeout: Duration) -> Prober {
        Prober {
            checker: Arc::new(checker),
            metrics,
            timeout,
            readiness: Mutex::new(None),
            liveness: Mutex::new(None),
        }
    }

    /// Runs the check, or joins the one already running. Its duration is
    /// bounded by the probe timeout however the engine behaves.
    pub async fn probe(&self, kind: Kind) -> Outcome {
        let slot = match kind {
            Kind::Readiness => &self.readiness,
            Kind::Liveness => &self.liveness,
        };
        let fut = {
            let mut g = slot.lock().unwrap_or_else(|p| p.into_inner());
            match &*g {
                Some(f) => f.clone(),
                None => {
                    let f = self.start(kind);
                    *g = Some(f.clone());
                    f
                }
            }
        };
        let out = fut.clone().await;
        let mut g = slot.lock().unwrap_or_else(|p| p.into_inner());
        if g.as_ref().is_some_and(|f| f.ptr_eq(&fut)) {
            *g = None;
        }
        out
    }

    fn start(&self, kind: Kind) -> InFlight {
        let checker = self.checker.clone();
        let metrics = self.metrics.clone();
        let timeout = self.timeout;
        async move {
            let start = Instant::now();
            let verdict = match tokio::time::timeout(timeout, checker.check(kind)).await {
                Ok(v) => v,
                Err(_) => Verdict {
                    ok: false,
                    reason: format!("no answer within the probe timeout of {timeout:?}"),
                    cause: "timeout",
                },
            };
            let duration = start.elapsed();
            metrics.record(kind, &verdict, duration, checker.under_replicated());
            Outcome { verdict, duration }
        }
        .boxed()
        .shared()
    }
}
