//! Engine settings: the sync policy, the clock and the tuning knobs, with the
//! derived settings the SST writer and the compaction policy take.
//!
//! Invariant: derived settings clamp degenerate values (zero block rows, a level
//! multiplier below 2) instead of failing, so any `Options` value opens.

use std::sync::Arc;

use crate::compaction::LevelConfig;
use crate::sst::WriterOptions;

/// When a commit is made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fsync before acknowledging (group commit shares one fsync among writers).
    Always,
    /// Acknowledge after the write; a background thread fsyncs every N milliseconds.
    EveryMillis(u64),
    /// Never fsync the WAL (bulk loads; a crash may lose recent batches).
    Never,
}

/// Source of wall-clock time in microseconds since the epoch.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as i64)
                .unwrap_or(0)
        }))
    }

    /// A clock reading from `f` (tests, replicas).
    pub fn new(f: impl Fn() -> i64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    pub fn now(&self) -> i64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct Options {
    pub sync: SyncPolicy,
    /// Seal the memtable when it holds this many bytes.
    pub memtable_bytes: usize,
    /// Stall writers when this many sealed memtables wait for flush.
    pub max_sealed_memtables: usize,
    pub l0_compaction_trigger: usize,
    pub l0_slowdown_trigger: usize,
    pub l0_stop_trigger: usize,
    pub level1_bytes: u64,
    pub level_multiplier: u64,
    pub target_file_bytes: u64,
    pub block_rows: usize,
    pub block_bytes: usize,
    pub bloom_bits_per_key: usize,
    /// Run flush and compaction on background threads. When false they run inline
    /// when a writer would otherwise wait, and on request.
    pub background_threads: bool,
    pub clock: Clock,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncPolicy::Always,
            memtable_bytes: 64 << 20,
            max_sealed_memtables: 2,
            l0_compaction_trigger: 4,
            l0_slowdown_trigger: 12,
            l0_stop_trigger: 20,
            level1_bytes: 256 << 20,
            level_multiplier: 10,
            target_file_bytes: 64 << 20,
            block_rows: 4096,
            block_bytes: 256 << 10,
            bloom_bits_per_key: 10,
            background_threads: true,
            clock: Clock::system(),
        }
    }
}

impl Options {
    pub(crate) fn writer_options(&self) -> WriterOptions {
        WriterOptions {
            block_rows: self.block_rows.max(1),
            block_bytes: self.block_bytes.max(1),
            bloom_bits_per_key: self.bloom_bits_per_key,
        }
    }

    pub(crate) fn level_config(&self) -> LevelConfig {
        LevelConfig {
            l0_trigger: self.l0_compaction_trigger.max(1),
            level1_bytes: self.level1_bytes.max(1),
            multiplier: self.level_multiplier.max(2),
        }
    }
}
