//! Sorted string tables: immutable, columnar, checksummed files of versions.
//!
//! One SST holds versions of one table in internal order (entity key ascending,
//! event time descending, sequence descending), cut into blocks. Each block stores
//! the key, event-time, sequence and tombstone columns followed by the feature
//! columns, column by column (see `encoding`). After the blocks come the bloom
//! filter, the block index and the metadata section, each with its own CRC32, and a
//! fixed 64-byte footer. The byte layout is documented in FORMAT.md.
//!
//! Invariants: a file is written completely and fsynced before any manifest names it,
//! and is never modified afterwards (only deleted once no version references it).

mod block;
pub(crate) mod bloom;
pub(crate) mod encoding;
mod reader;
mod writer;

pub(crate) use block::BlockView;
pub(crate) use reader::{RowRef, SstReader};
pub(crate) use writer::{SstWriter, WriterOptions};

use crate::bounds::Bounds;
use crate::codec::{Put, Reader, unzigzag, zigzag};
use crate::error::{DecodeError, DecodeResult};
use crate::types::{DataType, ScalarType, TableId};

/// First and last 8 bytes of every SST file.
pub(crate) const SST_MAGIC: [u8; 8] = *b"HSIGHTS1";
/// Format version written in the footer; readers refuse other versions.
pub(crate) const SST_FORMAT_VERSION: u32 = 1;
/// Size of the fixed footer.
pub(crate) const FOOTER_LEN: usize = 64;
/// Internal columns in front of the features in every block.
pub(crate) const INTERNAL_COLUMNS: usize = 4;
pub(crate) const COL_KEY: usize = 0;
pub(crate) const COL_ET: usize = 1;
pub(crate) const COL_SEQ: usize = 2;
pub(crate) const COL_TOMB: usize = 3;
/// Most rows a block may hold.
pub(crate) const MAX_BLOCK_ROWS: usize = 1 << 20;

/// The type of internal column `i` of a block (features follow).
pub(crate) fn internal_type(i: usize) -> DataType {
    match i {
        COL_KEY => DataType::Scalar(ScalarType::Bytes),
        COL_TOMB => DataType::Scalar(ScalarType::Bool),
        _ => DataType::Scalar(ScalarType::Int64),
    }
}

/// Per-block entry of the block index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BlockHandle {
    pub offset: u64,
    pub len: u32,
    pub rows: u32,
    pub min_et: i64,
    pub max_et: i64,
    pub min_seq: u64,
    pub max_seq: u64,
    /// The entity key of the block's last row.
    pub last_key: Vec<u8>,
}

impl BlockHandle {
    fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.offset);
        out.put_u32(self.len);
        out.put_u32(self.rows);
        out.put_i64(self.min_et);
        out.put_i64(self.max_et);
        out.put_u64(self.min_seq);
        out.put_u64(self.max_seq);
        out.put_bytes_prefixed(&self.last_key);
    }

    fn decode(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(BlockHandle {
            offset: r.u64("block offset")?,
            len: r.u32("block length")?,
            rows: r.u32("block rows")?,
            min_et: r.i64("block min event time")?,
            max_et: r.i64("block max event time")?,
            min_seq: r.u64("block min seq")?,
            max_seq: r.u64("block max seq")?,
            last_key: r.bytes_prefixed("block last key")?.to_vec(),
        })
    }
}

/// Whole-file statistics and identity, stored in the metadata section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SstMeta {
    pub table: TableId,
    /// Types of the features stored in this file (a prefix of the table's features).
    pub feature_types: Vec<DataType>,
    pub rows: u64,
    pub tombstones: u64,
    pub distinct_keys: u64,
    pub bounds: Bounds,
}

fn encode_type(out: &mut Vec<u8>, t: DataType) {
    out.put_u8(u8::from(t.is_list()));
    out.put_u8(t.scalar().tag());
}

fn decode_type(r: &mut Reader<'_>) -> DecodeResult<DataType> {
    let list = r.u8("type list flag")?;
    let tag = r.u8("type tag")?;
    let s = ScalarType::from_tag(tag).ok_or_else(|| r.err(format!("unknown type tag {tag}")))?;
    match list {
        0 => Ok(DataType::Scalar(s)),
        1 => Ok(DataType::List(s)),
        _ => Err(r.err("bad list flag")),
    }
}

impl SstMeta {
    pub(crate) fn encode(&self, commit_times: &[(u64, i64)], out: &mut Vec<u8>) {
        out.put_u32(self.table.0);
        // At most MAX_COLUMNS features (TableDef::validate), so the count fits.
        debug_assert!(self.feature_types.len() <= crate::types::MAX_COLUMNS);
        out.put_u16(self.feature_types.len() as u16);
        for &t in &self.feature_types {
            encode_type(out, t);
        }
        out.put_u64(self.rows);
        out.put_u64(self.tombstones);
        out.put_u64(self.distinct_keys);
        self.bounds.encode(out);
        encode_commit_times(commit_times, out);
    }

    /// Decode; returns the metadata and the (still encoded) commit-time table.
    pub(crate) fn decode(buf: &[u8]) -> DecodeResult<(SstMeta, &[u8])> {
        let mut r = Reader::new(buf);
        let table = TableId(r.u32("table id")?);
        let nf = usize::from(r.u16("feature count")?);
        let mut feature_types = Vec::with_capacity(nf);
        for _ in 0..nf {
            feature_types.push(decode_type(&mut r)?);
        }
        let meta = SstMeta {
            table,
            feature_types,
            rows: r.u64("rows")?,
            tombstones: r.u64("tombstones")?,
            distinct_keys: r.u64("distinct keys")?,
            bounds: Bounds::decode(&mut r)?,
        };
        let rest = r.bytes(r.remaining(), "commit times")?;
        Ok((meta, rest))
    }
}

/// `count:varint (seq_delta:varint time_delta:zigzag-varint)*`, sorted by seq.
pub(crate) fn encode_commit_times(times: &[(u64, i64)], out: &mut Vec<u8>) {
    out.put_varint(times.len() as u64);
    let (mut ps, mut pt) = (0u64, 0i64);
    for &(s, t) in times {
        out.put_varint(s.wrapping_sub(ps));
        out.put_varint(zigzag(t.wrapping_sub(pt)));
        ps = s;
        pt = t;
    }
}

pub(crate) fn decode_commit_times(buf: &[u8]) -> DecodeResult<Vec<(u64, i64)>> {
    let mut r = Reader::new(buf);
    let n = r.len(buf.len(), "commit time count")?;
    let mut out = Vec::with_capacity(n);
    let (mut s, mut t) = (0u64, 0i64);
    for _ in 0..n {
        s = s.wrapping_add(r.varint("commit seq")?);
        t = t.wrapping_add(unzigzag(r.varint("commit time")?));
        if out.last().is_some_and(|&(ps, pt)| ps >= s || pt > t) {
            return Err(r.err("commit times not increasing"));
        }
        out.push((s, t));
    }
    if !r.is_empty() {
        return Err(r.err("trailing bytes after commit times"));
    }
    Ok(out)
}

/// The fixed-size trailer of an SST file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Footer {
    pub index: (u64, u64),
    pub bloom: (u64, u64),
    pub meta: (u64, u64),
}

impl Footer {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FOOTER_LEN);
        for (o, l) in [self.index, self.bloom, self.meta] {
            out.put_u64(o);
            out.put_u64(l);
        }
        out.put_u32(SST_FORMAT_VERSION);
        let crc = crc32fast::hash(&out);
        out.put_u32(crc);
        out.extend_from_slice(&SST_MAGIC);
        out
    }

    pub(crate) fn decode(buf: &[u8]) -> DecodeResult<Footer> {
        if buf.len() != FOOTER_LEN {
            return Err(DecodeError::new(0, "footer has the wrong size"));
        }
        let mut r = Reader::new(buf);
        let mut sec = [(0u64, 0u64); 3];
        for s in &mut sec {
            *s = (r.u64("section offset")?, r.u64("section length")?);
        }
        let version = r.u32("format version")?;
        let crc = r.u32("footer crc")?;
        let magic = r.bytes(8, "magic")?;
        if magic != SST_MAGIC {
            return Err(DecodeError::new(
                56,
                "bad magic number: not a Hindsight SST",
            ));
        }
        if crc32fast::hash(&buf[..52]) != crc {
            return Err(DecodeError::new(48, "footer checksum mismatch"));
        }
        if version != SST_FORMAT_VERSION {
            return Err(DecodeError::new(
                48,
                format!(
                    "unsupported SST format version {version} (this build reads {SST_FORMAT_VERSION})"
                ),
            ));
        }
        Ok(Footer {
            index: sec[0],
            bloom: sec[1],
            meta: sec[2],
        })
    }
}

/// Encode the block index section.
pub(crate) fn encode_index(blocks: &[BlockHandle]) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_u32(blocks.len() as u32);
    for b in blocks {
        b.encode(&mut out);
    }
    out
}

pub(crate) fn decode_index(buf: &[u8]) -> DecodeResult<Vec<BlockHandle>> {
    let mut r = Reader::new(buf);
    let n = r.u32("block count")? as usize;
    if n > buf.len() / 40 + 1 {
        return Err(r.err(format!("implausible block count {n}")));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(BlockHandle::decode(&mut r)?);
    }
    if !r.is_empty() {
        return Err(r.err("trailing bytes after block index"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_times_round_trip_and_reject_disorder() {
        let t = vec![(3u64, 100i64), (4, 100), (9, 250)];
        let mut b = Vec::new();
        encode_commit_times(&t, &mut b);
        assert_eq!(decode_commit_times(&b).unwrap(), t);
        let mut bad = Vec::new();
        encode_commit_times(&[(5, 1), (4, 2)], &mut bad);
        assert!(decode_commit_times(&bad).is_err());
    }

    #[test]
    fn footer_round_trips_and_detects_damage() {
        let f = Footer {
            index: (10, 20),
            bloom: (30, 40),
            meta: (50, 60),
        };
        let b = f.encode();
        assert_eq!(Footer::decode(&b).unwrap(), f);
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x40;
            assert!(Footer::decode(&d).is_err(), "flip at {i} not detected");
        }
    }
}
