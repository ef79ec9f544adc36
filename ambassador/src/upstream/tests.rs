//! The connection task against scripted shards on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower::{Service, ServiceExt};

use super::service::{Call, ReplyFuture};
use super::*;

async fn call(up: &Upstream, frame: &'static [u8]) -> ReplyFuture {
    let mut svc = up.service();
    svc.ready().await.unwrap();
    svc.call(Call {
        frame: Bytes::from_static(frame),
        kind: ReplyKind::Resp,
        command: 0,
        noreply: false,
    })
}

fn settings(addr: String, timeout: Option<Duration>, health: Arc<Health>) -> Settings {
    Settings {
        shard: "test".into(),
        addr,
        timeout,
        connections: 1,
        auth: None,
        db: 0,
        max_reply_bytes: crate::config::DEFAULT_MAX_REPLY_BYTES,
        latency: prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("t", "t"))
            .unwrap(),
        health,
    }
}

/// A shard that answers every `*1\r\n$1\r\nX\r\n` with `:<n>` in order,
/// reading in whatever chunks arrive.
async fn counting_shard() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut n = 0;
        loop {
            let mut chunk = [0u8; 4096];
            let r = s.read(&mut chunk).await.unwrap();
            if r == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..r]);
            let frame = b"*1\r\n$1\r\nX\r\n";
            let mut out = Vec::new();
            while buf.starts_with(frame) {
                buf.drain(..frame.len());
                n += 1;
                out.extend_from_slice(format!(":{n}\r\n").as_bytes());
            }
            s.write_all(&out).await.unwrap();
        }
    });
    addr
}

#[tokio::test]
async fn pipelined_replies_are_matched_in_order() {
    let addr = counting_shard().await;
    let health = Arc::new(Health::new(1, 2, None));
    let up = Upstream::spawn(settings(addr, Some(Duration::from_secs(5)), health));
    let mut waits = Vec::new();
    for _ in 0..500 {
        waits.push(call(&up, b"*1\r\n$1\r\nX\r\n").await);
    }
    for (i, w) in waits.into_iter().enumerate() {
        assert_eq!(w.await.unwrap(), Bytes::from(format!(":{}\r\n", i + 1)));
    }
}

#[tokio::test]
async fn a_silent_shard_times_out_and_counts_a_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Accepts and never answers.
    tokio::spawn(async move {
        let (_s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let health = Arc::new(Health::new(7, 1, Some(tx)));
    let up = Upstream::spawn(settings(addr, Some(Duration::from_millis(100)), health));
    let start = tokio::time::Instant::now();
    let a = call(&up, b"*1\r\n$4\r\nPING\r\n").await;
    let b = call(&up, b"*1\r\n$4\r\nPING\r\n").await;
    for r in [a.await, b.await] {
        assert!(
            matches!(r, Err(UpstreamError::Timeout { ms: 100, .. })),
            "{r:?}"
        );
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(1000),
        "{took:?}"
    );
    assert_eq!(
        rx.recv().await,
        Some(7),
        "limit 1: ejected after one failure"
    );
}

#[tokio::test]
async fn a_refused_connection_fails_fast() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let health = Arc::new(Health::new(1, 10, None));
    let up = Upstream::spawn(settings(addr, None, health.clone()));
    let r = call(&up, b"*1\r\n$4\r\nPING\r\n").await.await;
    assert!(matches!(r, Err(UpstreamError::Connect { .. })), "{r:?}");
    assert_eq!(health.failures(), 1);
}

#[test]
fn health_ejects_at_the_limit_and_success_resets() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let h = Health::new(3, 2, Some(tx));
    h.failure();
    h.success();
    h.failure();
    assert!(rx.try_recv().is_err(), "not consecutive");
    h.failure();
    assert_eq!(rx.try_recv().ok(), Some(3));
    assert_eq!(h.failures(), 0);
}

/// A shard that answers its first request with `chunks`, `gap` apart, then
/// goes quiet.
async fn trickling_shard(chunks: Vec<&'static [u8]>, gap: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = s.read(&mut [0u8; 1024]).await;
        for chunk in chunks {
            tokio::time::sleep(gap).await;
            if s.write_all(chunk).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    addr
}

#[tokio::test]
async fn a_reply_still_streaming_in_is_not_timed_out() {
    // Six pieces 60 ms apart: 360 ms in all, against a 250 ms timeout.
    let pieces: Vec<&'static [u8]> =
        vec![b"*3\r\n", b"$1\r\na", b"\r\n", b":1", b"\r\n+O", b"K\r\n"];
    let addr = trickling_shard(pieces, Duration::from_millis(60)).await;
    let health = Arc::new(Health::new(1, 1, None));
    let up = Upstream::spawn(settings(addr, Some(Duration::from_millis(250)), health));
    let reply = call(&up, b"*1\r\n$4\r\nPING\r\n").await.await;
    assert_eq!(
        reply,
        Ok(Bytes::from_static(b"*3\r\n$1\r\na\r\n:1\r\n+OK\r\n"))
    );
}

#[tokio::test]
async fn a_reply_that_stops_halfway_times_out() {
    let addr = trickling_shard(vec![b"*2\r\n:1\r\n"], Duration::from_millis(10)).await;
    let health = Arc::new(Health::new(1, 1, None));
    let up = Upstream::spawn(settings(addr, Some(Duration::from_millis(200)), health));
    let start = tokio::time::Instant::now();
    let reply = call(&up, b"*1\r\n$4\r\nPING\r\n").await.await;
    assert!(
        matches!(reply, Err(UpstreamError::Timeout { ms: 200, .. })),
        "{reply:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_refused_auth_is_an_auth_error_and_no_failure() {
    let addr = trickling_shard(
        vec![b"-WRONGPASS invalid username-password pair\r\n"],
        Duration::ZERO,
    )
    .await;
    let health = Arc::new(Health::new(1, 10, None));
    let mut s = settings(addr, None, health.clone());
    s.auth = Some("wrong".into());
    let up = Upstream::spawn(s);
    let reply = call(&up, b"*1\r\n$4\r\nPING\r\n").await.await;
    assert!(
        matches!(&reply, Err(UpstreamError::Auth { reason, .. }) if reason.starts_with("WRONGPASS")),
        "{reply:?}"
    );
    assert_eq!(health.failures(), 0, "not counted toward ejection");
}
