//! Thread-per-core workers: one single-threaded tokio runtime per core.
//!
//! A client connection lives on one worker, and so do the shard connections
//! it uses (each shard has connections on every worker), so a request never
//! crosses threads: no cross-thread wake-ups or shared queues on the data
//! path. The cost is `server_connections` connections per shard per worker.

use std::cell::Cell;
use std::sync::OnceLock;

use tokio::runtime::Handle;

static HANDLES: OnceLock<Vec<Handle>> = OnceLock::new();

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Starts `n` worker threads, once per process.
pub fn start(n: usize) -> std::io::Result<&'static [Handle]> {
    let mut handles = Vec::with_capacity(n);
    for i in 0..n.max(1) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("ambassador-worker-{i}"))
            .spawn(move || {
                WORKER.with(|w| w.set(i));
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(std::future::pending::<()>());
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
        handles.push(
            rx.recv()
                .map_err(|_| std::io::Error::other("worker thread died"))??,
        );
    }
    Ok(HANDLES.get_or_init(|| handles))
}

/// The workers' runtimes; empty when none were started (unit tests), in
/// which case everything runs on the caller's runtime.
pub fn handles() -> &'static [Handle] {
    HANDLES.get().map_or(&[], Vec::as_slice)
}

/// The index of the worker running the caller (0 off the workers).
pub fn current() -> usize {
    WORKER.with(Cell::get)
}
