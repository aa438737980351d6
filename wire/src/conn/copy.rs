//! COPY over the protocol: COPY FROM STDIN streams CopyData chunks through the
//! record parser into the SQL layer's [`CopyIn`] (committed as one batch only at
//! CopyDone: a CopyFail, a bad row or a vanished client leaves nothing visible);
//! COPY TO STDOUT runs the query and streams its rows batch by batch as CopyData
//! (the whole result is never held).

use std::time::Instant;

use bytes::{BufMut, BytesMut};
use datafusion::arrow::record_batch::RecordBatch;
use futures::{SinkExt, StreamExt};
use hindsight_sql::ast::CopySource;
use hindsight_sql::{CopyIn, ErrorKind, Output, SqlError, pgtext};
use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::copy::{CopyDone, CopyInResponse, CopyOutResponse};

use super::state::Connection;
use crate::codec::{Frame, Outgoing};
use crate::copy::{CopyCommand, CopyOptions, RecordParser, format_record, unsupported};
use crate::sqlstate::{ProtocolError, WireError};

/// Flush COPY TO output in chunks of about this size.
const COPY_OUT_CHUNK: usize = 64 << 10;

/// Run a COPY on a connection (simple or extended protocol).
pub(super) async fn run_copy(
    conn: &mut Connection,
    cmd: CopyCommand,
) -> std::io::Result<Result<(), WireError>> {
    let started = Instant::now();
    let result = if cmd.from_client {
        copy_in(conn, &cmd).await?
    } else {
        copy_out(conn, &cmd).await?
    };
    if result.is_err() {
        conn.session.mark_failed();
    }
    Ok(result.map(|rows| {
        tracing::debug!(
            rows,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "copy"
        );
    }))
}

async fn copy_in(
    conn: &mut Connection,
    cmd: &CopyCommand,
) -> std::io::Result<Result<u64, WireError>> {
    let Some((table, columns)) = cmd.table() else {
        return Ok(Err(unsupported("COPY FROM needs a table")));
    };
    let mut sink = match conn.session.copy_in(&table, &columns) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e.into())),
    };
    let width = sink.width();
    conn.socket
        .send(Outgoing::Message(B::CopyInResponse(CopyInResponse::new(
            0,
            width as i16,
            vec![0; width],
        ))))
        .await?;
    let mut parser = RecordParser::new(cmd.options.clone());
    loop {
        let frame = match conn.socket.next().await {
            Some(f) => f?,
            // The client vanished: the rows are dropped with `sink`.
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "client disconnected during COPY",
                ));
            }
        };
        match frame {
            Frame::Message(F::CopyData(d)) => {
                parser.feed(&d.data);
                if let Err(e) = drain(&mut parser, &mut sink, false) {
                    return Ok(Err(e));
                }
            }
            Frame::Message(F::CopyDone(_)) => {
                if let Err(e) = drain(&mut parser, &mut sink, true) {
                    return Ok(Err(e));
                }
                let rows = match conn.session.finish_copy(sink, parser.line) {
                    Ok(r) => r,
                    Err(e) => return Ok(Err(e.into())),
                };
                conn.shared_metrics()
                    .copy_rows_in
                    .fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
                conn.complete(format!("COPY {rows}")).await?;
                return Ok(Ok(rows));
            }
            Frame::Message(F::CopyFail(f)) => {
                return Ok(Err(SqlError::new(
                    ErrorKind::QueryCanceled,
                    format!("COPY from stdin failed: {}", f.message),
                )
                .into()));
            }
            // Clients may pipeline Flush/Sync behind the COPY; PostgreSQL ignores them.
            Frame::Message(F::Flush(_)) | Frame::Message(F::Sync(_)) => {}
            Frame::Message(_) | Frame::Bind(_) => {
                return Ok(Err(ProtocolError::Violation(
                    "unexpected message type during COPY from stdin".into(),
                )
                .into()));
            }
            Frame::Refused(e) | Frame::RefusedExtended(e) => return Ok(Err(e.into())),
        }
    }
}

/// Move complete records from the parser into the sink.
fn drain(parser: &mut RecordParser, sink: &mut CopyIn, at_end: bool) -> Result<(), WireError> {
    while let Some((record, line)) = parser.next_record(at_end)? {
        sink.push(record.fields(), line)?;
    }
    Ok(())
}

async fn copy_out(
    conn: &mut Connection,
    cmd: &CopyCommand,
) -> std::io::Result<Result<u64, WireError>> {
    let query = match copy_out_query(cmd) {
        Ok(q) => q,
        Err(e) => return Ok(Err(e)),
    };
    let stmt = match conn.session.parse(&query).map(|mut v| v.pop()) {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(Err(unsupported("COPY TO needs a query"))),
        Err(e) => return Ok(Err(e.into())),
    };
    let scope = conn.scope(true);
    let mut stream = match scope.run(Box::pin(conn.session.execute(stmt))).await {
        Ok(Output::Rows(s)) => s,
        Ok(Output::Command { .. }) => {
            return Ok(Err(unsupported("COPY TO needs a query that returns rows")));
        }
        Err(e) => return Ok(Err(e)),
    };
    let schema = stream.schema();
    let width = schema.fields().len();
    conn.socket
        .feed(Outgoing::Message(B::CopyOutResponse(CopyOutResponse::new(
            0,
            width as i16,
            vec![0; width],
        ))))
        .await?;
    let o = &cmd.options;
    let mut out = BytesMut::new();
    let mut rows = 0u64;
    if o.header {
        let names: Vec<Option<String>> = schema
            .fields()
            .iter()
            .map(|f| Some(f.name().clone()))
            .collect();
        format_record(o, &names, &mut out);
    }
    loop {
        let next = scope
            .run(async { stream.next().await.transpose().map_err(SqlError::from) })
            .await;
        let batch = match next {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                flush_copy_data(conn, &mut out).await?;
                return Ok(Err(e));
            }
        };
        rows += send_records(conn, o, &batch, &mut out).await?;
    }
    flush_copy_data(conn, &mut out).await?;
    conn.socket
        .feed(Outgoing::Message(B::CopyDone(CopyDone::new())))
        .await?;
    conn.complete(format!("COPY {rows}")).await?;
    Ok(Ok(rows))
}

/// The query whose rows a COPY TO sends: its own, or all (or the listed) columns
/// of its table.
fn copy_out_query(cmd: &CopyCommand) -> Result<String, WireError> {
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    match (&cmd.source, cmd.table()) {
        (CopySource::Query(q), _) => Ok(q.to_string()),
        (_, Some((table, columns))) => {
            let cols = match columns.is_empty() {
                true => "*".to_string(),
                false => columns
                    .iter()
                    .map(|c| quote(c))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            Ok(format!("SELECT {cols} FROM {}", quote(&table)))
        }
        _ => Err(unsupported("COPY TO needs a table or a query")),
    }
}

/// Format a batch's rows into `out` as COPY records, sending CopyData whenever
/// `out` reaches [`COPY_OUT_CHUNK`]. Returns the rows formatted.
async fn send_records(
    conn: &mut Connection,
    o: &CopyOptions,
    batch: &RecordBatch,
    out: &mut BytesMut,
) -> std::io::Result<u64> {
    let mut record = Vec::with_capacity(batch.num_columns());
    for row in 0..batch.num_rows() {
        record.clear();
        record.extend(
            batch
                .columns()
                .iter()
                .map(|c| pgtext::cell(c.as_ref(), row)),
        );
        format_record(o, &record, out);
        if out.len() >= COPY_OUT_CHUNK {
            flush_copy_data(conn, out).await?;
        }
    }
    Ok(batch.num_rows() as u64)
}

/// Wrap buffered rows into one CopyData message.
async fn flush_copy_data(conn: &mut Connection, out: &mut BytesMut) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let body = out.split();
    let mut msg = BytesMut::with_capacity(body.len() + 5);
    msg.put_u8(b'd');
    msg.put_i32(body.len() as i32 + 4);
    msg.put(body);
    conn.socket.feed(Outgoing::Raw(msg)).await
}
