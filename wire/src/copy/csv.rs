//! PostgreSQL's COPY CSV format: quoted fields may hold delimiters, newlines and
//! escaped quotes; an unquoted field equal to the NULL string is NULL, a quoted one
//! never is.
//!
//! Why not `csv-core`: its reader hands back a field's unquoted bytes but not
//! whether the field was quoted, and PostgreSQL's NULL rule depends on exactly that
//! (`,,` is NULL, `,"",` is an empty string); recovering it would mean re-scanning
//! each field's raw bytes, the work this splitter already does in one pass. The
//! record boundary search (memchr over quote and newline) is shared with the text
//! format's design.

use bytes::{BufMut, BytesMut};

use super::options::CopyOptions;
use super::record::{Record, RecordFormat};

/// The CSV format.
pub(crate) struct Csv;

impl RecordFormat for Csv {
    fn record_end(
        &self,
        o: &CopyOptions,
        rest: &[u8],
        at_end: bool,
    ) -> Option<(usize, usize, bool)> {
        let mut i = 0;
        let mut plain = true;
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
        at_end.then_some((rest.len(), rest.len(), plain))
    }

    fn split(&self, o: &CopyOptions, line: &str, rec: &mut Record) {
        split_csv(o, line, rec);
    }

    fn format_field(&self, o: &CopyOptions, v: &str, out: &mut BytesMut) {
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
