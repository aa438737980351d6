//! PostgreSQL's binary COPY format (`FORMAT binary`): the 11-byte signature, flags and
//! header extension, then tuples of a 16-bit field count and length-prefixed fields
//! (-1: NULL), ended by a count of -1. Reading splits the stream into tuples across
//! CopyData boundaries; writing frames result rows in it. The values inside the
//! fields are decoded by the SQL layer (`hindsight_sql::pg::binary`) and encoded by
//! [`crate::types::encode_cell`].
//!
//! Invariants: the stream comes from the network: every length is checked before it
//! is used, nothing is read past the buffered bytes, and a malformed stream (bad
//! signature, OIDs flag, truncated tuple, negative length other than -1, data after
//! the end marker) is a 22P04 error, never a panic.

use bytes::{BufMut, BytesMut};
use datafusion::arrow::record_batch::RecordBatch;
use hindsight_sql::{ErrorKind, SqlError};

use crate::sqlstate::WireError;
use crate::types::encode_cell;

/// The signature every binary COPY stream starts with.
pub(crate) const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Bit 16 of the header flags: the stream carries row OIDs (not supported since
/// PostgreSQL 12).
const FLAG_OIDS: u32 = 1 << 16;

fn bad(message: impl Into<String>) -> WireError {
    SqlError::new(ErrorKind::BadCopyFormat, message).into()
}

/// Splits a binary COPY stream into tuples, across chunk boundaries.
#[derive(Debug, Default)]
pub struct BinaryParser {
    buf: Vec<u8>,
    pos: usize,
    header_read: bool,
    /// The end marker (-1 field count) was read.
    ended: bool,
    /// Tuples returned so far (numbers errors as PostgreSQL's "line").
    pub tuples: u64,
    /// Per field of the last tuple: its byte range in `buf`, or None for NULL.
    fields: Vec<Option<(usize, usize)>>,
}

impl BinaryParser {
    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Read the next complete tuple: true when one is ready in [`Self::fields`], false
    /// when more data is needed or the stream has ended. `at_end`: no more data
    /// will come (CopyDone), so an incomplete header or tuple is an error.
    pub fn next_tuple(&mut self, at_end: bool) -> Result<bool, WireError> {
        if !self.header_read && !self.read_header(at_end)? {
            return Ok(false);
        }
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        if self.ended {
            return match rest.is_empty() {
                true => Ok(false),
                false => Err(bad("received copy data after EOF marker")),
            };
        }
        // A stream may end at a tuple boundary without its end marker.
        if rest.is_empty() {
            return Ok(false);
        }
        match scan_tuple(rest, &mut self.fields)? {
            Some(Scanned::Tuple(len)) => {
                for (start, end) in self.fields.iter_mut().flatten() {
                    *start += self.pos;
                    *end += self.pos;
                }
                self.pos += len;
                self.tuples += 1;
                Ok(true)
            }
            Some(Scanned::End) => {
                self.pos += 2;
                self.ended = true;
                self.next_tuple(at_end)
            }
            None if at_end => Err(bad(format!(
                "unexpected EOF in COPY data (tuple {})",
                self.tuples + 1
            ))),
            None => Ok(false),
        }
    }

    /// The fields of the tuple the last [`Self::next_tuple`] read (`None`: NULL).
    pub fn fields(&self) -> impl ExactSizeIterator<Item = Option<&[u8]>> + '_ {
        self.fields
            .iter()
            .map(|f| f.map(|(s, e)| self.buf.get(s..e).unwrap_or_default()))
    }

    /// Read the header once it has arrived: false while it is incomplete.
    fn read_header(&mut self, at_end: bool) -> Result<bool, WireError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let fixed = SIGNATURE.len() + 8;
        if rest.len() < fixed {
            if at_end || rest.iter().zip(SIGNATURE).any(|(a, b)| a != b) {
                return Err(bad("COPY file signature not recognized"));
            }
            return Ok(false);
        }
        if rest.get(..SIGNATURE.len()) != Some(SIGNATURE.as_slice()) {
            return Err(bad("COPY file signature not recognized"));
        }
        let word = |at: usize| {
            rest.get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
                .unwrap_or_default()
        };
        let flags = word(SIGNATURE.len());
        if flags & FLAG_OIDS != 0 {
            return Err(bad("invalid COPY file header (WITH OIDS)"));
        }
        if flags >> 16 != 0 {
            return Err(bad("unrecognized critical flags in COPY file header"));
        }
        let ext = word(SIGNATURE.len() + 4) as usize;
        if ext > i32::MAX as usize {
            return Err(bad("invalid COPY file header (missing length)"));
        }
        if rest.len() < fixed + ext {
            if at_end {
                return Err(bad("invalid COPY file header (wrong length)"));
            }
            return Ok(false);
        }
        self.pos += fixed + ext;
        self.header_read = true;
        Ok(true)
    }
}

enum Scanned {
    /// A whole tuple of this many bytes; its field ranges are in `fields`.
    Tuple(usize),
    /// The end marker.
    End,
}

/// Scan one tuple at the start of `rest`: None when it is not all there yet.
fn scan_tuple(
    rest: &[u8],
    fields: &mut Vec<Option<(usize, usize)>>,
) -> Result<Option<Scanned>, WireError> {
    let Some(count) = rest.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]])) else {
        return Ok(None);
    };
    if count == -1 {
        return Ok(Some(Scanned::End));
    }
    let count = usize::try_from(count).map_err(|_| bad(format!("invalid field count {count}")))?;
    fields.clear();
    let mut at = 2;
    for _ in 0..count {
        let Some(len) = rest
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_be_bytes)
        else {
            return Ok(None);
        };
        at += 4;
        if len == -1 {
            fields.push(None);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| bad(format!("invalid field size {len}")))?;
        let end = at
            .checked_add(len)
            .ok_or_else(|| bad("invalid field size"))?;
        if end > rest.len() {
            return Ok(None);
        }
        fields.push(Some((at, end)));
        at = end;
    }
    Ok(Some(Scanned::Tuple(at)))
}

/// The header of a binary COPY stream: signature, no flags, no extension.
pub(crate) fn write_header(out: &mut BytesMut) {
    out.put_slice(SIGNATURE);
    out.put_u32(0);
    out.put_u32(0);
}

/// Row `row` of `batch` as one binary tuple.
pub(crate) fn write_tuple(batch: &RecordBatch, row: usize, out: &mut BytesMut) {
    out.put_i16(batch.num_columns() as i16);
    for c in batch.columns() {
        encode_cell(c.as_ref(), row, true, out);
    }
}

/// The end marker.
pub(crate) fn write_trailer(out: &mut BytesMut) {
    out.put_i16(-1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(tuples: &[Vec<Option<&[u8]>>], trailer: bool) -> Vec<u8> {
        let mut out = BytesMut::new();
        write_header(&mut out);
        for t in tuples {
            out.put_i16(t.len() as i16);
            for f in t {
                match f {
                    None => out.put_i32(-1),
                    Some(b) => {
                        out.put_i32(b.len() as i32);
                        out.put_slice(b);
                    }
                }
            }
        }
        if trailer {
            write_trailer(&mut out);
        }
        out.to_vec()
    }

    fn read_all(
        p: &mut BinaryParser,
        at_end: bool,
    ) -> Result<Vec<Vec<Option<Vec<u8>>>>, WireError> {
        let mut v = Vec::new();
        while p.next_tuple(at_end)? {
            v.push(p.fields().map(|f| f.map(<[u8]>::to_vec)).collect());
        }
        Ok(v)
    }

    #[test]
    fn tuples_across_every_chunk_boundary() {
        let tuples = vec![
            vec![Some(&[1u8, 2][..]), None, Some(&[][..])],
            vec![Some(&[9u8; 300][..]), Some(&[7u8][..]), None],
        ];
        let s = stream(&tuples, true);
        let want: Vec<Vec<Option<Vec<u8>>>> = tuples
            .iter()
            .map(|t| t.iter().map(|f| f.map(<[u8]>::to_vec)).collect())
            .collect();
        for split in 0..s.len() {
            let mut p = BinaryParser::default();
            p.feed(&s[..split]);
            let mut got = read_all(&mut p, false).unwrap();
            p.feed(&s[split..]);
            got.extend(read_all(&mut p, true).unwrap());
            assert_eq!(got, want, "split at {split}");
        }
    }

    /// Seeded random mutations of a valid stream (bytes flipped, dropped, inserted,
    /// the stream cut), fed in random chunks: the parser never panics, and every
    /// refusal is 22P04.
    #[test]
    fn mutated_streams_never_panic_and_fail_as_22p04() {
        let base = stream(
            &[
                vec![Some(&[1u8, 2, 3, 4, 5, 6, 7, 8][..]), None],
                vec![Some(&[0u8; 40][..]), Some(&[9u8][..])],
            ],
            true,
        );
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5000 {
            let mut s = base.clone();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % (s.len() + 1);
                match next() % 4 {
                    0 if at < s.len() => s[at] ^= 1 << (next() % 8),
                    1 if at < s.len() => {
                        s.remove(at);
                    }
                    2 => s.insert(at, next() as u8),
                    _ => s.truncate(at),
                }
            }
            let mut p = BinaryParser::default();
            let mut fed = 0;
            let mut result = Ok(());
            while fed < s.len() && result.is_ok() {
                let n = 1 + (next() as usize) % 16;
                let end = (fed + n).min(s.len());
                p.feed(&s[fed..end]);
                fed = end;
                result = read_all(&mut p, false).map(|_| ());
            }
            if result.is_ok() {
                result = read_all(&mut p, true).map(|_| ());
            }
            if let Err(e) = result {
                assert_eq!(e.code(), "22P04", "{e}");
            }
        }
    }

    #[test]
    fn malformed_streams_are_22p04() {
        let good = stream(&[vec![Some(&[1u8, 2, 3, 4][..])]], true);
        let mut cases: Vec<Vec<u8>> = vec![
            b"PGCOPX\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec(),
            good[..good.len() - 4].to_vec(),
            [good.clone(), vec![0, 1]].concat(),
            good[..5].to_vec(),
        ];
        let mut oids = good.clone();
        oids[11] = 0;
        oids[12] = 1;
        cases.push(oids);
        let mut negative = good.clone();
        negative[21..25].copy_from_slice(&(-5i32).to_be_bytes());
        cases.push(negative);
        for (i, c) in cases.iter().enumerate() {
            let mut p = BinaryParser::default();
            p.feed(c);
            let e = read_all(&mut p, true).unwrap_err();
            assert_eq!(e.code(), "22P04", "case {i}: {e}");
        }
        // Without the end marker the stream ends at the tuple boundary.
        let mut p = BinaryParser::default();
        p.feed(&good[..good.len() - 2]);
        assert_eq!(read_all(&mut p, true).unwrap().len(), 1);
    }
}
