//! The listener: accepts connections, enforces the connection limit, routes
//! CancelRequests to the session they name, and drains connections on shutdown.
//!
//! Invariants: every accepted socket gets TCP_NODELAY; a connection beyond
//! `max_connections` still completes the startup exchange so the client reads a
//! 53300 error instead of a reset; after shutdown is signalled no new connection is
//! served, and `serve` returns only when every connection task has ended (idle ones
//! are told 57P01 at once, busy ones finish their statement within the grace period).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::task::AtomicWaker;
use hindsight_sql::{Engine, ErrorKind, SqlError};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::auth::AuthConfig;
use crate::conn::Connection;
use crate::metrics::Metrics;
use crate::sqlstate::{ProtocolError, WireError};

/// After the shutdown grace period, how long interrupted statements get to report
/// 57P01 before their connections are aborted.
const TERMINATE_GRACE: Duration = Duration::from_secs(2);

/// Settings of the protocol server.
#[derive(Clone)]
pub struct WireConfig {
    pub max_connections: usize,
    /// Largest protocol message accepted (bytes); larger ones end the connection.
    pub max_message_bytes: usize,
    pub auth: AuthConfig,
    pub tls: Option<pgwire::tokio::TlsAcceptor>,
    /// Close sessions idle (outside a transaction) this long; None: never.
    pub idle_session_timeout: Option<Duration>,
    /// Statement timeout applied to new sessions (0: none).
    pub statement_timeout_ms: u64,
    /// How long busy connections may run after shutdown was signalled.
    pub shutdown_grace: Duration,
    /// Where statements other than point lookups are planned and executed. The
    /// connections' own runtime is kept small (on 2 CPUs one worker: several workers
    /// that never wait are time-sliced by the kernel against the clients, and the
    /// connections queued on a descheduled worker wait out its slice, which was the
    /// p99 of busy lookups); this one gets the cores for queries. None: statements
    /// run on the connection's runtime (tests, embedding).
    pub query_runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for WireConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireConfig")
            .field("max_connections", &self.max_connections)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("auth", &self.auth)
            .field("tls", &self.tls.is_some())
            .field("idle_session_timeout", &self.idle_session_timeout)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("query_runtime", &self.query_runtime.is_some())
            .finish()
    }
}

impl Default for WireConfig {
    fn default() -> Self {
        WireConfig {
            max_connections: 100,
            max_message_bytes: 64 << 20,
            auth: AuthConfig::loopback_trust(),
            tls: None,
            idle_session_timeout: None,
            statement_timeout_ms: 0,
            shutdown_grace: Duration::from_secs(30),
            query_runtime: None,
        }
    }
}

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
    fn slot(self: &Arc<Self>) -> Slot {
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
        }
    }

    /// Whether the server is shutting down.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Begin shutdown: every session waiting for a message is woken and sees
    /// [`Shared::stopping`] (one registering its wait later sees the flag first).
    fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        if let Ok(s) = self.sessions.lock() {
            s.values().for_each(|(_, signal)| signal.wake_idle());
        }
    }

    /// The shutdown grace period is over: interrupt every running statement.
    fn terminate_statements(&self) {
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

/// The Postgres-protocol server over one engine.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    pub fn new(engine: Arc<Engine>, config: WireConfig) -> Server {
        Server {
            shared: Arc::new(Shared {
                engine,
                config,
                metrics: Arc::new(Metrics::default()),
                stopping: AtomicBool::new(false),
                sessions: Mutex::new(HashMap::new()),
                next_pid: AtomicI32::new(std::process::id() as i32 % 100_000 * 10_000 + 1),
                open: AtomicUsize::new(0),
            }),
        }
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Serve connections from `listener` until `stop` resolves, then drain.
    pub async fn serve(
        &self,
        listener: TcpListener,
        stop: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let mut tasks = JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = socket.set_nodelay(true);
                    let slot = self.shared.slot();
                    if !slot.admitted {
                        Metrics::inc(&self.shared.metrics.connections_refused);
                    }
                    let shared = self.shared.clone();
                    tasks.spawn(async move {
                        if let Err(e) = Connection::run(shared, socket, peer, slot).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        drop(listener);
        tracing::info!(
            connections = tasks.len(),
            "shutting down: no longer accepting connections"
        );
        self.shared.stop();
        let grace = self.shared.config.shutdown_grace;
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("grace period over: ending the remaining statements (57P01)");
            // A statement driven on the query runtime cannot be aborted from outside
            // (its connection task is inside `block_in_place`): interrupt it through its
            // signal, let its connection send 57P01, then abort what is left.
            self.shared.terminate_statements();
            let ended = tokio::time::timeout(TERMINATE_GRACE, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if ended.is_err() {
                tasks.shutdown().await;
            }
        }
        Ok(())
    }
}
