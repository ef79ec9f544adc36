use std::sync::Arc;

use bytes::Bytes;
use tower::{ServiceBuilder, ServiceExt, service_fn};

use super::*;
use crate::metrics::METRICS;
use crate::upstream::ReplyKind;

fn call(command: usize, frame: &'static [u8]) -> Call {
    Call {
        frame: Bytes::from_static(frame),
        kind: ReplyKind::Resp,
        command,
        noreply: false,
    }
}

#[tokio::test]
async fn counts_requests_and_errors_by_command_and_shard() {
    static NAMES: &[&str] = &["get", "set"];
    let counters = Arc::new(ShardCounters::new("count-test".into(), "s0".into(), NAMES));
    // Fails calls whose frame is "fail", echoes the others.
    let inner = service_fn(|c: Call| {
        futures::future::ready(if &c.frame[..] == b"fail" {
            Err(UpstreamError::NoLiveShards)
        } else {
            Ok(c.frame)
        })
    });
    let mut svc = ServiceBuilder::new().layer(layer(counters)).service(inner);
    assert_eq!(
        svc.ready()
            .await
            .unwrap()
            .call(call(0, b"a"))
            .await
            .unwrap(),
        Bytes::from_static(b"a")
    );
    assert_eq!(
        svc.ready()
            .await
            .unwrap()
            .call(call(0, b"b"))
            .await
            .unwrap(),
        Bytes::from_static(b"b")
    );
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(call(1, b"fail"))
            .await
            .is_err()
    );
    let requests = |cmd| {
        METRICS
            .requests
            .with_label_values(&["count-test", cmd, "s0"])
            .get()
    };
    assert_eq!((requests("get"), requests("set")), (2, 1));
    let errors = |cmd| {
        METRICS
            .errors
            .with_label_values(&["count-test", cmd, "s0", "no_live_shards"])
            .get()
    };
    assert_eq!((errors("get"), errors("set")), (0, 1));
}
