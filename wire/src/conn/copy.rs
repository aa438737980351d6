//! COPY over the protocol: COPY FROM STDIN streams CopyData chunks through the
//! format's parser (records for text and CSV, tuples for binary) into the SQL
//! layer's [`CopyIn`] (committed as one batch only at CopyDone: a CopyFail, a bad
//! row or a vanished client leaves nothing visible); COPY TO STDOUT runs the query
//! and streams its rows batch by batch, one CopyData message per row as the
//! protocol specifies (drivers read a row per message), written to the socket in
//! chunks (the whole result is never held).

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
use crate::copy::{
    BinaryParser, CopyCommand, CopyFormat, CopyOptions, RecordParser, format_record, unsupported,
    write_header, write_trailer, write_tuple,
};
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
    let binary = cmd.options.format == CopyFormat::Binary;
    let mut sink = match conn.session.copy_in(&table, &columns, binary) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e.into())),
    };
    let width = sink.width();
    let format = i16::from(binary);
    conn.socket
        .send(Outgoing::Message(B::CopyInResponse(CopyInResponse::new(
            format as i8,
            width as i16,
            vec![format; width],
        ))))
        .await?;
    let mut parser = Input::new(&cmd.options);
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
                if let Err(e) = parser.drain(&mut sink, false) {
                    return Ok(Err(e));
                }
            }
            Frame::Message(F::CopyDone(_)) => {
                if let Err(e) = parser.drain(&mut sink, true) {
                    return Ok(Err(e));
                }
                let rows = match conn.session.finish_copy(sink, parser.line()) {
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

/// The parser of a COPY FROM's stream, by format.
enum Input {
    Records(RecordParser),
    Binary(BinaryParser),
}

impl Input {
    fn new(o: &CopyOptions) -> Input {
        match o.format {
            CopyFormat::Binary => Input::Binary(BinaryParser::default()),
            CopyFormat::Text | CopyFormat::Csv => Input::Records(RecordParser::new(o.clone())),
        }
    }

    fn feed(&mut self, data: &[u8]) {
        match self {
            Input::Records(p) => p.feed(data),
            Input::Binary(p) => p.feed(data),
        }
    }

    /// Move the complete rows that arrived into the sink.
    fn drain(&mut self, sink: &mut CopyIn, at_end: bool) -> Result<(), WireError> {
        match self {
            Input::Records(p) => {
                while let Some((record, line)) = p.next_record(at_end)? {
                    sink.push(record.fields(), line)?;
                }
            }
            Input::Binary(p) => {
                while p.next_tuple(at_end)? {
                    sink.push_binary(p.fields(), p.tuples)?;
                }
            }
        }
        Ok(())
    }

    /// The line (text, CSV) or tuple (binary) read last.
    fn line(&self) -> u64 {
        match self {
            Input::Records(p) => p.line,
            Input::Binary(p) => p.tuples,
        }
    }
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
    let o = &cmd.options;
    let format = i16::from(o.format == CopyFormat::Binary);
    conn.socket
        .feed(Outgoing::Message(B::CopyOutResponse(CopyOutResponse::new(
            format as i8,
            width as i16,
            vec![format; width],
        ))))
        .await?;
    let mut out = Framer::default();
    let mut rows = 0u64;
    if o.format == CopyFormat::Binary {
        // PostgreSQL sends the header in the first row's message.
        write_header(out.message());
    } else if o.header {
        let names: Vec<Option<String>> = schema
            .fields()
            .iter()
            .map(|f| Some(f.name().clone()))
            .collect();
        format_record(o, &names, out.message());
        out.close();
    }
    loop {
        let next = scope
            .run(async { stream.next().await.transpose().map_err(SqlError::from) })
            .await;
        let batch = match next {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                out.discard_open();
                out.flush(conn).await?;
                return Ok(Err(e));
            }
        };
        rows += send_records(conn, o, &batch, &mut out).await?;
    }
    if o.format == CopyFormat::Binary {
        write_trailer(out.message());
        out.close();
    }
    out.flush(conn).await?;
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
            let table: Vec<String> = table.iter().map(|p| quote(p)).collect();
            Ok(format!("SELECT {cols} FROM {}", table.join(".")))
        }
        _ => Err(unsupported("COPY TO needs a table or a query")),
    }
}

/// Format a batch's rows into `out`, one CopyData message each, sending them
/// whenever `out` reaches [`COPY_OUT_CHUNK`]. Returns the rows formatted.
async fn send_records(
    conn: &mut Connection,
    o: &CopyOptions,
    batch: &RecordBatch,
    out: &mut Framer,
) -> std::io::Result<u64> {
    let mut record = Vec::with_capacity(batch.num_columns());
    for row in 0..batch.num_rows() {
        if o.format == CopyFormat::Binary {
            write_tuple(batch, row, out.message());
        } else {
            record.clear();
            record.extend(
                batch
                    .columns()
                    .iter()
                    .map(|c| pgtext::cell(c.as_ref(), row)),
            );
            format_record(o, &record, out.message());
        }
        out.close();
        if out.buf.len() >= COPY_OUT_CHUNK {
            out.flush(conn).await?;
        }
    }
    Ok(batch.num_rows() as u64)
}

/// COPY TO's output: whole CopyData messages, written to the socket together.
#[derive(Default)]
struct Framer {
    buf: BytesMut,
    /// Where the message being written starts (its type byte).
    open: Option<usize>,
}

impl Framer {
    /// The body of the message being written, opening one if none is.
    fn message(&mut self) -> &mut BytesMut {
        if self.open.is_none() {
            self.open = Some(self.buf.len());
            self.buf.put_u8(b'd');
            self.buf.put_i32(0);
        }
        &mut self.buf
    }

    /// End the open message: its length is filled in.
    fn close(&mut self) {
        let Some(at) = self.open.take() else {
            return;
        };
        let len = (self.buf.len() - at - 1) as i32;
        if let Some(slot) = self.buf.get_mut(at + 1..at + 5) {
            slot.copy_from_slice(&len.to_be_bytes());
        }
    }

    /// Drop the message being written.
    fn discard_open(&mut self) {
        if let Some(at) = self.open.take() {
            self.buf.truncate(at);
        }
    }

    /// Send the closed messages.
    async fn flush(&mut self, conn: &mut Connection) -> std::io::Result<()> {
        let end = self.open.unwrap_or(self.buf.len());
        if end == 0 {
            return Ok(());
        }
        let done = self.buf.split_to(end);
        if let Some(at) = self.open.as_mut() {
            *at -= end;
        }
        conn.socket.feed(Outgoing::Raw(done)).await
    }
}
