//! Engine counters (relaxed atomics bumped on the write, flush and compaction
//! paths) and the [`Stats`] summary built from them and the published file set.
//!
//! Invariant: counters only grow; a summary is a best-effort reading, never used
//! for decisions.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Db;
use crate::fileset::NUM_LEVELS;
use crate::types::TableId;

/// Per-level totals across tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LevelStats {
    pub files: usize,
    pub bytes: u64,
    pub rows: u64,
}

/// A point-in-time summary of the engine (later exposed as system views and metrics).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub tables: usize,
    pub levels: Vec<LevelStats>,
    pub memtable_bytes: u64,
    pub sealed_memtables: usize,
    pub last_seq: u64,
    pub batches_committed: u64,
    pub rows_committed: u64,
    pub wal_bytes_written: u64,
    pub wal_syncs: u64,
    pub flushes: u64,
    pub flush_bytes_written: u64,
    pub compactions: u64,
    pub compaction_bytes_read: u64,
    pub compaction_bytes_written: u64,
    pub compaction_rows_dropped: u64,
    /// (flush + compaction bytes written) / WAL bytes written.
    pub write_amplification: f64,
    pub stalls: u64,
    pub stall_micros: u64,
    pub slowdowns: u64,
    pub bloom_checks: u64,
    pub bloom_negatives: u64,
}

/// The engine's running counters.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) batches: AtomicU64,
    pub(super) rows: AtomicU64,
    pub(super) wal_bytes: AtomicU64,
    pub(super) wal_syncs: AtomicU64,
    pub(super) flushes: AtomicU64,
    pub(super) flush_bytes: AtomicU64,
    pub(super) compactions: AtomicU64,
    pub(super) compaction_read: AtomicU64,
    pub(super) compaction_written: AtomicU64,
    pub(super) compaction_dropped: AtomicU64,
    pub(super) stalls: AtomicU64,
    pub(super) stall_micros: AtomicU64,
    pub(super) slowdowns: AtomicU64,
}

impl Db {
    /// Bytes of `table`'s data files on disk (what is not yet flushed is not
    /// counted): `pg_table_size`.
    pub fn table_bytes(&self, table: TableId) -> u64 {
        let view = self.engine.view.load();
        view.files
            .table(table)
            .map_or(0, |t| t.all().map(|f| f.meta.size).sum())
    }

    /// A summary of files, bytes, amplification and stalls.
    pub fn stats(&self) -> Stats {
        let view = self.engine.view.load_full();
        let c = &self.engine.counters;
        let mut levels = vec![LevelStats::default(); NUM_LEVELS];
        let (mut checks, mut negatives) = (0, 0);
        for files in view.files.tables.values() {
            for (l, fs) in files.levels.iter().enumerate() {
                if let Some(s) = levels.get_mut(l) {
                    s.files += fs.len();
                    s.bytes += fs.iter().map(|f| f.meta.size).sum::<u64>();
                    s.rows += fs.iter().map(|f| f.meta.rows).sum::<u64>();
                }
                for f in fs {
                    checks += f.reader.bloom_checks.load(Ordering::Relaxed);
                    negatives += f.reader.bloom_negatives.load(Ordering::Relaxed);
                }
            }
        }
        let wal = c.wal_bytes.load(Ordering::Relaxed);
        let flushed = c.flush_bytes.load(Ordering::Relaxed);
        let compacted = c.compaction_written.load(Ordering::Relaxed);
        Stats {
            tables: view.catalog.tables().count(),
            levels,
            memtable_bytes: view.memtables().map(|m| m.approximate_bytes() as u64).sum(),
            sealed_memtables: view.imm.len(),
            last_seq: self.visible_seq(),
            batches_committed: c.batches.load(Ordering::Relaxed),
            rows_committed: c.rows.load(Ordering::Relaxed),
            wal_bytes_written: wal,
            wal_syncs: c.wal_syncs.load(Ordering::Relaxed),
            flushes: c.flushes.load(Ordering::Relaxed),
            flush_bytes_written: flushed,
            compactions: c.compactions.load(Ordering::Relaxed),
            compaction_bytes_read: c.compaction_read.load(Ordering::Relaxed),
            compaction_bytes_written: compacted,
            compaction_rows_dropped: c.compaction_dropped.load(Ordering::Relaxed),
            write_amplification: if wal == 0 {
                0.0
            } else {
                (flushed + compacted) as f64 / wal as f64
            },
            stalls: c.stalls.load(Ordering::Relaxed),
            stall_micros: c.stall_micros.load(Ordering::Relaxed),
            slowdowns: c.slowdowns.load(Ordering::Relaxed),
            bloom_checks: checks,
            bloom_negatives: negatives,
        }
    }
}
