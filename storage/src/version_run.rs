//! [`VersionRun`]: a run of one table's versions in internal order, as Arrow arrays.
//!
//! This is the unit that moves between the engine's pieces: a memtable flush builds
//! it, the SST writer consumes it, compaction merges it, and scans select rows from it.
//! Invariants: all arrays have the same length; rows are in internal order (entity key
//! ascending, event time descending, sequence descending); `features` has one array
//! per feature the producer knows about (a prefix of the table's features).

use arrow_array::{Array, ArrayRef, BinaryArray, BooleanArray, Int64Array, UInt64Array};

/// VersionRun of one table in internal order.
#[derive(Clone, Debug)]
pub(crate) struct VersionRun {
    pub keys: BinaryArray,
    pub et: Int64Array,
    pub seq: UInt64Array,
    pub tomb: BooleanArray,
    pub features: Vec<ArrayRef>,
}

impl VersionRun {
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Zero-copy slice of rows `offset..offset + len`.
    pub(crate) fn slice(&self, offset: usize, len: usize) -> VersionRun {
        VersionRun {
            keys: self.keys.slice(offset, len),
            et: self.et.slice(offset, len),
            seq: self.seq.slice(offset, len),
            tomb: self.tomb.slice(offset, len),
            features: self.features.iter().map(|f| f.slice(offset, len)).collect(),
        }
    }

    /// Approximate in-memory bytes per row (for sizing blocks and batches).
    pub(crate) fn bytes_per_row(&self) -> usize {
        let n = self.len().max(1);
        let total = self.keys.get_array_memory_size()
            + self.et.get_array_memory_size()
            + self.seq.get_array_memory_size()
            + self
                .features
                .iter()
                .map(|f| f.get_array_memory_size())
                .sum::<usize>();
        (total / n).max(1)
    }
}
