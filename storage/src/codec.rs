//! Little-endian and varint primitives shared by every on-disk format.
//!
//! [`Reader`] is the only way the crate reads bytes it did not just produce: every
//! read is bounds-checked and fails with a [`DecodeError`] carrying the offset, so a
//! damaged file can never cause a panic or an out-of-bounds access.

use crate::error::{DecodeError, DecodeResult};

/// Append-only encoder into a `Vec<u8>`.
pub(crate) trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_i64(&mut self, v: i64);
    fn put_varint(&mut self, v: u64);
    fn put_bytes_prefixed(&mut self, b: &[u8]);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.push(v as u8);
    }
    fn put_bytes_prefixed(&mut self, b: &[u8]) {
        self.put_varint(b.len() as u64);
        self.extend_from_slice(b);
    }
}

/// ZigZag-encode a signed integer for varint storage.
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Bounds-checked cursor over a byte slice.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn err(&self, detail: impl Into<String>) -> DecodeError {
        DecodeError::new(self.offset(), detail)
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &str) -> DecodeResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                self.err(format!(
                    "{what}: need {n} bytes, {} remain",
                    self.remaining()
                ))
            })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> DecodeResult<[u8; N]> {
        let b = self.bytes(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &str) -> DecodeResult<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(crate) fn u16(&mut self, what: &str) -> DecodeResult<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u32(&mut self, what: &str) -> DecodeResult<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u64(&mut self, what: &str) -> DecodeResult<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn i64(&mut self, what: &str) -> DecodeResult<i64> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn varint(&mut self, what: &str) -> DecodeResult<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8(what)?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                if shift == 63 && b > 1 {
                    return Err(self.err(format!("{what}: varint overflows 64 bits")));
                }
                return Ok(v);
            }
        }
        Err(self.err(format!("{what}: varint longer than 10 bytes")))
    }

    /// A varint that must fit a `usize` no larger than `max`.
    pub(crate) fn len(&mut self, max: usize, what: &str) -> DecodeResult<usize> {
        let v = self.varint(what)?;
        usize::try_from(v)
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(|| self.err(format!("{what}: length {v} exceeds {max}")))
    }

    pub(crate) fn bytes_prefixed(&mut self, what: &str) -> DecodeResult<&'a [u8]> {
        let n = self.len(self.remaining(), what)?;
        self.bytes(n, what)
    }
}

/// Read a little-endian u32 at `pos` of `buf`, bounds-checked.
pub(crate) fn le_u32_at(buf: &[u8], pos: usize) -> Option<u32> {
    let b = buf.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_edge_values() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            b.put_varint(v);
            let mut r = Reader::new(&b);
            assert_eq!(r.varint("v").unwrap(), v);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn truncated_varint_is_an_error_not_a_panic() {
        let mut r = Reader::new(&[0x80, 0x80]);
        assert!(r.varint("v").is_err());
        let mut r = Reader::new(&[0xff; 11]);
        assert!(r.varint("v").is_err());
    }

    #[test]
    fn zigzag_round_trips() {
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, -123456789] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn bytes_past_the_end_is_an_error() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert!(r.bytes(2, "x").is_ok());
        let e = r.bytes(2, "x").unwrap_err();
        assert_eq!(e.offset, 2);
    }
}
