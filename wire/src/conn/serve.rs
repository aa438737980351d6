//! Serving a connection: startup and authentication, then the message loop that
//! reads a frame, dispatches it to the simple or extended protocol, and flushes
//! responses once per simple query, Sync or Flush. Also the helpers every protocol
//! path uses to answer (errors, command completion, ReadyForQuery) and to scope a
//! statement (cancel, timeout, query runtime).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hindsight_sql::{ErrorKind, TransactionStatus};
use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::response::CommandComplete;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use crate::codec::{Frame, HsCodec, Phase, put_ready_for_query};
use crate::metrics::Metrics;
use crate::named::Named;
use crate::scope::{Scope, usable_query_runtime};
use crate::shared::{Shared, Slot};
use crate::sqlstate::{ProtocolError, WireError};

use super::rows::*;
use super::startup::*;
use super::state::*;

impl Connection {
    /// Serve one accepted socket until the client leaves or the server stops.
    pub(crate) async fn run(
        shared: Arc<Shared>,
        tcp: TcpStream,
        peer: SocketAddr,
        slot: Slot,
    ) -> std::io::Result<()> {
        let negotiated =
            pgwire::tokio::server::negotiate_tls::<()>(tcp, shared.config.tls.clone()).await?;
        let Some(framed) = negotiated else {
            return Ok(());
        };
        let old = framed.into_parts();
        let mut parts = FramedParts::new(old.io, HsCodec::new(shared.config.max_message_bytes));
        parts.read_buf = old.read_buf;
        parts.write_buf = old.write_buf;
        let mut socket = Framed::from_parts(parts);

        let Some(startup) = read_startup(&mut socket, &shared).await? else {
            return Ok(());
        };
        if !slot.admitted {
            return fatal(&mut socket, ProtocolError::TooManyConnections).await;
        }
        socket.codec_mut().phase = Phase::Authenticating;
        let user = startup.parameters.get("user").cloned().unwrap_or_default();
        if !admit(&mut socket, &shared, peer, &startup, &user).await? {
            return Ok(());
        }
        socket.codec_mut().phase = Phase::Ready;
        let session = match shared.engine.session() {
            Ok(s) => s,
            Err(e) => return fatal(&mut socket, e).await,
        };
        let reg = shared.register();
        let query_runtime = usable_query_runtime(shared.config.query_runtime.as_ref());
        let mut conn = Connection {
            socket,
            peer,
            statement: Arc::from(""),
            shared,
            query_runtime,
            session,
            reg,
            statements: Named::default(),
            portals: Named::default(),
            skipping: false,
            _slot: slot,
        };
        conn.apply_startup_parameters(&startup);
        conn.send_startup_reply(&user).await?;
        tracing::debug!(%peer, user, pid = conn.reg.pid, "session started");
        conn.serve().await
    }

    pub(super) async fn ready_for_query(&mut self) -> std::io::Result<()> {
        let status = status_byte(self.session.transaction_status());
        put_ready_for_query(self.socket.write_buffer_mut(), status);
        self.socket.flush().await
    }

    /// The message loop.
    pub(super) async fn serve(mut self) -> std::io::Result<()> {
        loop {
            let idle = match (
                self.shared.config.idle_session_timeout,
                self.session.transaction_status(),
            ) {
                (Some(t), TransactionStatus::Idle) => Some(t),
                _ => None,
            };
            let next = match idle {
                None => self.next_message().await,
                Some(t) => match tokio::time::timeout(t, self.next_message()).await {
                    Ok(next) => next,
                    Err(_) => return fatal(&mut self.socket, ProtocolError::IdleTimeout).await,
                },
            };
            let frame = match next {
                Next::Shutdown => {
                    return fatal(&mut self.socket, ProtocolError::AdminShutdown).await;
                }
                Next::Demoted => {
                    return fatal(&mut self.socket, ProtocolError::NoLongerLeader).await;
                }
                Next::Frame(None) => return Ok(()),
                Next::Frame(Some(f)) => f?,
            };
            match frame {
                Frame::Refused(e) | Frame::RefusedExtended(e) if e.is_fatal() => {
                    return fatal(&mut self.socket, e).await;
                }
                Frame::Refused(e) => {
                    // A Query with invalid UTF-8: an error, and the query is over.
                    self.send_error(e.into()).await?;
                    if self.skipping {
                        continue;
                    }
                    self.ready_for_query().await?;
                }
                Frame::RefusedExtended(e) => {
                    if !self.skipping {
                        self.fail_extended(e.into()).await?;
                    }
                }
                Frame::Bind(b) => {
                    if self.skipping {
                        continue;
                    }
                    if let Err(e) = self.bind(&b) {
                        self.fail_extended(e).await?;
                    }
                }
                Frame::Message(F::Terminate(_)) => return Ok(()),
                Frame::Message(m) => {
                    if !self.dispatch(m).await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The next message, unless the server is shutting down (checked first, so a
    /// session finishing a statement at shutdown stops before its next one).
    pub(super) async fn next_message(&mut self) -> Next {
        let (signal, shared, socket) = (&self.reg.cancel, &self.shared, &mut self.socket);
        let epoch = self.reg.epoch;
        std::future::poll_fn(|cx| {
            signal.register_idle(cx.waker());
            if shared.stopping() {
                return std::task::Poll::Ready(Next::Shutdown);
            }
            if shared.demoted_since(epoch) {
                return std::task::Poll::Ready(Next::Demoted);
            }
            socket.poll_next_unpin(cx).map(Next::Frame)
        })
        .await
    }

    /// Handle one message; false ends the connection.
    pub(super) async fn dispatch(&mut self, m: F) -> std::io::Result<bool> {
        match m {
            F::Query(q) => {
                self.skipping = false;
                self.simple_query(&q.query).await?;
                self.ready_for_query().await?;
            }
            F::Sync(_) => {
                self.skipping = false;
                if self.session.transaction_status() == TransactionStatus::Idle {
                    self.portals.clear();
                }
                self.ready_for_query().await?;
            }
            F::Flush(_) => self.socket.flush().await?,
            F::Parse(_) | F::Describe(_) | F::Execute(_) | F::Close(_) => {
                if self.skipping {
                    return Ok(true);
                }
                if let Err(e) = self.extended(m).await? {
                    self.fail_extended(e).await?;
                }
            }
            // COPY messages outside a COPY are ignored, as PostgreSQL does.
            F::CopyData(_) | F::CopyDone(_) | F::CopyFail(_) => {}
            _ => {
                fatal(
                    &mut self.socket,
                    ProtocolError::Violation("unexpected message type".into()),
                )
                .await?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// An extended-protocol message failed: its error is sent and the messages
    /// after it are discarded until Sync.
    pub(super) async fn fail_extended(&mut self, e: WireError) -> std::io::Result<()> {
        self.skipping = true;
        self.send_error(e).await
    }

    pub(crate) async fn send_error(&mut self, e: WireError) -> std::io::Result<()> {
        Metrics::inc(&self.shared.metrics.statement_errors);
        if matches!(&e, WireError::Sql(s) if s.kind == ErrorKind::QueryCanceled) {
            Metrics::inc(&self.shared.metrics.statements_canceled);
        }
        // Every failed statement is logged at the default level with what a user
        // needs to find it: the client, the SQLSTATE and the statement (shortened).
        // A cluster member refusing a write or unsure of a commit says why here
        // (the message names the nodes).
        tracing::info!(
            client = %self.peer,
            pid = self.reg.pid,
            sqlstate = e.code(),
            statement = %self.statement,
            "statement failed: {e}"
        );
        self.socket
            .feed(B::ErrorResponse(e.to_response()).into())
            .await
    }

    pub(crate) async fn complete(&mut self, tag: String) -> std::io::Result<()> {
        self.socket
            .feed(B::CommandComplete(CommandComplete::new(tag)).into())
            .await
    }

    pub(crate) fn shared_metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The scope of a statement starting now: its cancel signal, its deadline (from
    /// the session's statement_timeout) and where its work runs: on the query runtime
    /// when `offload` and one is configured, else on this worker.
    pub(crate) fn scope(&self, offload: bool) -> Scope {
        Scope {
            cancel: self.reg.cancel.clone(),
            deadline: match self.session.statement_timeout_ms() {
                0 => None,
                ms => Some(Instant::now() + Duration::from_millis(ms)),
            },
            runtime: self.query_runtime.as_ref().filter(|_| offload).cloned(),
        }
    }

    // -- simple query ------------------------------------------------------------

    // -- extended query ----------------------------------------------------------
}
