//! A bounds-checked big-endian cursor over a byte slice: the one reader of
//! protocol frames and of binary-format values. Every read checks its length
//! first and answers `None` past the end; callers turn that into their own error.

use std::ops::Range;

/// A read position in a byte slice.
#[derive(Clone, Debug)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, at: 0 }
    }

    /// A cursor at offset `at` of `buf`.
    pub(crate) fn at(buf: &'a [u8], at: usize) -> Self {
        Cursor { buf, at }
    }

    /// The current offset.
    pub(crate) fn pos(&self) -> usize {
        self.at
    }

    /// The range of the next `n` bytes, consumed.
    pub(crate) fn take(&mut self, n: usize) -> Option<Range<usize>> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len())?;
        let r = self.at..end;
        self.at = end;
        Some(r)
    }

    /// The next `n` bytes, consumed.
    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let r = self.take(n)?;
        self.buf.get(r)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N).and_then(|b| b.try_into().ok())
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_be_bytes)
    }

    /// The range of a NUL-terminated string (without the NUL), consumed with it.
    pub(crate) fn cstring(&mut self) -> Option<Range<usize>> {
        let rest = self.buf.get(self.at..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        let r = self.take(len)?;
        self.at += 1;
        Some(r)
    }

    /// The bytes of `r`, a range this cursor handed out.
    pub(crate) fn slice(&self, r: Range<usize>) -> Option<&'a [u8]> {
        self.buf.get(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_none_and_consume_nothing() {
        let mut c = Cursor::new(&[0, 1, 0, 0, 0, 2, b'h', b'i', 0, 9]);
        assert_eq!(c.u16(), Some(1));
        assert_eq!(c.i32(), Some(2));
        let s = c.cstring().unwrap();
        assert_eq!(c.slice(s), Some(&b"hi"[..]));
        assert_eq!(c.i32(), None);
        assert_eq!(c.pos(), 9, "a failed read leaves the position");
        assert_eq!(c.bytes(1), Some(&[9][..]));
        assert_eq!(c.pos(), 10);
        assert_eq!(c.cstring(), None);
        assert_eq!(Cursor::at(&[1, 2], 1).take(usize::MAX), None, "no overflow");
    }
}
