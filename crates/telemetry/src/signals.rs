//! The signals every Tessera binary handles, the same way.
//!
//! | Signal | Effect |
//! |---|---|
//! | SIGTERM (the kubelet), SIGINT (Ctrl-C) | drain and exit |
//! | SIGHUP | the binary's reopen action, if it has one (the ambassador re-reads its pool file); else logged |
//! | SIGUSR1, SIGUSR2 | logged, nothing else |
//!
//! The default action of each is to end the process, and logrotate and
//! process supervisors send SIGHUP and SIGUSR1 to daemons as a matter of
//! course, so [`Signals::install`] must run before a binary starts serving.
//! Once installed, a handler stays for the life of the process (tokio never
//! restores the default), so a signal that arrives while draining is
//! harmless too.

use tokio::signal::unix::{SignalKind, signal};

/// A signal a Tessera binary acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Terminate,
    Interrupt,
    Hangup,
    User1,
    User2,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Terminate => "SIGTERM",
            Signal::Interrupt => "SIGINT",
            Signal::Hangup => "SIGHUP",
            Signal::User1 => "SIGUSR1",
            Signal::User2 => "SIGUSR2",
        }
    }

    /// True for the signals that end the process.
    pub fn is_shutdown(self) -> bool {
        matches!(self, Signal::Terminate | Signal::Interrupt)
    }
}

/// The installed handlers.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    /// Takes over SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 for the rest
    /// of the process's life. Call it inside a tokio runtime, before
    /// listening.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Terminate,
            _ = self.int.recv() => Signal::Interrupt,
            _ = self.hup.recv() => Signal::Hangup,
            _ = self.usr1.recv() => Signal::User1,
            _ = self.usr2.recv() => Signal::User2,
        }
    }

    /// Waits for SIGTERM or SIGINT and returns it. SIGHUP runs `on_hangup`;
    /// SIGUSR1 and SIGUSR2 are logged and change nothing.
    pub async fn shutdown(mut self, mut on_hangup: impl FnMut()) -> Signal {
        loop {
            let s = self.recv().await;
            if s.is_shutdown() {
                tracing::info!(signal = s.name(), "shutting down");
                return s;
            }
            if s == Signal::Hangup {
                on_hangup();
            } else {
                tracing::info!(signal = s.name(), "signal ignored");
            }
        }
    }
}

/// The SIGHUP action of a binary with nothing to reopen: its logs go to
/// stderr, which the container runtime rotates.
pub fn nothing_to_reopen() {
    tracing::info!(
        signal = "SIGHUP",
        "nothing to reopen: logs go to stderr; still serving"
    );
}
