//! PostgreSQL's COPY text format: fields separated by the delimiter, backslash
//! escapes (`\b \f \n \r \t \v`, octal, `\x` hex, else the next character
//! itself), NULL written as the NULL string (`\N` by default).

use bytes::{BufMut, BytesMut};

use super::options::CopyOptions;
use super::record::{Record, RecordFormat};

/// The text format.
pub(crate) struct Text;

impl RecordFormat for Text {
    fn record_end(
        &self,
        _o: &CopyOptions,
        rest: &[u8],
        at_end: bool,
    ) -> Option<(usize, usize, bool)> {
        let mut i = 0;
        let mut plain = true;
        while let Some(off) = rest.get(i..).and_then(|r| memchr::memchr2(b'\\', b'\n', r)) {
            let at = i + off;
            if rest.get(at) == Some(&b'\n') {
                return Some((at, at + 1, plain));
            }
            plain = false;
            i = at + 2;
        }
        at_end.then_some((rest.len(), rest.len(), plain))
    }

    fn split(&self, o: &CopyOptions, line: &str, rec: &mut Record) {
        split_text(o, line, rec);
    }

    fn format_field(&self, o: &CopyOptions, v: &str, out: &mut BytesMut) {
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
