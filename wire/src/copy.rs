//! COPY FROM STDIN and COPY TO STDOUT, in PostgreSQL's text and CSV formats.
//!
//! Invariants:
//! - COPY FROM is streamed: CopyData chunks are split into records as they arrive (a
//!   record may span chunks, a CSV field may span lines), and rows go to the SQL
//!   layer's [`CopyIn`], which commits them as one batch only at CopyDone. A
//!   CopyFail, a bad row or a vanished client leaves nothing visible.
//! - COPY TO is streamed: rows are formatted batch by batch into CopyData messages;
//!   the whole result is never held.

use std::time::Instant;

use bytes::{BufMut, BytesMut};
use futures::{SinkExt, StreamExt};
use hindsight_sql::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, ObjectNamePart,
    Statement,
};
use hindsight_sql::{CopyIn, ErrorKind, Output, SqlError, normalize_ident, pgtext};
use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::copy::{CopyDone, CopyInResponse, CopyOutResponse};

use crate::codec::{Frame, Outgoing};
use crate::conn::Connection;
use crate::sqlstate::{ProtocolError, WireError};

/// Flush COPY TO output in chunks of about this size.
const COPY_OUT_CHUNK: usize = 64 << 10;

#[derive(Clone, Debug, PartialEq)]
pub enum CopyFormat {
    Text,
    Csv,
}

/// Options of a COPY statement.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    pub format: CopyFormat,
    pub delimiter: u8,
    pub null: String,
    pub header: bool,
    pub quote: u8,
    pub escape: u8,
}

/// A COPY between a client and a table or query.
#[derive(Clone, Debug)]
pub struct CopyCommand {
    pub from_client: bool,
    pub source: CopySource,
    pub options: CopyOptions,
}

fn unsupported(what: &str) -> WireError {
    SqlError::unsupported(what.to_string())
        .with_hint(
            "use COPY ... FROM STDIN or COPY ... TO STDOUT (psql: \\copy) with FORMAT text or csv",
        )
        .into()
}

impl CopyCommand {
    /// A COPY statement's command, or None for any other statement.
    pub fn recognize(stmt: &Statement) -> Option<Result<CopyCommand, WireError>> {
        let Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } = stmt
        else {
            return None;
        };
        Some(Self::build(source, *to, target, options, legacy_options))
    }

    fn build(
        source: &CopySource,
        to: bool,
        target: &CopyTarget,
        options: &[CopyOption],
        legacy: &[CopyLegacyOption],
    ) -> Result<CopyCommand, WireError> {
        match (to, target) {
            (false, CopyTarget::Stdin) | (true, CopyTarget::Stdout) => {}
            _ => {
                return Err(unsupported(
                    "COPY to or from a server file or program is not supported",
                ));
            }
        }
        if !to && matches!(source, CopySource::Query(_)) {
            return Err(unsupported("COPY FROM needs a table"));
        }
        let mut o = CopyOptions {
            format: CopyFormat::Text,
            delimiter: b'\t',
            null: "\\N".into(),
            header: false,
            quote: b'"',
            escape: b'"',
        };
        let mut delimiter = None;
        let mut null = None;
        let byte = |c: char, what: &str| -> Result<u8, WireError> {
            u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| {
                unsupported(&format!("COPY {what} must be a single one-byte character"))
            })
        };
        for opt in options {
            match opt {
                CopyOption::Format(f) => {
                    o.format = match f.value.to_ascii_lowercase().as_str() {
                        "text" => CopyFormat::Text,
                        "csv" => CopyFormat::Csv,
                        other => {
                            return Err(unsupported(&format!(
                                "COPY format \"{other}\" is not supported"
                            )));
                        }
                    }
                }
                CopyOption::Delimiter(c) => delimiter = Some(byte(*c, "delimiter")?),
                CopyOption::Null(s) => null = Some(s.clone()),
                CopyOption::Header(h) => o.header = *h,
                CopyOption::Quote(c) => o.quote = byte(*c, "quote")?,
                CopyOption::Escape(c) => o.escape = byte(*c, "escape")?,
                CopyOption::Freeze(_) | CopyOption::Encoding(_) => {}
                other => {
                    return Err(unsupported(&format!(
                        "COPY option {other} is not supported"
                    )));
                }
            }
        }
        for opt in legacy {
            match opt {
                CopyLegacyOption::Csv(csv) => {
                    o.format = CopyFormat::Csv;
                    for c in csv {
                        match c {
                            CopyLegacyCsvOption::Header => o.header = true,
                            CopyLegacyCsvOption::Quote(q) => o.quote = byte(*q, "quote")?,
                            CopyLegacyCsvOption::Escape(e) => o.escape = byte(*e, "escape")?,
                            other => {
                                return Err(unsupported(&format!(
                                    "COPY option {other} is not supported"
                                )));
                            }
                        }
                    }
                }
                CopyLegacyOption::Delimiter(c) => delimiter = Some(byte(*c, "delimiter")?),
                CopyLegacyOption::Null(s) => null = Some(s.clone()),
                CopyLegacyOption::Header => o.header = true,
                other => {
                    return Err(unsupported(&format!(
                        "COPY option {other} is not supported"
                    )));
                }
            }
        }
        if o.format == CopyFormat::Csv {
            o.delimiter = b',';
            o.null = String::new();
        }
        if let Some(d) = delimiter {
            o.delimiter = d;
        }
        if let Some(n) = null {
            o.null = n;
        }
        Ok(CopyCommand {
            from_client: !to,
            source: source.clone(),
            options: o,
        })
    }

    fn table(&self) -> Option<(String, Vec<String>)> {
        match &self.source {
            CopySource::Table {
                table_name,
                columns,
            } => {
                let name = table_name.0.last().and_then(|p| match p {
                    ObjectNamePart::Identifier(i) => Some(normalize_ident(i)),
                    ObjectNamePart::Function(_) => None,
                })?;
                Some((name, columns.iter().map(normalize_ident).collect()))
            }
            CopySource::Query(_) => None,
        }
    }
}

/// Run a COPY on a connection (simple or extended protocol).
pub(crate) async fn run(
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

// ---------------------------------------------------------------------------
// COPY FROM STDIN

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

/// One parsed record: its fields' unescaped text, with each field's span and NULL
/// flag. Reused from record to record, so parsing allocates nothing once the buffers
/// have grown to the widest record.
#[derive(Debug, Default)]
pub struct Record {
    text: String,
    /// (start, end) in `text` and is-NULL, per field.
    spans: Vec<(usize, usize, bool)>,
}

impl Record {
    fn clear(&mut self) {
        self.text.clear();
        self.spans.clear();
    }

    /// End the field whose unescaped text was appended since the previous field's end.
    fn end_field(&mut self, null: bool) {
        let start = self.spans.last().map_or(0, |s| s.1);
        self.spans.push((start, self.text.len(), null));
    }

    /// The fields in order (`None`: NULL).
    pub fn fields(&self) -> impl ExactSizeIterator<Item = Option<&str>> + '_ {
        self.spans.iter().map(|&(start, end, null)| {
            (!null).then(|| self.text.get(start..end).unwrap_or_default())
        })
    }
}

/// Splits COPY input into records of fields, across chunk boundaries.
///
/// Records are found with `memchr` (a newline outside CSV quotes; in text format a
/// backslash escapes the next byte), then split in one pass over the record's bytes.
/// Delimiter, quote and escape are ASCII, so every split lands on a UTF-8 boundary
/// of the record, which is validated once as a whole.
pub struct RecordParser {
    o: CopyOptions,
    buf: Vec<u8>,
    pos: usize,
    /// Line number of the last record returned (1-based, counting the header).
    pub line: u64,
    header_pending: bool,
    ended: bool,
    record: Record,
}

impl RecordParser {
    pub fn new(o: CopyOptions) -> Self {
        RecordParser {
            header_pending: o.header,
            o,
            buf: Vec::new(),
            pos: 0,
            line: 0,
            ended: false,
            record: Record::default(),
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete record and its line number; at the end of input a final
    /// unterminated line counts.
    pub fn next_record(&mut self, at_end: bool) -> Result<Option<(&Record, u64)>, WireError> {
        loop {
            if self.ended {
                return Ok(None);
            }
            let rest = self.buf.get(self.pos..).unwrap_or_default();
            if rest.is_empty() {
                return Ok(None);
            }
            let Some((end, next, plain)) = record_end(&self.o, rest, at_end) else {
                return Ok(None);
            };
            let raw = rest.get(..end).unwrap_or_default();
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            self.pos += next;
            self.line += 1;
            if raw == b"\\." {
                self.ended = true;
                return Ok(None);
            }
            if self.header_pending {
                self.header_pending = false;
                continue;
            }
            let line = std::str::from_utf8(raw).map_err(|_| ProtocolError::InvalidUtf8)?;
            self.record.clear();
            match self.o.format {
                _ if plain => split_plain(&self.o, line, &mut self.record),
                CopyFormat::Text => split_text(&self.o, line, &mut self.record),
                CopyFormat::Csv => split_csv(&self.o, line, &mut self.record),
            }
            return Ok(Some((&self.record, self.line)));
        }
    }
}

/// Where the record starting at `rest` ends (exclusive) and the next one starts,
/// and whether it is plain: free of the quote (CSV) or backslash (text) that the
/// field splitters unescape, so its fields are its raw text between delimiters.
fn record_end(o: &CopyOptions, rest: &[u8], at_end: bool) -> Option<(usize, usize, bool)> {
    let mut i = 0;
    let mut plain = true;
    match o.format {
        CopyFormat::Text => {
            while let Some(off) = rest.get(i..).and_then(|r| memchr::memchr2(b'\\', b'\n', r)) {
                let at = i + off;
                if rest.get(at) == Some(&b'\n') {
                    return Some((at, at + 1, plain));
                }
                plain = false;
                i = at + 2;
            }
        }
        CopyFormat::Csv => {
            let mut in_quotes = false;
            loop {
                let r = rest.get(i..).unwrap_or_default();
                let found = if in_quotes {
                    memchr::memchr2(o.escape, o.quote, r)
                } else {
                    memchr::memchr2(o.quote, b'\n', r)
                };
                let Some(off) = found else { break };
                let at = i + off;
                let b = rest.get(at).copied().unwrap_or(0);
                if b == b'\n' && !in_quotes {
                    return Some((at, at + 1, plain));
                }
                plain = false;
                if in_quotes && b == o.escape && rest.get(at + 1) == Some(&o.quote) {
                    i = at + 2;
                } else if b == o.quote {
                    in_quotes = !in_quotes;
                    i = at + 1;
                } else {
                    i = at + 1;
                }
            }
        }
    }
    at_end.then_some((rest.len(), rest.len(), plain))
}

/// Split a plain record (see [`record_end`]): one copy of the line, fields found by
/// `memchr`; a field is NULL when it is the NULL string. What [`split_csv`] and
/// [`split_text`] give for such a record, without their byte-at-a-time loop.
fn split_plain(o: &CopyOptions, line: &str, rec: &mut Record) {
    let base = rec.text.len();
    rec.text.push_str(line);
    let mut start = 0;
    let ends = memchr::memchr_iter(o.delimiter, line.as_bytes()).chain([line.len()]);
    for end in ends {
        let null = line.get(start..end) == Some(o.null.as_str());
        rec.spans.push((base + start, base + end, null));
        start = end + 1;
    }
}

/// Split a text-format record: fields end at an unescaped delimiter; backslash
/// escapes as PostgreSQL's COPY (\b \f \n \r \t \v, octal, \x hex, else the next
/// character itself). A field is NULL when its raw (escaped) text is the NULL string.
fn split_text(o: &CopyOptions, line: &str, rec: &mut Record) {
    let b = line.as_bytes();
    let piece = |from: usize, to: usize| line.get(from..to).unwrap_or_default();
    let mut i = 0;
    loop {
        let field_start = i;
        let mut seg = i;
        while let Some(&c) = b.get(i) {
            if c == o.delimiter {
                break;
            }
            if c != b'\\' {
                i += 1;
                continue;
            }
            rec.text.push_str(piece(seg, i));
            let Some(&e) = b.get(i + 1) else {
                // A trailing lone backslash is dropped.
                i += 1;
                seg = i;
                break;
            };
            i += 2;
            seg = i;
            match e {
                b'b' => rec.text.push('\u{8}'),
                b'f' => rec.text.push('\u{c}'),
                b'n' => rec.text.push('\n'),
                b'r' => rec.text.push('\r'),
                b't' => rec.text.push('\t'),
                b'v' => rec.text.push('\u{b}'),
                b'0'..=b'7' => {
                    let mut v = u32::from(e - b'0');
                    for _ in 0..2 {
                        match b.get(i) {
                            Some(&d @ b'0'..=b'7') => {
                                v = v * 8 + u32::from(d - b'0');
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    seg = i;
                    rec.text.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                }
                b'x' => {
                    let mut v = 0;
                    let mut n = 0;
                    while n < 2 {
                        match b.get(i).and_then(|d| char::from(*d).to_digit(16)) {
                            Some(d) => {
                                v = v * 16 + d;
                                n += 1;
                                i += 1;
                            }
                            None => break,
                        }
                    }
                    seg = i;
                    if n == 0 {
                        rec.text.push('x');
                    } else {
                        rec.text.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                    }
                }
                // Any other character stands for itself (it may be multi-byte: the
                // literal segment restarts at it).
                _ => seg = i - 1,
            }
        }
        rec.text.push_str(piece(seg, i));
        rec.end_field(piece(field_start, i) == o.null);
        if i >= b.len() {
            return;
        }
        i += 1;
    }
}

/// Split a CSV record: quoted fields may hold delimiters, newlines and escaped
/// quotes; an unquoted field equal to the NULL string is NULL, a quoted one never is.
fn split_csv(o: &CopyOptions, line: &str, rec: &mut Record) {
    let b = line.as_bytes();
    let piece = |from: usize, to: usize| line.get(from..to).unwrap_or_default();
    let mut i = 0;
    loop {
        let start = rec.text.len();
        let mut seg = i;
        let mut quoted = false;
        let mut in_quotes = false;
        while let Some(&c) = b.get(i) {
            if in_quotes {
                if c == o.escape && b.get(i + 1) == Some(&o.quote) {
                    rec.text.push_str(piece(seg, i));
                    seg = i + 1;
                    i += 2;
                } else if c == o.quote {
                    rec.text.push_str(piece(seg, i));
                    in_quotes = false;
                    i += 1;
                    seg = i;
                } else {
                    i += 1;
                }
            } else if c == o.quote {
                rec.text.push_str(piece(seg, i));
                in_quotes = true;
                quoted = true;
                i += 1;
                seg = i;
            } else if c == o.delimiter {
                break;
            } else {
                i += 1;
            }
        }
        rec.text.push_str(piece(seg, i));
        let null = !quoted && rec.text.get(start..).unwrap_or_default() == o.null;
        rec.end_field(null);
        if i >= b.len() {
            return;
        }
        i += 1;
    }
}

// ---------------------------------------------------------------------------
// COPY TO STDOUT

async fn copy_out(
    conn: &mut Connection,
    cmd: &CopyCommand,
) -> std::io::Result<Result<u64, WireError>> {
    let query = match (&cmd.source, cmd.table()) {
        (CopySource::Query(q), _) => q.to_string(),
        (_, Some((table, columns))) => {
            let cols = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!("SELECT {cols} FROM \"{}\"", table.replace('"', "\"\""))
        }
        _ => return Ok(Err(unsupported("COPY TO needs a table or a query"))),
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
        let mut record = Vec::with_capacity(width);
        for row in 0..batch.num_rows() {
            record.clear();
            record.extend(
                batch
                    .columns()
                    .iter()
                    .map(|c| pgtext::cell(c.as_ref(), row)),
            );
            format_record(o, &record, &mut out);
            rows += 1;
            if out.len() >= COPY_OUT_CHUNK {
                flush_copy_data(conn, &mut out).await?;
            }
        }
    }
    flush_copy_data(conn, &mut out).await?;
    conn.socket
        .feed(Outgoing::Message(B::CopyDone(CopyDone::new())))
        .await?;
    conn.complete(format!("COPY {rows}")).await?;
    Ok(Ok(rows))
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

/// Append one record in text or CSV format.
pub fn format_record(o: &CopyOptions, fields: &[Option<String>], out: &mut BytesMut) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.put_u8(o.delimiter);
        }
        match (f, &o.format) {
            (None, _) => out.put_slice(o.null.as_bytes()),
            (Some(v), CopyFormat::Text) => {
                for b in v.bytes() {
                    match b {
                        b'\\' => out.put_slice(b"\\\\"),
                        b'\n' => out.put_slice(b"\\n"),
                        b'\r' => out.put_slice(b"\\r"),
                        b'\t' => out.put_slice(b"\\t"),
                        d if d == o.delimiter => {
                            out.put_u8(b'\\');
                            out.put_u8(d);
                        }
                        other => out.put_u8(other),
                    }
                }
            }
            (Some(v), CopyFormat::Csv) => {
                let needs = v.is_empty() && o.null.is_empty()
                    || *v == o.null
                    || v.bytes()
                        .any(|b| b == o.delimiter || b == o.quote || b == b'\n' || b == b'\r');
                if needs {
                    out.put_u8(o.quote);
                    for b in v.bytes() {
                        if b == o.quote || b == o.escape {
                            out.put_u8(o.escape);
                        }
                        out.put_u8(b);
                    }
                    out.put_u8(o.quote);
                } else {
                    out.put_slice(v.as_bytes());
                }
            }
        }
    }
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(csv: bool) -> CopyOptions {
        CopyOptions {
            format: if csv {
                CopyFormat::Csv
            } else {
                CopyFormat::Text
            },
            delimiter: if csv { b',' } else { b'\t' },
            null: if csv { String::new() } else { "\\N".into() },
            header: false,
            quote: b'"',
            escape: b'"',
        }
    }

    fn owned(r: &Record) -> Vec<Option<String>> {
        r.fields().map(|f| f.map(str::to_string)).collect()
    }

    fn all(p: &mut RecordParser) -> Vec<Vec<Option<String>>> {
        let mut v = Vec::new();
        while let Some((r, _)) = p.next_record(true).unwrap() {
            v.push(owned(r));
        }
        v
    }

    #[test]
    fn text_records_unescape_and_span_chunks() {
        let mut p = RecordParser::new(opts(false));
        p.feed(b"1\ta\\tb\t\\N\n2\tx");
        assert_eq!(
            p.next_record(false)
                .unwrap()
                .map(|(r, line)| (owned(r), line)),
            Some((vec![Some("1".into()), Some("a\tb".into()), None], 1))
        );
        // The second line is incomplete until more data or the end arrives.
        assert!(p.next_record(false).unwrap().is_none());
        p.feed(b"y\t\\\\z\n\\.\n");
        assert_eq!(
            all(&mut p),
            vec![vec![
                Some("2".into()),
                Some("xy".into()),
                Some("\\z".into())
            ]]
        );
    }

    #[test]
    fn csv_quotes_nulls_and_embedded_newlines() {
        let mut o = opts(true);
        o.header = true;
        let mut p = RecordParser::new(o);
        p.feed(b"id,name,note\r\n1,\"a,b\",\n2,\"\",\"line1\nline2 \"\"q\"\"\"\n");
        assert_eq!(
            all(&mut p),
            vec![
                vec![Some("1".into()), Some("a,b".into()), None],
                vec![
                    Some("2".into()),
                    Some("".into()),
                    Some("line1\nline2 \"q\"".into())
                ],
            ]
        );
    }

    #[test]
    fn text_escapes_octal_hex_multibyte_and_trailing_backslash() {
        let mut p = RecordParser::new(opts(false));
        // \101 and \x41 are 'A'; \x without digits is 'x'; \é is 'é'; an escaped
        // newline stays inside the record; a trailing lone backslash is dropped.
        p.feed("\\101\\x41\\xg\t\\é\\\nz\tend\\".as_bytes());
        assert_eq!(
            all(&mut p),
            vec![vec![
                Some("AAxg".into()),
                Some("é\nz".into()),
                Some("end".into())
            ]]
        );
    }

    #[test]
    fn csv_custom_escape_and_quoted_null_string() {
        let mut o = opts(true);
        o.escape = b'\\';
        o.null = "NA".into();
        let mut p = RecordParser::new(o);
        p.feed(b"\"a\\\"b\",NA,\"NA\",\"x,y\"\nlast,\"\"");
        assert_eq!(
            all(&mut p),
            vec![
                vec![
                    Some("a\"b".into()),
                    None,
                    Some("NA".into()),
                    Some("x,y".into())
                ],
                vec![Some("last".into()), Some("".into())],
            ]
        );
    }

    #[test]
    fn plain_records_split_as_the_general_splitters_do() {
        let lines = [
            "",
            "a",
            ",",
            "1,,x",
            "a,b,",
            ",NA,\tq",
            "é,ü\tÿ",
            "NA",
            "\\N\t,",
        ];
        for csv in [false, true] {
            for null in ["", "NA", "\\N"] {
                for delimiter in [b',', b'\t'] {
                    let mut o = opts(csv);
                    o.null = null.into();
                    o.delimiter = delimiter;
                    for line in lines {
                        if line.contains('\\') && !csv {
                            continue; // not plain in text format
                        }
                        let (mut fast, mut slow) = (Record::default(), Record::default());
                        split_plain(&o, line, &mut fast);
                        if csv {
                            split_csv(&o, line, &mut slow);
                        } else {
                            split_text(&o, line, &mut slow);
                        }
                        assert_eq!(owned(&fast), owned(&slow), "{line:?} csv={csv} {null:?}");
                    }
                }
            }
        }
        // Whether a record is plain decides the splitter.
        let o = opts(true);
        assert_eq!(record_end(&o, b"1,2\n3", false), Some((3, 4, true)));
        assert_eq!(record_end(&o, b"1,\"a\nb\"\n", false), Some((7, 8, false)));
        assert_eq!(record_end(&o, b"\"x\"", true), Some((3, 3, false)));
        let o = opts(false);
        assert_eq!(record_end(&o, b"1\t\\N\n", false), Some((4, 5, false)));
        assert_eq!(record_end(&o, b"1\t2", true), Some((3, 3, true)));
    }

    #[test]
    fn formatted_records_parse_back() {
        for csv in [false, true] {
            let o = opts(csv);
            let rec = vec![Some("a\tb,\"c\"\nd".to_string()), None, Some(String::new())];
            let mut out = BytesMut::new();
            format_record(&o, &rec, &mut out);
            let mut p = RecordParser::new(o);
            p.feed(&out);
            assert_eq!(all(&mut p), vec![rec], "csv={csv}");
        }
    }
}
