//! One client connection: startup and authentication, then the simple and extended
//! query protocols over a [`Session`] of the SQL layer.
//!
//! Invariants:
//! - responses are buffered and flushed once per simple query, Sync or Flush (and when
//!   a large result fills the buffer), so a pipelined Parse/Bind/Execute/Sync costs
//!   one write, like a simple query;
//! - after an error in an extended-protocol message, messages are discarded until
//!   Sync, which answers ReadyForQuery with the transaction's state;
//! - every statement runs under the session's cancel signal and statement timeout;
//!   a canceled statement is 57014 and the connection keeps serving;
//! - portals are streamed: `Execute` with a row limit sends at most that many rows
//!   and keeps the rest for the next `Execute` (PortalSuspended).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use datafusion::arrow::datatypes::{DataType as ArrowType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::{SinkExt, StreamExt};
use hindsight_sql::ast::Statement;
use hindsight_sql::{ErrorKind, Output, Prepared, Session, SqlError, TransactionStatus};
use hindsight_storage::{DataType as StorageType, Value};
use pgwire::api::auth::sasl::scram::{ScramSecret, ScramServerAuth};
use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::data::{FieldDescription, NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{CloseComplete, ParseComplete, PortalSuspended};
use pgwire::messages::response::{CommandComplete, EmptyQueryResponse};
use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey, Startup,
};
use pgwire::tokio::server::MaybeTls;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use crate::auth::Method;
use crate::codec::{
    BIND_COMPLETE, BindMsg, Codes, Frame, HsCodec, Outgoing, Phase, RowWriter, begin_row,
    finish_row, put_command_complete, put_ready_for_query,
};
use crate::copy::{self, CopyCommand};
use crate::metrics::Metrics;
use crate::named::Named;
use crate::scope::{Scope, usable_query_runtime};
use crate::server::{Registration, Shared, Slot};
use crate::sqlstate::{ProtocolError, WireError};
use crate::types::{arrow_type_of_oid, decode_param, encode_cell, encode_value, pg_type};

/// How long a client may take to finish startup and authentication.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Flush rows to the socket once this many bytes are buffered.
const ROW_FLUSH_BYTES: usize = 256 << 10;

pub(crate) type Socket = Framed<MaybeTls, HsCodec>;

/// A parsed (and where possible planned) statement.
struct Stmt {
    prepared: Prepared,
    /// A COPY, which the protocol layer runs itself.
    copy: Option<CopyCommand>,
    /// Parameter OIDs as the client declared them (0: unspecified).
    declared: Vec<u32>,
    /// The encoded RowDescription of its rows in text format (libpq describes the
    /// portal on every execution; this answers without rebuilding it), or None if
    /// the statement returns no rows.
    text_row_description: Option<Bytes>,
    /// For a point lookup: each column's storage type and the Arrow type it is
    /// described as (what [`encode_value`] needs).
    lookup: Option<Vec<(StorageType, ArrowType)>>,
}

impl Stmt {
    fn new(prepared: Prepared, copy: Option<CopyCommand>, declared: Vec<u32>) -> Stmt {
        let text_row_description = prepared
            .schema
            .as_ref()
            .filter(|s| !s.fields().is_empty())
            .and_then(|s| {
                let mut buf = BytesMut::new();
                B::RowDescription(row_description(s, &Formats::TEXT))
                    .encode(&mut buf)
                    .ok()
                    .map(|()| buf.freeze())
            });
        let lookup = match (prepared.point_lookup_types(), &prepared.schema) {
            (Some(types), Some(schema)) if types.len() == schema.fields().len() => Some(
                types
                    .iter()
                    .zip(schema.fields())
                    .map(|(t, f)| (*t, f.data_type().clone()))
                    .collect(),
            ),
            _ => None,
        };
        Stmt {
            prepared,
            copy,
            declared,
            text_row_description,
            lookup,
        }
    }

    fn param_oids(&self) -> Vec<u32> {
        self.prepared
            .param_types
            .iter()
            .enumerate()
            .map(|(i, t)| match self.declared.get(i) {
                Some(&o) if o != 0 => o,
                _ => t
                    .as_ref()
                    .map(|t| pg_type(t).oid)
                    .unwrap_or(crate::types::oid::TEXT),
            })
            .collect()
    }
}

/// What a session's wait for its next message ends with.
enum Next {
    Frame(Option<std::io::Result<Frame>>),
    Shutdown,
}

enum PortalState {
    Ready,
    Running {
        stream: SendableRecordBatchStream,
        pending: Option<(RecordBatch, usize)>,
        sent: u64,
    },
    Done,
}

struct Portal {
    stmt: Arc<Stmt>,
    params: Vec<ScalarValue>,
    /// Per result column: binary format?
    binary: Formats,
    state: PortalState,
}

pub(crate) struct Connection {
    pub(crate) socket: Socket,
    shared: Arc<Shared>,
    pub(crate) session: Session,
    reg: Registration,
    /// Where statements other than point lookups run (see [`Scope`]).
    query_runtime: Option<tokio::runtime::Handle>,
    statements: Named<Arc<Stmt>>,
    portals: Named<Portal>,
    /// An extended-protocol error happened: discard until Sync.
    skipping: bool,
    _slot: Slot,
}

fn command_tag(tag: &str, rows: Option<u64>) -> String {
    match (tag, rows) {
        ("INSERT", Some(n)) => format!("INSERT 0 {n}"),
        (t, Some(n)) => format!("{t} {n}"),
        (t, None) => t.to_string(),
    }
}

/// The transaction status byte of ReadyForQuery.
fn status_byte(s: TransactionStatus) -> u8 {
    match s {
        TransactionStatus::Idle => b'I',
        TransactionStatus::InBlock => b'T',
        TransactionStatus::Failed => b'E',
    }
}

/// RowDescription of a result schema with per-column formats.
pub(crate) fn row_description(schema: &SchemaRef, binary: &Formats) -> RowDescription {
    RowDescription::new(
        schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let t = pg_type(f.data_type());
                FieldDescription::new(
                    f.name().clone(),
                    0,
                    0,
                    t.oid,
                    t.size,
                    -1,
                    i16::from(binary.binary(i)),
                )
            })
            .collect(),
    )
}

/// Text or binary, per parameter or result column, as Bind chose. The common
/// choices (no codes: all text; one code: all alike) keep no per-column vector.
#[derive(Clone, Debug)]
pub(crate) enum Formats {
    All(bool),
    Each(Vec<bool>),
}

impl Formats {
    pub(crate) const TEXT: Formats = Formats::All(false);

    /// Resolve Bind's format codes for `n` values.
    fn resolve(codes: Codes<'_>, n: usize) -> Result<Formats, ProtocolError> {
        let mut it = codes.iter();
        match codes.len() {
            0 => Ok(Formats::TEXT),
            1 => Ok(Formats::All(it.next() == Some(1))),
            m if m == n => Ok(Formats::Each(it.map(|c| c == 1).collect())),
            m => Err(ProtocolError::Violation(format!(
                "bind message has {m} format codes but {n} values"
            ))),
        }
    }

    /// Whether value `i` is in binary format.
    pub(crate) fn binary(&self, i: usize) -> bool {
        match self {
            Formats::All(b) => *b,
            Formats::Each(v) => v.get(i).copied().unwrap_or(false),
        }
    }

    fn any_binary(&self) -> bool {
        match self {
            Formats::All(b) => *b,
            Formats::Each(v) => v.contains(&true),
        }
    }
}

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

        let startup = tokio::time::timeout(STARTUP_TIMEOUT, socket.next()).await;
        let startup = match startup {
            Ok(Some(Ok(Frame::Message(F::Startup(s))))) => s,
            Ok(Some(Ok(Frame::Message(F::CancelRequest(c))))) => {
                if let Some(secret) = c.secret_key.as_i32() {
                    shared.cancel(c.pid, secret);
                }
                return Ok(());
            }
            Ok(Some(Ok(Frame::Refused(e) | Frame::RefusedExtended(e)))) => {
                return fatal(&mut socket, e).await;
            }
            Ok(Some(Ok(Frame::Message(_) | Frame::Bind(_)))) => {
                return fatal(
                    &mut socket,
                    ProtocolError::Violation("expected a startup message".into()),
                )
                .await;
            }
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) | Err(_) => return Ok(()),
        };
        if !slot.admitted {
            return fatal(&mut socket, ProtocolError::TooManyConnections).await;
        }
        socket.codec_mut().phase = Phase::Authenticating;
        if startup.protocol_number_major != 3 {
            return fatal(
                &mut socket,
                ProtocolError::Violation(format!(
                    "unsupported frontend protocol {}.{}: server supports 3.0",
                    startup.protocol_number_major, startup.protocol_number_minor
                )),
            )
            .await;
        }
        negotiate_minor(&mut socket, &startup).await?;
        let user = startup.parameters.get("user").cloned().unwrap_or_default();
        let auth = tokio::time::timeout(
            STARTUP_TIMEOUT,
            authenticate(&mut socket, &shared, peer, &user),
        )
        .await;
        match auth {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                Metrics::inc(&shared.metrics.auth_failures);
                tracing::info!(%peer, user, error = %e, "authentication failed");
                return fatal(&mut socket, e).await;
            }
            Err(_) => return Ok(()),
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

    fn apply_startup_parameters(&mut self, startup: &Startup) {
        if self.shared.config.statement_timeout_ms > 0 {
            let _ = self.session.set_variable(
                "statement_timeout",
                &self.shared.config.statement_timeout_ms.to_string(),
            );
        }
        for (k, v) in &startup.parameters {
            match k.as_str() {
                "user" | "database" | "replication" => {}
                "options" => {
                    // `-c name=value` pairs (PGOPTIONS).
                    let words: Vec<&str> = v.split_whitespace().collect();
                    let mut i = 0;
                    while i < words.len() {
                        let w = words.get(i).copied().unwrap_or_default();
                        let pair = if w == "-c" {
                            i += 1;
                            words.get(i).copied().unwrap_or_default()
                        } else {
                            w.strip_prefix("-c").unwrap_or(w)
                        };
                        if let Some((name, value)) = pair.split_once('=') {
                            let _ = self.session.set_variable(&name.replace('-', "_"), value);
                        }
                        i += 1;
                    }
                }
                name if name.starts_with("_pq_.") => {}
                name => {
                    if let Err(e) = self.session.set_variable(name, v) {
                        tracing::debug!(name, error = %e, "startup parameter ignored");
                    }
                }
            }
        }
    }

    async fn send_startup_reply(&mut self, user: &str) -> std::io::Result<()> {
        let setting = |s: &Session, k: &str, d: &str| s.setting(k).unwrap_or(d).to_string();
        let params = [
            (
                "server_version",
                setting(&self.session, "server_version", "16.0"),
            ),
            ("server_encoding", "UTF8".to_string()),
            ("client_encoding", "UTF8".to_string()),
            ("DateStyle", setting(&self.session, "datestyle", "ISO, MDY")),
            ("TimeZone", setting(&self.session, "timezone", "UTC")),
            ("IntervalStyle", "postgres".to_string()),
            ("integer_datetimes", "on".to_string()),
            ("standard_conforming_strings", "on".to_string()),
            ("is_superuser", "on".to_string()),
            ("session_authorization", user.to_string()),
            (
                "application_name",
                setting(&self.session, "application_name", ""),
            ),
            ("in_hot_standby", "off".to_string()),
            ("default_transaction_read_only", "off".to_string()),
        ];
        self.socket
            .feed(B::Authentication(Authentication::Ok).into())
            .await?;
        for (name, value) in params {
            self.socket
                .feed(B::ParameterStatus(ParameterStatus::new(name.to_string(), value)).into())
                .await?;
        }
        self.socket
            .feed(
                B::BackendKeyData(BackendKeyData::new(
                    self.reg.pid,
                    SecretKey::I32(self.reg.secret),
                ))
                .into(),
            )
            .await?;
        self.ready_for_query().await
    }

    async fn ready_for_query(&mut self) -> std::io::Result<()> {
        let status = status_byte(self.session.transaction_status());
        put_ready_for_query(self.socket.write_buffer_mut(), status);
        self.socket.flush().await
    }

    /// The message loop.
    async fn serve(mut self) -> std::io::Result<()> {
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
    async fn next_message(&mut self) -> Next {
        let (signal, shared, socket) = (&self.reg.cancel, &self.shared, &mut self.socket);
        std::future::poll_fn(|cx| {
            signal.register_idle(cx.waker());
            if shared.stopping() {
                return std::task::Poll::Ready(Next::Shutdown);
            }
            socket.poll_next_unpin(cx).map(Next::Frame)
        })
        .await
    }

    /// Handle one message; false ends the connection.
    async fn dispatch(&mut self, m: F) -> std::io::Result<bool> {
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
    async fn fail_extended(&mut self, e: WireError) -> std::io::Result<()> {
        self.skipping = true;
        self.send_error(e).await
    }

    pub(crate) async fn send_error(&mut self, e: WireError) -> std::io::Result<()> {
        Metrics::inc(&self.shared.metrics.statement_errors);
        if matches!(&e, WireError::Sql(s) if s.kind == ErrorKind::QueryCanceled) {
            Metrics::inc(&self.shared.metrics.statements_canceled);
        }
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

    async fn simple_query(&mut self, sql: &str) -> std::io::Result<()> {
        let stmts = match self.session.parse(sql) {
            Ok(s) => s,
            Err(e) => return self.send_error(e.into()).await,
        };
        if stmts.is_empty() {
            return self
                .socket
                .feed(B::EmptyQueryResponse(EmptyQueryResponse::new()).into())
                .await;
        }
        for stmt in stmts {
            let started = Instant::now();
            let result = self.simple_statement(stmt).await?;
            self.shared.metrics.statement(started.elapsed());
            if let Err(e) = result {
                return self.send_error(e).await;
            }
        }
        Ok(())
    }

    /// Run one statement of a simple query; the outer error is the socket's.
    async fn simple_statement(
        &mut self,
        stmt: Statement,
    ) -> std::io::Result<Result<(), WireError>> {
        if let Statement::Deallocate { name, .. } = &stmt {
            return self.deallocate(&name.value).await.map(Ok);
        }
        match CopyCommand::recognize(&stmt) {
            Some(Ok(c)) => return copy::run(self, c).await,
            Some(Err(e)) => return Ok(Err(e)),
            None => {}
        }
        let scope = self.scope(true);
        let out = match scope.run(Box::pin(self.session.execute(stmt))).await {
            Ok(o) => o,
            Err(e) => return Ok(Err(e)),
        };
        match out {
            Output::Command { tag: "EMPTY", .. } => {
                self.socket
                    .feed(B::EmptyQueryResponse(EmptyQueryResponse::new()).into())
                    .await?;
            }
            Output::Command { tag, rows } => self.complete(command_tag(tag, rows)).await?,
            Output::Rows(stream) => {
                let schema = stream.schema();
                let binary = Formats::TEXT;
                self.socket
                    .feed(B::RowDescription(row_description(&schema, &binary)).into())
                    .await?;
                let mut state = (stream, None, 0u64);
                match self.stream_rows(&mut state, &binary, 0, &scope).await? {
                    Ok(_) => self.complete(format!("SELECT {}", state.2)).await?,
                    Err(e) => return Ok(Err(e)),
                }
            }
        }
        Ok(Ok(()))
    }

    async fn deallocate(&mut self, name: &str) -> std::io::Result<()> {
        if name.eq_ignore_ascii_case("all") {
            self.statements.clear();
        } else if self.statements.remove(name).is_none() {
            return self
                .send_error(ProtocolError::NoSuchStatement(name.to_string()).into())
                .await;
        }
        self.complete("DEALLOCATE".into()).await
    }

    /// Send rows from a result stream: at most `limit` (0: all). Returns whether the
    /// stream is exhausted; `state` keeps the rest (stream, partly sent batch, count).
    async fn stream_rows(
        &mut self,
        state: &mut (SendableRecordBatchStream, Option<(RecordBatch, usize)>, u64),
        binary: &Formats,
        limit: usize,
        scope: &Scope,
    ) -> std::io::Result<Result<bool, WireError>> {
        let mut out = RowWriter::default();
        let mut sent = 0usize;
        loop {
            let (batch, offset) = match state.1.take() {
                Some(p) => p,
                None => {
                    let next = scope
                        .run(async { state.0.next().await.transpose().map_err(SqlError::from) })
                        .await;
                    match next {
                        Ok(Some(b)) => (b, 0),
                        Ok(None) => {
                            self.flush_rows(&mut out).await?;
                            return Ok(Ok(true));
                        }
                        Err(e) => {
                            self.flush_rows(&mut out).await?;
                            return Ok(Err(e));
                        }
                    }
                }
            };
            let n = batch.num_rows();
            let mut row = offset;
            while row < n {
                if limit > 0 && sent == limit {
                    state.1 = Some((batch.clone(), row));
                    self.flush_rows(&mut out).await?;
                    return Ok(Ok(false));
                }
                // Up to the limit, or until the buffer is worth a flush.
                let room = if limit > 0 { limit - sent } else { n - row };
                let done = encode_rows(&mut out, &batch, row..row + room.min(n - row), binary);
                row += done;
                sent += done;
                state.2 += done as u64;
                if out.len() >= ROW_FLUSH_BYTES {
                    self.flush_rows(&mut out).await?;
                }
            }
        }
    }

    async fn flush_rows(&mut self, out: &mut RowWriter) -> std::io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        self.socket.feed(Outgoing::Raw(out.take())).await
    }

    // -- extended query ----------------------------------------------------------

    /// Parse, Bind, Describe, Execute or Close. The outer error is the socket's.
    async fn extended(&mut self, m: F) -> std::io::Result<Result<(), WireError>> {
        match m {
            F::Parse(p) => {
                let name = p.name.unwrap_or_default();
                if !name.is_empty() && self.statements.contains(&name) {
                    return Ok(Err(ProtocolError::StatementExists(name).into()));
                }
                let declared: Vec<Option<_>> =
                    p.type_oids.iter().map(|o| arrow_type_of_oid(*o)).collect();
                let copy = match self.session.parse(&p.query) {
                    Ok(v) if v.len() == 1 => v.first().and_then(CopyCommand::recognize),
                    _ => None,
                };
                let copy = match copy {
                    Some(Ok(c)) => Some(c),
                    Some(Err(e)) => return Ok(Err(e)),
                    None => None,
                };
                // A COPY is prepared as the empty statement; Execute runs the COPY.
                let text = if copy.is_some() { "" } else { p.query.as_str() };
                let scope = self.scope(true);
                let prepared = match scope
                    .run(Box::pin(self.session.prepare(text, &declared)))
                    .await
                {
                    Ok(x) => x,
                    Err(e) => return Ok(Err(e)),
                };
                self.statements
                    .insert(name, Arc::new(Stmt::new(prepared, copy, p.type_oids)));
                self.socket
                    .feed(B::ParseComplete(ParseComplete::new()).into())
                    .await?;
            }
            F::Describe(d) => {
                let name = d.name.unwrap_or_default();
                if d.target_type == b'S' {
                    let Some(stmt) = self.statements.get(&name).cloned() else {
                        return Ok(Err(ProtocolError::NoSuchStatement(name).into()));
                    };
                    self.socket
                        .feed(
                            B::ParameterDescription(ParameterDescription::new(stmt.param_oids()))
                                .into(),
                        )
                        .await?;
                    self.describe_rows(&stmt, &Formats::TEXT).await?;
                } else {
                    let Some(portal) = self.portals.get(&name) else {
                        return Ok(Err(ProtocolError::NoSuchPortal(name).into()));
                    };
                    let stmt = portal.stmt.clone();
                    let binary = portal.binary.clone();
                    self.describe_rows(&stmt, &binary).await?;
                }
            }
            F::Execute(e) => {
                let started = Instant::now();
                let result = self
                    .execute_portal(e.name.unwrap_or_default(), e.max_rows)
                    .await;
                self.shared.metrics.statement(started.elapsed());
                return result;
            }
            F::Close(c) => {
                let name = c.name.unwrap_or_default();
                if c.target_type == b'S' {
                    self.statements.remove(&name);
                } else {
                    self.portals.remove(&name);
                }
                self.socket
                    .feed(B::CloseComplete(CloseComplete::new()).into())
                    .await?;
            }
            _ => {}
        }
        Ok(Ok(()))
    }

    /// Bind: a portal of a prepared statement with its parameters decoded.
    fn bind(&mut self, b: &BindMsg) -> Result<(), WireError> {
        let name = b.statement()?;
        let Some(stmt) = self.statements.get(name).cloned() else {
            return Err(ProtocolError::NoSuchStatement(name.to_string()).into());
        };
        let portal = bind_portal(stmt, b)?;
        self.portals.insert(b.portal()?.to_string(), portal);
        self.socket
            .write_buffer_mut()
            .extend_from_slice(BIND_COMPLETE);
        Ok(())
    }

    /// RowDescription (or NoData) of a statement's rows in the formats `binary`.
    async fn describe_rows(&mut self, stmt: &Stmt, binary: &Formats) -> std::io::Result<()> {
        let Some(text) = &stmt.text_row_description else {
            return self.socket.feed(B::NoData(NoData::new()).into()).await;
        };
        match &stmt.prepared.schema {
            Some(s) if binary.any_binary() => {
                self.socket
                    .feed(B::RowDescription(row_description(s, binary)).into())
                    .await
            }
            _ => {
                self.socket.write_buffer_mut().extend_from_slice(text);
                Ok(())
            }
        }
    }

    async fn execute_portal(
        &mut self,
        name: String,
        max_rows: i32,
    ) -> std::io::Result<Result<(), WireError>> {
        let Some(mut portal) = self.portals.remove(&name) else {
            return Ok(Err(ProtocolError::NoSuchPortal(name).into()));
        };
        if let (Some(c), PortalState::Ready) = (&portal.stmt.copy, &portal.state) {
            let c = c.clone();
            portal.state = PortalState::Done;
            self.portals.insert(name, portal);
            return copy::run(self, c).await;
        }
        let limit = usize::try_from(max_rows).unwrap_or(0);
        if let PortalState::Ready = portal.state
            && limit == 0
            && let Some(lookup) = &portal.stmt.lookup
        {
            // A point lookup answered whole: rows are encoded straight from the
            // storage values into the socket's output buffer (no Arrow arrays, no
            // stream, no copy; it takes microseconds, so no cancel/timeout
            // machinery either).
            portal.state = PortalState::Done;
            let binary = &portal.binary;
            let buf = self.socket.write_buffer_mut();
            let before = buf.len();
            let rows =
                self.session
                    .point_lookup_rows(&portal.stmt.prepared, &portal.params, |row| {
                        encode_lookup_row(buf, row, lookup, binary)
                    });
            let n = match rows {
                Some(Ok(n)) => n,
                other => {
                    buf.truncate(before);
                    return Ok(Err(match other {
                        Some(Err(e)) => e.into(),
                        _ => ProtocolError::Violation("statement is not a point lookup".into())
                            .into(),
                    }));
                }
            };
            put_command_complete(buf, "SELECT", Some(n as u64));
            if buf.len() >= ROW_FLUSH_BYTES {
                self.socket.flush().await?;
            }
            self.portals.insert(name, portal);
            return Ok(Ok(()));
        }
        // An execution answered at once (a point lookup with a row limit, a
        // precomputed constant) runs and streams its in-memory answer on this worker:
        // handing the worker over for it would cost more than the answer.
        let scope = self.scope(!portal.stmt.prepared.answers_at_once());
        if let PortalState::Ready = portal.state {
            let out = match self
                .session
                .point_lookup(&portal.stmt.prepared, &portal.params)
            {
                // A point lookup with a row limit: stream its one batch.
                Some(Ok(batch)) => Ok(Output::Rows(hindsight_sql::memory_stream(vec![batch]))),
                Some(Err(e)) => Err(e.into()),
                None => {
                    // Boxed: the SQL layer's futures are large, and moving them
                    // through each await level by value showed up as memcpy in
                    // profiles.
                    let run = Box::pin(
                        self.session
                            .execute_prepared(&portal.stmt.prepared, portal.params.clone()),
                    );
                    scope.run(run).await
                }
            };
            match out {
                Err(e) => return Ok(Err(e)),
                Ok(Output::Command { tag: "EMPTY", .. }) => {
                    portal.state = PortalState::Done;
                    self.socket
                        .feed(B::EmptyQueryResponse(EmptyQueryResponse::new()).into())
                        .await?;
                    self.portals.insert(name, portal);
                    return Ok(Ok(()));
                }
                Ok(Output::Command { tag, rows }) => {
                    portal.state = PortalState::Done;
                    self.complete(command_tag(tag, rows)).await?;
                    self.portals.insert(name, portal);
                    return Ok(Ok(()));
                }
                Ok(Output::Rows(stream)) => {
                    portal.state = PortalState::Running {
                        stream,
                        pending: None,
                        sent: 0,
                    };
                }
            }
        }
        let result = match std::mem::replace(&mut portal.state, PortalState::Done) {
            PortalState::Running {
                stream,
                pending,
                sent,
            } => {
                let mut state = (stream, pending, sent);
                let r = self
                    .stream_rows(&mut state, &portal.binary, limit, &scope)
                    .await?;
                match r {
                    Ok(true) => {
                        self.complete(format!("SELECT {}", state.2)).await?;
                        Ok(())
                    }
                    Ok(false) => {
                        portal.state = PortalState::Running {
                            stream: state.0,
                            pending: state.1,
                            sent: state.2,
                        };
                        self.socket
                            .feed(B::PortalSuspended(PortalSuspended::new()).into())
                            .await?;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            // A finished portal returns no more rows.
            _ => {
                self.complete("SELECT 0".into()).await?;
                Ok(())
            }
        };
        self.portals.insert(name, portal);
        Ok(result)
    }
}

/// Encode one row of a point lookup (storage values) as a DataRow into `buf`.
fn encode_lookup_row(
    buf: &mut BytesMut,
    row: &[Value],
    types: &[(StorageType, ArrowType)],
    binary: &Formats,
) {
    let start = begin_row(buf, row.len() as i16);
    for (c, (v, (ty, arrow))) in row.iter().zip(types).enumerate() {
        encode_value(v, *ty, arrow, binary.binary(c), buf);
    }
    finish_row(buf, start);
}

/// Encode `rows` of `batch` as DataRows into `out`, stopping early once the buffer
/// reaches [`ROW_FLUSH_BYTES`]; returns the number of rows encoded (at least one of
/// a non-empty range).
fn encode_rows(
    out: &mut RowWriter,
    batch: &RecordBatch,
    rows: std::ops::Range<usize>,
    binary: &Formats,
) -> usize {
    let columns = batch.columns();
    let end = rows.end.min(batch.num_rows());
    let mut row = rows.start;
    while row < end {
        out.begin(columns.len() as i16);
        for (c, col) in columns.iter().enumerate() {
            encode_cell(col.as_ref(), row, binary.binary(c), &mut out.buf);
        }
        out.finish();
        row += 1;
        if out.len() >= ROW_FLUSH_BYTES {
            break;
        }
    }
    row - rows.start
}

/// Decode Bind's parameters against a statement.
fn bind_portal(stmt: Arc<Stmt>, b: &BindMsg) -> Result<Portal, WireError> {
    let expected = stmt.prepared.param_types.len().max(stmt.declared.len());
    if b.param_count() != expected {
        return Err(ProtocolError::Violation(format!(
            "bind message supplies {} parameters, but prepared statement requires {expected}",
            b.param_count()
        ))
        .into());
    }
    let pformats = Formats::resolve(b.param_formats(), b.param_count())?;
    let mut params = Vec::with_capacity(b.param_count());
    for (i, v) in b.params().enumerate() {
        let declared = stmt.declared.get(i).copied().unwrap_or(0);
        let target = stmt.prepared.param_types.get(i).and_then(|t| t.as_ref());
        params.push(decode_param(v, pformats.binary(i), declared, target)?);
    }
    let ncols = stmt
        .prepared
        .schema
        .as_ref()
        .map_or(0, |s| s.fields().len());
    let binary = Formats::resolve(b.result_formats(), ncols)?;
    Ok(Portal {
        stmt,
        params,
        binary,
        state: PortalState::Ready,
    })
}

/// Negotiate down to protocol 3.0 when the client asked for a newer minor version or
/// sent protocol options (`_pq_.*`) we do not support.
async fn negotiate_minor(socket: &mut Socket, startup: &Startup) -> std::io::Result<()> {
    let unsupported: Vec<String> = startup
        .parameters
        .keys()
        .filter(|k| k.starts_with("_pq_."))
        .cloned()
        .collect();
    if startup.protocol_number_minor > 0 || !unsupported.is_empty() {
        socket
            .feed(B::NegotiateProtocolVersion(NegotiateProtocolVersion::new(0, unsupported)).into())
            .await?;
    }
    Ok(())
}

/// Run the authentication exchange the policy asks for.
async fn authenticate(
    socket: &mut Socket,
    shared: &Shared,
    peer: SocketAddr,
    user: &str,
) -> Result<(), WireError> {
    let io = |e: std::io::Error| WireError::from(ProtocolError::Violation(e.to_string()));
    match shared.config.auth.method_for(peer.ip()) {
        Method::Trust => Ok(()),
        Method::Reject(msg) => Err(ProtocolError::AuthRequired(msg).into()),
        Method::Scram => {
            let failed = || WireError::from(ProtocolError::AuthFailed(user.to_string()));
            // An unknown user goes through the same exchange and fails at the end.
            let known = shared.config.auth.secret(user);
            let known_user = known.is_some();
            let secret = known.unwrap_or_else(|| {
                ScramSecret::verifier_from_salted_password(vec![0; 16], vec![0; 32], 4096)
            });
            socket
                .send(B::Authentication(Authentication::SASL(vec!["SCRAM-SHA-256".into()])).into())
                .await
                .map_err(io)?;
            let first = password_message(socket)
                .await
                .ok_or_else(failed)?
                .into_sasl_initial_response()
                .map_err(|e| ProtocolError::Violation(e.to_string()))?;
            if first.auth_method != "SCRAM-SHA-256" {
                return Err(failed());
            }
            let data = first.data.unwrap_or_default();
            let (server_first, waiting) = ScramServerAuth::new()
                .on_client_first_message_with_secret(&data, secret)
                .map_err(|_| failed())?;
            socket
                .send(
                    B::Authentication(Authentication::SASLContinue(Bytes::from(server_first)))
                        .into(),
                )
                .await
                .map_err(io)?;
            let fin = password_message(socket)
                .await
                .ok_or_else(failed)?
                .into_sasl_response()
                .map_err(|e| ProtocolError::Violation(e.to_string()))?;
            let server_final = waiting
                .on_client_final_message(&fin.data)
                .map_err(|_| failed())?;
            if !known_user {
                return Err(failed());
            }
            socket
                .feed(
                    B::Authentication(Authentication::SASLFinal(Bytes::from(server_final))).into(),
                )
                .await
                .map_err(io)?;
            Ok(())
        }
    }
}

/// The next message, if it is a password/SASL response.
async fn password_message(
    socket: &mut Socket,
) -> Option<pgwire::messages::startup::PasswordMessageFamily> {
    match socket.next().await {
        Some(Ok(Frame::Message(F::PasswordMessageFamily(p)))) => Some(p),
        _ => None,
    }
}

/// Send a FATAL error and end the connection.
async fn fatal(socket: &mut Socket, e: impl Into<WireError>) -> std::io::Result<()> {
    let e: WireError = e.into();
    let mut r = e.to_response();
    for f in r.fields.iter_mut() {
        if f.0 == b'S' || f.0 == b'V' {
            f.1 = "FATAL".into();
        }
    }
    socket.feed(B::ErrorResponse(r).into()).await?;
    socket.flush().await?;
    let _ = socket.close().await;
    Ok(())
}
