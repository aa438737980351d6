//! The listener: accepts connections, enforces the connection limit, routes
//! CancelRequests to the session they name, and drains connections on shutdown.
//!
//! Invariants: every accepted socket gets TCP_NODELAY; a connection beyond
//! `max_connections` still completes the startup exchange so the client reads a
//! 53300 error instead of a reset; after shutdown is signalled no new connection is
//! served, and `serve` returns only when every connection task has ended (idle ones
//! are told 57P01 at once, busy ones finish their statement within the grace period).

use std::sync::Arc;
use std::time::Duration;

use hindsight_sql::Engine;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use crate::config::WireConfig;
use crate::conn::Connection;
use crate::metrics::Metrics;
pub use crate::shared::{CancelSignal, Registration, Shared, Slot};

/// After the shutdown grace period, how long interrupted statements get to report
/// 57P01 before their connections are aborted.
const TERMINATE_GRACE: Duration = Duration::from_secs(2);

/// The Postgres-protocol server over one engine.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    pub fn new(engine: Arc<Engine>, config: WireConfig) -> Server {
        Server {
            shared: Arc::new(Shared::new(engine, config)),
        }
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// The connections' shared state (to end sessions when leadership is lost:
    /// [`Shared::end_leader_sessions`]).
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
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
