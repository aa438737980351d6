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
use crate::conn::{Connection, guarded};
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
            Frame::Message(_) => {
                return Ok(Err(ProtocolError::Violation(
                    "unexpected message type during COPY from stdin".into(),
                )
                .into()));
            }
            Frame::Refused(e) => return Ok(Err(e.into())),
        }
    }
}

/// Move complete records from the parser into the sink.
fn drain(parser: &mut RecordParser, sink: &mut CopyIn, at_end: bool) -> Result<(), WireError> {
    while let Some(record) = parser.next_record(at_end)? {
        sink.push(record, parser.line)?;
    }
    Ok(())
}

/// Splits COPY input into records of fields, across chunk boundaries.
pub struct RecordParser {
    o: CopyOptions,
    buf: Vec<u8>,
    pos: usize,
    /// Line number of the last record returned (1-based, counting the header).
    pub line: u64,
    header_pending: bool,
    ended: bool,
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
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete record; at the end of input a final unterminated line counts.
    pub fn next_record(&mut self, at_end: bool) -> Result<Option<Vec<Option<String>>>, WireError> {
        loop {
            if self.ended {
                return Ok(None);
            }
            let rest = self.buf.get(self.pos..).unwrap_or_default();
            if rest.is_empty() {
                return Ok(None);
            }
            let Some((end, next)) = self.record_end(rest, at_end) else {
                return Ok(None);
            };
            let raw = rest.get(..end).unwrap_or_default().to_vec();
            self.pos += next;
            self.line += 1;
            let raw = raw.strip_suffix(b"\r").map(<[u8]>::to_vec).unwrap_or(raw);
            if raw == b"\\." {
                self.ended = true;
                return Ok(None);
            }
            if self.header_pending {
                self.header_pending = false;
                continue;
            }
            let line = String::from_utf8(raw).map_err(|_| ProtocolError::InvalidUtf8)?;
            return Ok(Some(match self.o.format {
                CopyFormat::Text => self.split_text(&line)?,
                CopyFormat::Csv => self.split_csv(&line),
            }));
        }
    }

    /// Where the record starting at `rest` ends (exclusive) and the next one starts.
    fn record_end(&self, rest: &[u8], at_end: bool) -> Option<(usize, usize)> {
        let mut in_quotes = false;
        let mut i = 0;
        while let Some(&b) = rest.get(i) {
            if self.o.format == CopyFormat::Csv {
                if in_quotes && b == self.o.escape && rest.get(i + 1) == Some(&self.o.quote) {
                    i += 2;
                    continue;
                }
                if b == self.o.quote {
                    in_quotes = !in_quotes;
                }
            } else if b == b'\\' {
                i += 2;
                continue;
            }
            if b == b'\n' && !in_quotes {
                return Some((i, i + 1));
            }
            i += 1;
        }
        at_end.then_some((rest.len(), rest.len()))
    }

    fn split_text(&self, line: &str) -> Result<Vec<Option<String>>, WireError> {
        let delim = char::from(self.o.delimiter);
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut raw = String::new();
        let mut chars = line.chars().peekable();
        let push = |fields: &mut Vec<Option<String>>, cur: &mut String, raw: &mut String| {
            let v = std::mem::take(cur);
            let r = std::mem::take(raw);
            fields.push(if r == self.o.null { None } else { Some(v) });
        };
        while let Some(c) = chars.next() {
            if c == delim {
                push(&mut fields, &mut cur, &mut raw);
                continue;
            }
            raw.push(c);
            if c != '\\' {
                cur.push(c);
                continue;
            }
            let Some(e) = chars.next() else {
                break;
            };
            raw.push(e);
            match e {
                'b' => cur.push('\u{8}'),
                'f' => cur.push('\u{c}'),
                'n' => cur.push('\n'),
                'r' => cur.push('\r'),
                't' => cur.push('\t'),
                'v' => cur.push('\u{b}'),
                '0'..='7' => {
                    let mut v = e.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        match chars.peek().and_then(|d| d.to_digit(8)) {
                            Some(d) => {
                                v = v * 8 + d;
                                if let Some(x) = chars.next() {
                                    raw.push(x);
                                }
                            }
                            None => break,
                        }
                    }
                    cur.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                }
                'x' => {
                    let mut v = 0;
                    let mut n = 0;
                    while n < 2 {
                        match chars.peek().and_then(|d| d.to_digit(16)) {
                            Some(d) => {
                                v = v * 16 + d;
                                n += 1;
                                if let Some(x) = chars.next() {
                                    raw.push(x);
                                }
                            }
                            None => break,
                        }
                    }
                    if n == 0 {
                        cur.push('x');
                    } else {
                        cur.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                    }
                }
                other => cur.push(other),
            }
        }
        push(&mut fields, &mut cur, &mut raw);
        Ok(fields)
    }

    fn split_csv(&self, line: &str) -> Vec<Option<String>> {
        let (q, esc, delim) = (
            char::from(self.o.quote),
            char::from(self.o.escape),
            char::from(self.o.delimiter),
        );
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        let mut in_quotes = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if in_quotes {
                if c == esc && chars.peek() == Some(&q) {
                    if let Some(x) = chars.next() {
                        cur.push(x);
                    }
                } else if c == q {
                    in_quotes = false;
                } else {
                    cur.push(c);
                }
            } else if c == q {
                in_quotes = true;
                quoted = true;
            } else if c == delim {
                fields.push(self.csv_value(std::mem::take(&mut cur), quoted));
                quoted = false;
            } else {
                cur.push(c);
            }
        }
        fields.push(self.csv_value(cur, quoted));
        fields
    }

    /// An unquoted field equal to the NULL string is NULL; a quoted one never is.
    fn csv_value(&self, v: String, quoted: bool) -> Option<String> {
        (quoted || v != self.o.null).then_some(v)
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
    let cancel = conn.cancel_signal();
    let deadline = conn.statement_deadline();
    let mut stream = match guarded(&cancel, deadline, Box::pin(conn.session.execute(stmt))).await {
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
        let next = guarded(&cancel, deadline, async {
            stream.next().await.transpose().map_err(SqlError::from)
        })
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

    fn all(p: &mut RecordParser) -> Vec<Vec<Option<String>>> {
        let mut v = Vec::new();
        while let Some(r) = p.next_record(true).unwrap() {
            v.push(r);
        }
        v
    }

    #[test]
    fn text_records_unescape_and_span_chunks() {
        let mut p = RecordParser::new(opts(false));
        p.feed(b"1\ta\\tb\t\\N\n2\tx");
        assert_eq!(
            p.next_record(false).unwrap(),
            Some(vec![Some("1".into()), Some("a\tb".into()), None])
        );
        // The second line is incomplete until more data or the end arrives.
        assert_eq!(p.next_record(false).unwrap(), None);
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
