//! Named cursors, as psycopg's server-side cursors, SQLAlchemy's `stream_results` and
//! pandas' `chunksize` use them: `DECLARE name [NO SCROLL] CURSOR [WITH HOLD |
//! WITHOUT HOLD] FOR query`, `FETCH [FORWARD] [n | ALL | NEXT] [FROM | IN] name`,
//! `CLOSE name | ALL`.
//!
//! Invariants: a cursor holds its query's stream, not its result: FETCH pulls only
//! the batches it needs (a batch split by a FETCH keeps its rest for the next), so a
//! large result streams in bounded memory. The query runs at the snapshot of the
//! DECLARE. A cursor without HOLD lives until its transaction ends (DECLARE outside a
//! transaction block is 25P01, as in PostgreSQL); one WITH HOLD until CLOSE or the
//! end of the session. Cursors only move forward (SCROLL and backward fetches are
//! 0A000).

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use sqlparser::ast::{CloseCursor, Declare, FetchDirection, Ident, Statement, Value};

use super::state::{Session, Txn};
use crate::error::{ErrorKind, Result, SqlError};
use crate::ident::normalize;
use crate::output::{Output, batches_stream};
use crate::pg::views::CursorInfo;

/// An open cursor.
pub(crate) struct Cursor {
    /// In a mutex only so the session stays `Sync` (a stream is `Send` only); it is
    /// reached through `get_mut`, never locked.
    stream: std::sync::Mutex<SendableRecordBatchStream>,
    schema: SchemaRef,
    /// Rows of the last batch pulled that the last FETCH did not take.
    pending: Option<RecordBatch>,
    info: CursorInfo,
}

impl Cursor {
    pub(crate) fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Up to `n` more rows.
    async fn take(&mut self, n: usize) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let mut left = n;
        let stream = self
            .stream
            .get_mut()
            .map_err(|_| SqlError::internal("a cursor's stream was poisoned"))?;
        while left > 0 {
            let batch = match self.pending.take() {
                Some(b) => b,
                None => match stream.next().await {
                    Some(b) => b?,
                    None => break,
                },
            };
            if batch.num_rows() > left {
                out.push(batch.slice(0, left));
                self.pending = Some(batch.slice(left, batch.num_rows() - left));
                break;
            }
            left -= batch.num_rows();
            out.push(batch);
        }
        Ok(out)
    }
}

fn no_such_cursor(name: &str) -> SqlError {
    SqlError::new(
        ErrorKind::InvalidCursorName,
        format!("cursor \"{name}\" does not exist"),
    )
}

/// How many rows a FETCH direction asks for.
fn fetch_count(direction: &FetchDirection) -> Result<usize> {
    let count = |v: &Value| match v {
        Value::Number(n, _) => n
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        _ => None,
    };
    let n = match direction {
        FetchDirection::Next => Some(1),
        FetchDirection::All | FetchDirection::ForwardAll => Some(usize::MAX),
        FetchDirection::Count { limit } => count(&limit.value),
        FetchDirection::Forward { limit: None } => Some(1),
        FetchDirection::Forward { limit: Some(l) } => count(&l.value),
        _ => None,
    };
    n.ok_or_else(|| {
        SqlError::unsupported(format!(
            "FETCH {direction} is not supported: cursors only move forward"
        ))
        .with_hint("use FETCH [FORWARD] n, FETCH NEXT or FETCH ALL")
    })
}

impl Session {
    /// `DECLARE name CURSOR FOR query`: plan and start the query.
    pub(super) async fn declare(
        &mut self,
        stmts: Vec<Declare>,
        params: Vec<ScalarValue>,
    ) -> Result<Output> {
        let [d] = <[Declare; 1]>::try_from(stmts)
            .map_err(|_| SqlError::unsupported("DECLARE one cursor at a time"))?;
        let (Some(query), [name]) = (d.for_query, d.names.as_slice()) else {
            return Err(SqlError::unsupported(
                "only DECLARE name CURSOR FOR query is supported",
            ));
        };
        let name = normalize(name);
        if d.scroll == Some(true) {
            return Err(SqlError::unsupported("SCROLL cursors are not supported")
                .with_hint("declare it NO SCROLL (the default here) and fetch forward"));
        }
        let hold = d.hold == Some(true);
        let statement = query.to_string();
        if !hold && !matches!(self.txn, Txn::Open(_)) {
            return Err(SqlError::new(
                ErrorKind::NoActiveTransaction,
                "DECLARE CURSOR can only be used in transaction blocks",
            )
            .with_hint("BEGIN first, or declare the cursor WITH HOLD"));
        }
        if self.cursors.contains_key(&name) {
            return Err(SqlError::new(
                ErrorKind::DuplicateCursor,
                format!("cursor \"{name}\" already exists"),
            ));
        }
        let Output::Rows(stream) = self.query(Statement::Query(query), params).await? else {
            return Err(SqlError::internal(
                "a cursor's query returned no rows stream",
            ));
        };
        self.cursors.insert(
            name.clone(),
            Cursor {
                schema: stream.schema(),
                stream: std::sync::Mutex::new(stream),
                pending: None,
                info: CursorInfo {
                    name: name.clone(),
                    statement,
                    holdable: hold,
                    created_micros: chrono::Utc::now().timestamp_micros(),
                },
            },
        );
        self.publish_cursors();
        Ok(Output::command("DECLARE CURSOR"))
    }

    /// `FETCH [direction] FROM name`.
    pub(super) async fn fetch(
        &mut self,
        name: &Ident,
        direction: &FetchDirection,
    ) -> Result<Output> {
        let n = fetch_count(direction)?;
        let name = normalize(name);
        let cursor = self
            .cursors
            .get_mut(&name)
            .ok_or_else(|| no_such_cursor(&name))?;
        let batches = cursor.take(n).await?;
        Ok(Output::Rows(batches_stream(cursor.schema(), batches)))
    }

    /// `CLOSE name` or `CLOSE ALL`.
    pub(super) fn close_cursor(&mut self, which: &CloseCursor) -> Result<Output> {
        match which {
            CloseCursor::All => self.cursors.clear(),
            CloseCursor::Specific { name } => {
                let name = normalize(name);
                self.cursors
                    .remove(&name)
                    .ok_or_else(|| no_such_cursor(&name))?;
            }
        }
        self.publish_cursors();
        Ok(Output::command("CLOSE CURSOR"))
    }

    /// The end of a transaction closes its cursors without HOLD.
    pub(super) fn end_transaction_cursors(&mut self) {
        self.cursors.retain(|_, c| c.info.holdable);
        self.publish_cursors();
    }

    /// Show the open cursors in `pg_cursors`.
    fn publish_cursors(&self) {
        let mut list: Vec<CursorInfo> = self.cursors.values().map(|c| c.info.clone()).collect();
        list.sort_by_key(|c| c.created_micros);
        self.cursor_list.set(list);
    }

    /// The row type of the open cursor named exactly `name` (a protocol-level
    /// Describe of it as a portal).
    pub fn cursor_row_type(&self, name: &str) -> Option<SchemaRef> {
        self.cursors.get(name).map(Cursor::schema)
    }

    /// The row type a FETCH from `name` returns (for Describe), if it is open.
    pub(super) fn cursor_schema(&self, name: &Ident) -> Option<SchemaRef> {
        self.cursors.get(&normalize(name)).map(Cursor::schema)
    }
}
