//! Splitting COPY input into records of fields, across CopyData chunk boundaries,
//! and formatting result rows as COPY output, through the [`RecordFormat`] of the
//! COPY's format (text or CSV).
//!
//! Invariants: a record is returned only once its terminating newline (or the end of
//! input) has arrived; a record's bytes are validated as UTF-8 once as a whole, and
//! every split lands on an ASCII delimiter, quote or escape, so on a char boundary.

use bytes::{BufMut, BytesMut};

use super::csv::Csv;
use super::options::{CopyFormat, CopyOptions};
use super::record::{Record, RecordFormat};
use super::text::Text;
use crate::sqlstate::{ProtocolError, WireError};

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
            let codec = codec(&self.o.format);
            let Some((end, next, plain)) = codec.record_end(&self.o, rest, at_end) else {
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
            if plain {
                split_plain(&self.o, line, &mut self.record);
            } else {
                codec.split(&self.o, line, &mut self.record);
            }
            return Ok(Some((&self.record, self.line)));
        }
    }
}

/// Split a plain record (see [`RecordFormat::record_end`]): one copy of the line, fields found by
/// `memchr`; a field is NULL when it is the NULL string. What the formats'
/// [`RecordFormat::split`] give for such a record, without their byte-at-a-time loop.
pub(super) fn split_plain(o: &CopyOptions, line: &str, rec: &mut Record) {
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

/// Append one record in the COPY's format.
pub fn format_record(o: &CopyOptions, fields: &[Option<String>], out: &mut BytesMut) {
    let codec = codec(&o.format);
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.put_u8(o.delimiter);
        }
        match f {
            None => out.put_slice(o.null.as_bytes()),
            Some(v) => codec.format_field(o, v, out),
        }
    }
    out.put_u8(b'\n');
}

/// The record codec of a COPY format.
pub(crate) fn codec(format: &CopyFormat) -> &'static dyn RecordFormat {
    match format {
        // Binary COPY never reaches the record codecs (`conn::copy` hands it to
        // `copy::binary`); text is the harmless answer should it ever ask.
        CopyFormat::Text | CopyFormat::Binary => &Text,
        CopyFormat::Csv => &Csv,
    }
}
