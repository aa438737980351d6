//! The simple query protocol: a query string of one or more statements, each run
//! and answered in turn, and the row streaming both protocols share (rows are
//! buffered and flushed once the buffer passes `ROW_FLUSH_BYTES`).
//!
//! As in PostgreSQL, a string of several statements outside a transaction block
//! runs as one implicit transaction (DDL included): the first error rolls back the
//! statements before it. A string that controls its transaction itself (BEGIN,
//! COMMIT, ROLLBACK, savepoints) runs statement by statement instead.

use std::time::Instant;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::{SinkExt, StreamExt};
use hindsight_sql::ast::Statement;
use hindsight_sql::{Output, SqlError};
use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::response::EmptyQueryResponse;

use crate::codec::{Outgoing, RowWriter};
use crate::copy::CopyCommand;
use crate::scope::Scope;
use crate::sqlstate::{ProtocolError, WireError};

use super::rows::*;
use super::state::*;

impl Connection {
    pub(super) async fn simple_query(&mut self, sql: &str) -> std::io::Result<()> {
        let stmts = match self.session.parse(sql) {
            Ok(s) => s,
            Err(e) => return self.fail_simple(sql, e.into()).await,
        };
        if stmts.is_empty() {
            return self
                .socket
                .feed(B::EmptyQueryResponse(EmptyQueryResponse::new()).into())
                .await;
        }
        let implicit = stmts.len() > 1
            && !stmts.iter().any(controls_transaction)
            && self.session.begin_implicit();
        for stmt in stmts {
            let started = Instant::now();
            let result = self.simple_statement(stmt).await?;
            self.shared.metrics.statement(started.elapsed());
            if let Err(e) = result {
                if implicit {
                    // Rolling back cannot fail; the statement's error is the answer.
                    let _ = self.session.end_implicit(false);
                }
                return self.fail_simple(sql, e).await;
            }
        }
        if implicit && let Err(e) = self.session.end_implicit(true) {
            return self.fail_simple(sql, e.into()).await;
        }
        Ok(())
    }

    /// A simple query failed: its text is shortened for the log line only now, so a
    /// query that succeeds costs nothing for it.
    async fn fail_simple(&mut self, sql: &str, e: WireError) -> std::io::Result<()> {
        self.statement = loggable(sql);
        self.send_error(e).await
    }

    /// Run one statement of a simple query; the outer error is the socket's.
    pub(super) async fn simple_statement(
        &mut self,
        stmt: Statement,
    ) -> std::io::Result<Result<(), WireError>> {
        if let Statement::Deallocate { name, .. } = &stmt {
            return self.deallocate(&name.value).await;
        }
        match CopyCommand::recognize(&stmt) {
            Some(Ok(c)) => return super::copy::run_copy(self, c).await,
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

    /// `DEALLOCATE name | ALL`; an unknown name fails the statement (and, as any
    /// error, the rest of its query string).
    pub(super) async fn deallocate(
        &mut self,
        name: &str,
    ) -> std::io::Result<Result<(), WireError>> {
        if name.eq_ignore_ascii_case("all") {
            self.statements.clear();
        } else if self.statements.remove(name).is_none() {
            return Ok(Err(ProtocolError::NoSuchStatement(name.to_string()).into()));
        }
        self.complete("DEALLOCATE".into()).await?;
        Ok(Ok(()))
    }

    /// Send rows from a result stream: at most `limit` (0: all). Returns whether the
    /// stream is exhausted; `state` keeps the rest (stream, partly sent batch, count).
    pub(super) async fn stream_rows(
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

    pub(super) async fn flush_rows(&mut self, out: &mut RowWriter) -> std::io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        self.socket.feed(Outgoing::Raw(out.take())).await
    }
}

/// True for the statements that begin or end a transaction block themselves.
fn controls_transaction(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
    )
}
