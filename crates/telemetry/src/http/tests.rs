use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::*;
use crate::testkit;

fn ok(body: &'static str) -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from_static(body.as_bytes())))
}

/// Serves `ok` (after `delay`) with `settings` until the returned sender
/// fires or drops; the join handle resolves when the drain is over.
async fn start(
    settings: Settings,
    delay: Duration,
) -> (u16, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel::<()>();
    let handler = move |_req: Request<Incoming>| async move {
        tokio::time::sleep(delay).await;
        ok("ok\n")
    };
    let task = tokio::spawn(serve(listener, handler, settings, async {
        let _ = stopped.await;
    }));
    (port, stop, task)
}

/// Sends one GET and returns the status line, or the I/O error.
async fn get(port: u16) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out.lines().next().unwrap_or_default().to_owned())
}

fn quick() -> Settings {
    Settings {
        header_read_timeout: Duration::from_millis(400),
        max_connections: 4,
        drain_timeout: Duration::from_secs(2),
    }
}

#[test]
fn backoff_doubles_up_to_its_cap_and_resets_on_success() {
    let mut b = AcceptBackoff::new();
    let waits: Vec<Duration> = (0..10).map(|_| b.failed()).collect();
    assert_eq!(waits[0], AcceptBackoff::MIN);
    assert_eq!(waits[1], AcceptBackoff::MIN * 2);
    assert!(waits.windows(2).all(|w| w[1] >= w[0]));
    assert_eq!(*waits.last().unwrap(), AcceptBackoff::MAX);
    assert_eq!(b.succeeded(), 10);
    assert_eq!(b.failed(), AcceptBackoff::MIN);
}

#[tokio::test]
async fn answers_requests() {
    let (port, _stop, _task) = start(quick(), Duration::ZERO).await;
    assert_eq!(get(port).await.unwrap(), "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn slow_and_silent_clients_are_cut_off_after_the_header_timeout() {
    let (port, _stop, _task) = start(quick(), Duration::ZERO).await;
    let silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let slow = tokio::task::spawn_blocking(move || {
        testkit::slow_header_cut_after(port, Duration::from_secs(5))
    });
    let start = Instant::now();
    let mut silent = silent;
    let n = silent.read(&mut [0u8; 64]).await.unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    let silent_cut = start.elapsed();
    let slow_cut = slow.await.unwrap();
    for cut in [silent_cut, slow_cut] {
        assert!(
            cut >= Duration::from_millis(350) && cut < Duration::from_secs(3),
            "cut after {cut:?}, timeout 400 ms"
        );
    }
    // Meanwhile and after, others are served.
    assert_eq!(get(port).await.unwrap(), "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn at_the_connection_cap_new_clients_wait_until_one_closes() {
    let settings = Settings {
        header_read_timeout: Duration::from_secs(30),
        ..quick()
    };
    let (port, _stop, _task) = start(settings, Duration::ZERO).await;
    let mut idle = Vec::new();
    for _ in 0..settings.max_connections {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    // Let the server accept them all.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = tokio::spawn(get(port));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "served past the cap");
    drop(idle.pop());
    let status = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("served once a connection closed")
        .unwrap()
        .unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
}

/// A stand-in for a TLS handshake: the client first sends one byte, `Y`
/// to go on to HTTP; anything else (or nothing within 300 ms) closes it.
async fn greeting(mut tcp: TcpStream) -> Option<TcpStream> {
    let mut b = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(300), tcp.read_exact(&mut b)).await {
        Ok(Ok(_)) if b[0] == b'Y' => Some(tcp),
        _ => None,
    }
}

async fn greet_and_get(port: u16, greeting: &[u8]) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(greeting).await?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out.lines().next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn serve_with_runs_the_wrap_per_connection_without_holding_up_accept() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_with(
        listener,
        greeting,
        |_req: Request<Incoming>| async { ok("ok\n") },
        quick(),
        async {
            let _ = stopped.await;
        },
    ));
    assert_eq!(greet_and_get(port, b"Y").await.unwrap(), "HTTP/1.1 200 OK");
    // A refused handshake closes the connection without an answer.
    assert_eq!(greet_and_get(port, b"N").await.unwrap_or_default(), "");
    // A client that never greets holds its own task, not the listener:
    // others are served meanwhile, and its slot comes back.
    let silent = silent_clients(port, 3).await;
    let start = Instant::now();
    assert_eq!(greet_and_get(port, b"Y").await.unwrap(), "HTTP/1.1 200 OK");
    assert!(
        start.elapsed() < Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    drop(silent);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("serve_with returns after the drain")
        .unwrap();
}

/// `n` connections that send nothing.
async fn silent_clients(port: u16, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    v
}

#[tokio::test]
async fn drain_finishes_requests_in_progress_and_refuses_new_ones() {
    let (port, stop, task) = start(quick(), Duration::from_millis(500)).await;
    let in_progress = tokio::spawn(get(port));
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.send(()).unwrap();
    assert_eq!(in_progress.await.unwrap().unwrap(), "HTTP/1.1 200 OK");
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("serve returns after the drain")
        .unwrap();
    assert!(get(port).await.is_err(), "the listener is closed");
}

#[tokio::test]
async fn drain_gives_up_on_a_request_that_outlasts_its_timeout() {
    let settings = Settings {
        drain_timeout: Duration::from_millis(300),
        ..quick()
    };
    let (port, stop, task) = start(settings, Duration::from_secs(30)).await;
    let _stuck = tokio::spawn(get(port));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let start = Instant::now();
    stop.send(()).unwrap();
    task.await.unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "drain took {took:?}");
}

/// Set in the environment of [`child_server`]'s process.
const CHILD: &str = "TESSERA_TELEMETRY_TEST_CHILD";

/// The server as a binary runs it (signals installed first, then `serve`
/// until SIGTERM), in a process of its own so that its descriptor limit
/// can be lowered. Run by `a_server_process_survives_signals_fd_exhaustion_and_slow_clients`.
#[test]
#[ignore = "the child process of another test"]
fn child_server() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let signals = crate::Signals::install().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("serving on {}", listener.local_addr().unwrap().port());
        let handler = |_req: Request<Incoming>| async { ok("ok\n") };
        let settings = Settings {
            header_read_timeout: Duration::from_secs(3),
            ..Settings::default()
        };
        serve(listener, handler, settings, async {
            signals.shutdown(crate::signals::nothing_to_reopen).await;
        })
        .await;
    });
}

fn spawn_child(fd_limit: usize) -> (testkit::Guard, u16) {
    let exe = std::env::current_exe().unwrap();
    let mut child = testkit::Guard(
        testkit::with_fd_limit(exe, fd_limit)
            .args(["--exact", "http::tests::child_server", "--ignored"])
            .args(["--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads on, so that the child never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            // libtest prints "test <name> ... " first, on the same line.
            if let Some((_, p)) = line.split_once("serving on ") {
                let _ = tx.send(p.trim().parse::<u16>().unwrap());
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the child prints its port");
    (child, port)
}

#[test]
fn a_server_process_survives_signals_fd_exhaustion_and_slow_clients() {
    let (mut child, port) = spawn_child(48);
    assert!(testkit::http_ok(port, "/"));
    testkit::assert_signals_harmless(&mut child.0, || testkit::http_ok(port, "/"));
    testkit::assert_fd_exhaustion_survived(child.0.id(), port, || testkit::http_ok(port, "/"));
    testkit::assert_slow_headers_cut(port, Duration::from_secs(3));
    testkit::assert_terminates(&mut child.0, Duration::from_secs(10));
}
