//! The range of rows a file holds: entity keys, event times and seqs.
//!
//! An SST's metadata section and the manifest's file record store these six fields
//! with the same bytes, in the same order (FORMAT.md), so both encode and decode them
//! here, and every pruning test on a whole file reads them from here.
//!
//! Invariant: a file with rows has `min <= max` on every axis; a writer starts from
//! [`Bounds::empty`] (inverted ranges, so the first block sets them).

use crate::codec::{Put, Reader};
use crate::error::DecodeResult;
use crate::keycodec::key_cmp;

/// Key, event-time and seq ranges of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub min_et: i64,
    pub max_et: i64,
    pub min_seq: u64,
    pub max_seq: u64,
    pub min_key: Vec<u8>,
    pub max_key: Vec<u8>,
}

impl Bounds {
    /// The bounds of no rows: every range inverted, keys empty.
    pub(crate) fn empty() -> Self {
        Bounds {
            min_et: i64::MAX,
            max_et: i64::MIN,
            min_seq: u64::MAX,
            max_seq: 0,
            min_key: Vec::new(),
            max_key: Vec::new(),
        }
    }

    /// Widen the time and seq ranges to cover a block's.
    pub(crate) fn cover(&mut self, et: (i64, i64), seq: (u64, u64)) {
        self.min_et = self.min_et.min(et.0);
        self.max_et = self.max_et.max(et.1);
        self.min_seq = self.min_seq.min(seq.0);
        self.max_seq = self.max_seq.max(seq.1);
    }

    /// True if the key range intersects [`lo`, `hi`] (`None`: unbounded).
    pub(crate) fn overlaps(&self, lo: Option<&[u8]>, hi: Option<&[u8]>) -> bool {
        lo.is_none_or(|lo| key_cmp(&self.max_key, lo).is_ge())
            && hi.is_none_or(|hi| key_cmp(&self.min_key, hi).is_le())
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_i64(self.min_et);
        out.put_i64(self.max_et);
        out.put_u64(self.min_seq);
        out.put_u64(self.max_seq);
        out.put_bytes_prefixed(&self.min_key);
        out.put_bytes_prefixed(&self.max_key);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(Bounds {
            min_et: r.i64("min event time")?,
            max_et: r.i64("max event time")?,
            min_seq: r.u64("min seq")?,
            max_seq: r.u64("max seq")?,
            min_key: r.bytes_prefixed("min key")?.to_vec(),
            max_key: r.bytes_prefixed("max key")?.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bounds {
        Bounds {
            min_et: -5,
            max_et: 7,
            min_seq: 3,
            max_seq: 9,
            min_key: vec![1, 2],
            max_key: vec![8],
        }
    }

    #[test]
    fn bounds_round_trip_and_a_cut_record_is_an_error() {
        let mut buf = Vec::new();
        sample().encode(&mut buf);
        let mut r = Reader::new(&buf);
        assert_eq!(Bounds::decode(&mut r).ok(), Some(sample()));
        assert!(r.is_empty());
        let cut = &buf[..buf.len() - 1];
        assert!(Bounds::decode(&mut Reader::new(cut)).is_err());
    }

    #[test]
    fn key_overlap_is_inclusive_at_both_ends() {
        let b = sample();
        assert!(b.overlaps(None, None));
        assert!(b.overlaps(Some(&[8]), None));
        assert!(!b.overlaps(Some(&[8, 0]), None));
        assert!(b.overlaps(None, Some(&[1, 2])));
        assert!(!b.overlaps(None, Some(&[1, 1, 9])));
    }

    #[test]
    fn covering_from_empty_takes_the_first_ranges() {
        let mut b = Bounds::empty();
        b.cover((4, 6), (10, 12));
        b.cover((-1, 2), (11, 20));
        assert_eq!((b.min_et, b.max_et, b.min_seq, b.max_seq), (-1, 6, 10, 20));
    }
}
