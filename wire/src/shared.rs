//! State shared by the listener and every connection: the engine, the settings,
//! the metrics, the connection count, and each session's cancel signal (routed by
//! pid and secret for CancelRequests, and used to wake idle sessions and interrupt
//! running statements at shutdown).
//!
//! Invariants: a [`Slot`] counts against `max_connections` from accept until the
//! connection ends; a [`Registration`] makes a session cancellable only while it
//! lives; a cancel needs both the pid and its secret.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::task::AtomicWaker;
use hindsight_sql::{Engine, ErrorKind, SqlError};
use tokio::sync::Notify;

use crate::config::WireConfig;
use crate::metrics::Metrics;
use crate::sqlstate::{ProtocolError, WireError};

/// What the server signals to one session: cancel the statement it runs (a
/// CancelRequest), or stop waiting for its next message (shutdown).
#[derive(Debug, Default)]
pub struct CancelSignal {
    notify: Notify,
    /// Set when the server, not a client, interrupts the statement (shutdown).
    terminate: AtomicBool,
    /// The session's wait for its next message. An `AtomicWaker` rather than a
    /// `watch` receiver: registering is one compare-and-swap, where arming a watch
    /// takes a lock (once per round trip, measured in profiles).
    idle: AtomicWaker,
}

impl CancelSignal {
    /// Wake the running statement (if none runs, nothing is remembered).
    pub fn cancel(&self) {
        self.notify.notify_waiters();
    }

    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// Interrupt the running statement because the server shuts down.
    fn terminate(&self) {
        self.terminate.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// The error an interrupted statement reports: 57014 for a CancelRequest, 57P01
    /// (fatal: the connection closes) at shutdown.
    pub(crate) fn reason(&self) -> WireError {
        if self.terminate.load(Ordering::Acquire) {
            ProtocolError::AdminShutdown.into()
        } else {
            SqlError::new(
                ErrorKind::QueryCanceled,
                "canceling statement due to user request",
            )
            .into()
        }
    }

    /// Have the session's next-message wait woken by [`CancelSignal::wake_idle`].
    pub fn register_idle(&self, waker: &std::task::Waker) {
        self.idle.register(waker);
    }

    fn wake_idle(&self) {
        self.idle.wake();
    }
}

/// What every connection shares.
pub struct Shared {
    pub engine: Arc<Engine>,
    pub config: WireConfig,
    pub metrics: Arc<Metrics>,
    /// Set once at shutdown; sessions check it before each wait for a message.
    stopping: AtomicBool,
    sessions: Mutex<HashMap<i32, (i32, Arc<CancelSignal>)>>,
    /// Bumped each time this node stops leading its cluster: sessions registered
    /// under an older value end with 57P01 before their next statement.
    leadership_epoch: AtomicU64,
    next_pid: AtomicI32,
    open: AtomicUsize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish()
    }
}

/// A registered session: unregisters itself and releases its slot when dropped.
#[derive(Debug)]
pub struct Registration {
    shared: Arc<Shared>,
    pub pid: i32,
    pub secret: i32,
    pub cancel: Arc<CancelSignal>,
    /// The leadership epoch the session started in.
    pub epoch: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shared.sessions.lock() {
            s.remove(&self.pid);
        }
    }
}

/// A connection slot (counted against `max_connections`).
#[derive(Debug)]
pub struct Slot {
    shared: Arc<Shared>,
    pub admitted: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, Ordering::AcqRel);
        self.shared
            .metrics
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    /// The state of a new server over `engine`.
    pub(crate) fn new(engine: Arc<Engine>, config: WireConfig) -> Shared {
        Shared {
            engine,
            config,
            metrics: Arc::new(Metrics::default()),
            stopping: AtomicBool::new(false),
            sessions: Mutex::new(HashMap::new()),
            leadership_epoch: AtomicU64::new(0),
            next_pid: AtomicI32::new(std::process::id() as i32 % 100_000 * 10_000 + 1),
            open: AtomicUsize::new(0),
        }
    }

    pub(crate) fn slot(self: &Arc<Self>) -> Slot {
        let n = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        Metrics::inc(&self.metrics.connections_open);
        Metrics::inc(&self.metrics.connections_total);
        Slot {
            shared: self.clone(),
            admitted: n <= self.config.max_connections,
        }
    }

    pub fn register(self: &Arc<Self>) -> Registration {
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
        let secret = random_i32(pid);
        let cancel = Arc::new(CancelSignal::default());
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(pid, (secret, cancel.clone()));
        }
        Registration {
            shared: self.clone(),
            pid,
            secret,
            cancel,
            epoch: self.leadership_epoch.load(Ordering::Acquire),
        }
    }

    /// Whether the server is shutting down.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Begin shutdown: every session waiting for a message is woken and sees
    /// [`Shared::stopping`] (one registering its wait later sees the flag first).
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        if let Ok(s) = self.sessions.lock() {
            s.values().for_each(|(_, signal)| signal.wake_idle());
        }
    }

    /// This node stopped leading its cluster: every current session ends with 57P01
    /// before its next statement (idle ones at once), so pools reconnect and find
    /// the new leader. Statements running now finish and are answered first.
    pub fn end_leader_sessions(&self) {
        self.leadership_epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(s) = self.sessions.lock() {
            s.values().for_each(|(_, signal)| signal.wake_idle());
        }
    }

    /// Whether the node stopped leading since `epoch`.
    pub(crate) fn demoted_since(&self, epoch: u64) -> bool {
        self.leadership_epoch.load(Ordering::Acquire) != epoch
    }

    /// The shutdown grace period is over: interrupt every running statement.
    pub(crate) fn terminate_statements(&self) {
        if let Ok(s) = self.sessions.lock() {
            s.values().for_each(|(_, signal)| signal.terminate());
        }
    }

    /// Handle a CancelRequest: cancel only when pid and secret match.
    pub fn cancel(&self, pid: i32, secret: i32) {
        let target = self.sessions.lock().ok().and_then(|s| {
            s.get(&pid)
                .filter(|(k, _)| *k == secret)
                .map(|(_, c)| c.clone())
        });
        if let Some(c) = target {
            tracing::info!(pid, "cancel request");
            c.cancel();
        }
    }
}

fn random_i32(seed: i32) -> i32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i32(seed);
    h.finish() as i32
}
