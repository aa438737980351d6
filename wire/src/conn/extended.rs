//! The extended query protocol: Parse, Bind, Describe, Execute, Close and Sync,
//! with named and unnamed statements and portals. A portal streams: Execute with a
//! row limit sends at most that many rows and keeps the rest (PortalSuspended).
//! After an error, messages are discarded until Sync.

use std::sync::Arc;
use std::time::Instant;

use futures::SinkExt;
use hindsight_sql::Output;
use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{CloseComplete, Describe, ParseComplete, PortalSuspended};
use pgwire::messages::response::EmptyQueryResponse;

use crate::codec::{BIND_COMPLETE, BindMsg, put_command_complete};
use crate::copy::CopyCommand;
use crate::scope::Scope;
use crate::sqlstate::{ProtocolError, WireError};
use crate::types::{arrow_type_of_oid, decode_param};

use super::rows::*;
use super::state::*;

impl Connection {
    /// Parse, Bind, Describe, Execute or Close. The outer error is the socket's.
    pub(super) async fn extended(&mut self, m: F) -> std::io::Result<Result<(), WireError>> {
        match m {
            F::Parse(p) => {
                self.statement = loggable(&p.query);
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
                self.statements.insert(
                    name,
                    Arc::new(Stmt::new(
                        prepared,
                        copy,
                        p.type_oids,
                        self.statement.clone(),
                    )),
                );
                self.socket
                    .feed(B::ParseComplete(ParseComplete::new()).into())
                    .await?;
            }
            F::Describe(d) => return self.describe(d).await,
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

    /// Describe a statement (parameters and rows) or a portal (rows); a cursor
    /// opened with DECLARE answers as a portal.
    async fn describe(&mut self, d: Describe) -> std::io::Result<Result<(), WireError>> {
        let name = d.name.unwrap_or_default();
        if d.target_type == b'S' {
            let Some(stmt) = self.statements.get(&name).cloned() else {
                return Ok(Err(ProtocolError::NoSuchStatement(name).into()));
            };
            self.socket
                .feed(B::ParameterDescription(ParameterDescription::new(stmt.param_oids())).into())
                .await?;
            self.describe_rows(&stmt, &Formats::TEXT).await?;
        } else {
            let Some(portal) = self.portals.get(&name) else {
                // A cursor opened with DECLARE is a portal too (psycopg
                // describes its server-side cursors this way).
                let Some(schema) = self.session.cursor_row_type(&name) else {
                    return Ok(Err(ProtocolError::NoSuchPortal(name).into()));
                };
                let rows = row_description(&schema, &Formats::TEXT);
                self.socket.feed(B::RowDescription(rows).into()).await?;
                return Ok(Ok(()));
            };
            let stmt = portal.stmt.clone();
            let binary = portal.binary.clone();
            self.describe_rows(&stmt, &binary).await?;
        }
        Ok(Ok(()))
    }

    /// Bind: a portal of a prepared statement with its parameters decoded.
    pub(super) fn bind(&mut self, b: &BindMsg) -> Result<(), WireError> {
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
    pub(super) async fn describe_rows(
        &mut self,
        stmt: &Stmt,
        binary: &Formats,
    ) -> std::io::Result<()> {
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

    /// Execute: a COPY, a whole point lookup, or a query started (if new) and then
    /// streamed up to `max_rows` rows (0: all). A portal that failed is dropped.
    pub(super) async fn execute_portal(
        &mut self,
        name: String,
        max_rows: i32,
    ) -> std::io::Result<Result<(), WireError>> {
        let Some(mut portal) = self.portals.remove(&name) else {
            return Ok(Err(ProtocolError::NoSuchPortal(name).into()));
        };
        self.statement = portal.stmt.sql.clone();
        if let (Some(c), PortalState::Ready) = (&portal.stmt.copy, &portal.state) {
            let c = c.clone();
            portal.state = PortalState::Done;
            self.portals.insert(name, portal);
            return super::copy::run_copy(self, c).await;
        }
        let limit = usize::try_from(max_rows).unwrap_or(0);
        let ready = matches!(portal.state, PortalState::Ready);
        if ready && limit == 0 && portal.stmt.lookup.is_some() {
            let result = self.answer_lookup(&mut portal).await?;
            if result.is_ok() {
                self.portals.insert(name, portal);
            }
            return Ok(result);
        }
        // An execution answered at once (a point lookup with a row limit, a
        // precomputed constant) runs and streams its in-memory answer on this worker:
        // handing the worker over for it would cost more than the answer.
        let scope = self.scope(!portal.stmt.prepared.answers_at_once());
        let result = match ready {
            true => match self.start_portal(&mut portal, &scope).await? {
                Ok(true) => self.continue_portal(&mut portal, limit, &scope).await?,
                Ok(false) => Ok(()),
                Err(e) => return Ok(Err(e)),
            },
            false => self.continue_portal(&mut portal, limit, &scope).await?,
        };
        self.portals.insert(name, portal);
        Ok(result)
    }

    /// A point lookup answered whole: rows are encoded straight from the storage
    /// values into the socket's output buffer (no Arrow arrays, no stream, no copy;
    /// it takes microseconds, so no cancel/timeout machinery either).
    async fn answer_lookup(
        &mut self,
        portal: &mut Portal,
    ) -> std::io::Result<Result<(), WireError>> {
        portal.state = PortalState::Done;
        let Some(lookup) = &portal.stmt.lookup else {
            return Ok(Err(ProtocolError::Violation(
                "statement is not a point lookup".into(),
            )
            .into()));
        };
        let binary = &portal.binary;
        let buf = self.socket.write_buffer_mut();
        let before = buf.len();
        let rows = self
            .session
            .point_lookup_rows(&portal.stmt.prepared, &portal.params, |row| {
                encode_lookup_row(buf, row, lookup, binary)
            });
        let n = match rows {
            Some(Ok(n)) => n,
            other => {
                buf.truncate(before);
                return Ok(Err(match other {
                    Some(Err(e)) => e.into(),
                    _ => ProtocolError::Violation("statement is not a point lookup".into()).into(),
                }));
            }
        };
        put_command_complete(buf, "SELECT", Some(n as u64));
        if buf.len() >= ROW_FLUSH_BYTES {
            self.socket.flush().await?;
        }
        Ok(Ok(()))
    }

    /// Run a ready portal's statement. A command is answered here (the portal is
    /// then done, `false`); rows leave the portal `Running` (`true`) for
    /// [`Self::continue_portal`].
    async fn start_portal(
        &mut self,
        portal: &mut Portal,
        scope: &Scope,
    ) -> std::io::Result<Result<bool, WireError>> {
        let out = match self
            .session
            .point_lookup(&portal.stmt.prepared, &portal.params)
        {
            // A point lookup with a row limit: stream its one batch.
            Some(Ok(batch)) => Ok(Output::Rows(hindsight_sql::memory_stream(vec![batch]))),
            Some(Err(e)) => Err(e.into()),
            None => {
                // Boxed: the SQL layer's futures are large, and moving them through
                // each await level by value showed up as memcpy in profiles.
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
            }
            Ok(Output::Command { tag, rows }) => {
                portal.state = PortalState::Done;
                self.complete(command_tag(tag, rows)).await?;
            }
            Ok(Output::Rows(stream)) => {
                portal.state = PortalState::Running {
                    stream,
                    pending: None,
                    sent: 0,
                };
                return Ok(Ok(true));
            }
        }
        Ok(Ok(false))
    }

    /// Send up to `limit` more rows of a running portal (0: all): CommandComplete
    /// at the end, else PortalSuspended. A portal already done has no more rows.
    async fn continue_portal(
        &mut self,
        portal: &mut Portal,
        limit: usize,
        scope: &Scope,
    ) -> std::io::Result<Result<(), WireError>> {
        let PortalState::Running {
            stream,
            pending,
            sent,
        } = std::mem::replace(&mut portal.state, PortalState::Done)
        else {
            self.complete("SELECT 0".into()).await?;
            return Ok(Ok(()));
        };
        let mut state = (stream, pending, sent);
        match self
            .stream_rows(&mut state, &portal.binary, limit, scope)
            .await?
        {
            Ok(true) => self.complete(format!("SELECT {}", state.2)).await?,
            Ok(false) => {
                portal.state = PortalState::Running {
                    stream: state.0,
                    pending: state.1,
                    sent: state.2,
                };
                self.socket
                    .feed(B::PortalSuspended(PortalSuspended::new()).into())
                    .await?;
            }
            Err(e) => return Ok(Err(e)),
        }
        Ok(Ok(()))
    }
}

/// Decode Bind's parameters against a statement.
pub(super) fn bind_portal(stmt: Arc<Stmt>, b: &BindMsg) -> Result<Portal, WireError> {
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
