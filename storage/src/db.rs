//! The engine: recovery, the group-commit write path, background flush and
//! compaction, snapshots, DDL and the operations surface.
//!
//! Write path: a writer enqueues its batch; the first writer without a leader becomes
//! the leader, takes every queued batch (a catalog change always commits alone),
//! assigns consecutive sequence numbers and monotonic commit times, appends one WAL
//! frame per batch with a single write, fsyncs once for the group (under the default
//! policy), inserts the rows into the memtable, and only then publishes the new
//! visible sequence and wakes the group. Readers therefore never see part of a batch,
//! and an acknowledged batch is durable.
//!
//! Locks, always taken in this order: `queue` (writers), `writer` (the WAL, the
//! authoritative catalog, sequence allocation; held by the leader), `state` (the
//! manifest, file numbers, and every change of the published [`View`]). Flush and
//! compaction hold `flush_lock` / `compact_lock` for their whole run and `state` only
//! to install their result.
//!
//! Backpressure: when the memtable is full and `max_sealed_memtables` are waiting
//! for flush, or level 0 reaches `l0_stop_trigger` files, the leader waits for
//! background work (a stall, counted in [`Stats`]); at `l0_slowdown_trigger` each
//! group is delayed by a millisecond. Memory therefore stays bounded at any write rate.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::batch::{self, WriteBatch};
use crate::catalog::{Catalog, CatalogOp};
use crate::compaction::{self, Horizons, Job, LevelConfig};
use crate::error::{Error, Result};
use crate::fsutil::{remove_if_exists, sync_dir};
use crate::manifest::{
    self, FileMeta, Manifest, ManifestState, VersionEdit, manifest_name, sst_name,
};
use crate::memtable::{MemEntry, MemTable, Payload, entries_to_versions};
use crate::scan::{ScanIter, ScanOptions};
use crate::sst::{SstReader, SstWriter, WriterOptions};
use crate::types::{ColumnDef, TableDef, TableId, TableOptions, Value};
use crate::version::{NUM_LEVELS, SstFile, Version};
use crate::view::{Projection, ReadAt, Row, SystemAt, View};
use crate::wal::{self, LogWriter, MAX_FRAME_LEN, WAL_MAGIC, segment_name};

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
    fn writer_options(&self) -> WriterOptions {
        WriterOptions {
            block_rows: self.block_rows.max(1),
            block_bytes: self.block_bytes.max(1),
            bloom_bits_per_key: self.bloom_bits_per_key,
        }
    }

    fn level_config(&self) -> LevelConfig {
        LevelConfig {
            l0_trigger: self.l0_compaction_trigger.max(1),
            level1_bytes: self.level1_bytes.max(1),
            multiplier: self.level_multiplier.max(2),
        }
    }
}

/// What a successful commit returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitInfo {
    pub seq: u64,
    pub commit_micros: i64,
}

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

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    rows: AtomicU64,
    wal_bytes: AtomicU64,
    wal_syncs: AtomicU64,
    flushes: AtomicU64,
    flush_bytes: AtomicU64,
    compactions: AtomicU64,
    compaction_read: AtomicU64,
    compaction_written: AtomicU64,
    compaction_dropped: AtomicU64,
    stalls: AtomicU64,
    stall_micros: AtomicU64,
    slowdowns: AtomicU64,
}

type Ticket = u64;

#[derive(Default)]
struct Queue {
    waiting: VecDeque<(Ticket, WriteBatch)>,
    results: HashMap<Ticket, Result<CommitInfo>>,
    next_ticket: Ticket,
    leader: bool,
}

struct WriterState {
    wal: LogWriter,
    last_seq: u64,
    last_micros: i64,
    catalog: Arc<Catalog>,
}

struct State {
    manifest: Manifest,
    next_file: u64,
    /// Commit time of the last flushed batch, as recorded in the manifest.
    last_micros: i64,
    cursors: HashMap<TableId, Vec<Vec<u8>>>,
}

struct Inner {
    dir: PathBuf,
    opts: Options,
    _lock: File,
    view: ArcSwap<View>,
    visible_seq: AtomicU64,
    queue: Mutex<Queue>,
    queue_cv: Condvar,
    writer: Mutex<WriterState>,
    state: Mutex<State>,
    state_cv: Condvar,
    flush_lock: Mutex<()>,
    compact_lock: Mutex<()>,
    ddl: Mutex<()>,
    bg_error: Mutex<Option<String>>,
    closed: AtomicBool,
    counters: Counters,
    sync_file: Mutex<Option<(PathBuf, File)>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Lock a mutex, recovering the data if a thread panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The storage engine. Cheap to clone; all clones share one engine, which closes
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
    _close: Arc<CloseOnDrop>,
}

/// Shuts the engine down when the last user handle goes away (background threads
/// hold `Inner` too, so `Inner`'s own drop would never run while they live).
struct CloseOnDrop(Arc<Inner>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let _ = self.0.shutdown();
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.inner.dir).finish()
    }
}

/// A consistent, read-only view of the database at one sequence number.
#[derive(Clone)]
pub struct Snapshot {
    view: Arc<View>,
    /// The same view plus a transaction's uncommitted writes (current-state reads).
    overlay: Option<Arc<View>>,
    seq: u64,
    now: i64,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("seq", &self.seq).finish()
    }
}

impl Db {
    /// Open (creating if needed) the database in `dir`, recovering from the WAL.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked(dir)),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let recovered = recover(&dir, &opts)?;
        let inner = Arc::new(Inner {
            dir: dir.clone(),
            _lock: lock_file,
            view: ArcSwap::from_pointee(View {
                mem: recovered.mem.clone(),
                imm: Vec::new(),
                version: Arc::new(recovered.version),
                catalog: recovered.catalog.clone(),
                overlay: None,
            }),
            visible_seq: AtomicU64::new(recovered.last_seq),
            queue: Mutex::new(Queue::default()),
            queue_cv: Condvar::new(),
            sync_file: Mutex::new(recovered.wal.sync_handle().ok()),
            writer: Mutex::new(WriterState {
                wal: recovered.wal,
                last_seq: recovered.last_seq,
                last_micros: recovered.last_micros,
                catalog: recovered.catalog,
            }),
            state: Mutex::new(State {
                manifest: recovered.manifest,
                next_file: recovered.next_file,
                last_micros: recovered.last_micros,
                cursors: HashMap::new(),
            }),
            state_cv: Condvar::new(),
            flush_lock: Mutex::new(()),
            compact_lock: Mutex::new(()),
            ddl: Mutex::new(()),
            bg_error: Mutex::new(None),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
            threads: Mutex::new(Vec::new()),
            opts,
        });
        let db = Db {
            _close: Arc::new(CloseOnDrop(inner.clone())),
            inner,
        };
        db.start_threads()?;
        Ok(db)
    }

    /// The directory this database lives in.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// The engine's settings.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// The current catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.inner.view.load().catalog.clone()
    }

    /// A table by name.
    pub fn table(&self, name: &str) -> Result<Arc<TableDef>> {
        self.catalog()
            .table(name)
            .cloned()
            .ok_or_else(|| Error::NoSuchTable(name.to_string()))
    }

    /// The newest sequence visible to readers.
    pub fn visible_seq(&self) -> u64 {
        self.inner.visible_seq.load(Ordering::Acquire)
    }

    /// The engine's clock reading.
    pub fn now_micros(&self) -> i64 {
        self.inner.opts.clock.now()
    }

    /// Pin the current state for consistent reads.
    pub fn snapshot(&self) -> Snapshot {
        let seq = self.inner.visible_seq.load(Ordering::Acquire);
        let view = self.inner.view.load_full();
        Snapshot {
            view,
            overlay: None,
            seq,
            now: self.inner.opts.clock.now(),
        }
    }

    /// Commit a batch atomically; returns once it is durable under the sync policy.
    pub fn write(&self, batch: WriteBatch) -> Result<CommitInfo> {
        if batch.is_empty() {
            return Ok(CommitInfo {
                seq: self.visible_seq(),
                commit_micros: self.now_micros(),
            });
        }
        let inner = &self.inner;
        let mut q = lock(&inner.queue);
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.waiting.push_back((ticket, batch));
        loop {
            if let Some(r) = q.results.remove(&ticket) {
                return r;
            }
            if !q.leader {
                q.leader = true;
                let group = take_group(&mut q.waiting);
                drop(q);
                let results = inner.commit_group(group);
                q = lock(&inner.queue);
                q.results.extend(results);
                q.leader = false;
                inner.queue_cv.notify_all();
                continue;
            }
            q = inner.queue_cv.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Create a table; the definition's id and creation time are assigned here.
    pub fn create_table(&self, mut def: TableDef) -> Result<Arc<TableDef>> {
        let _ddl = lock(&self.inner.ddl);
        let catalog = self.catalog();
        def.id = catalog.next_table_id();
        def.created_micros = self.now_micros();
        let name = def.name.clone();
        let op = CatalogOp::CreateTable(def);
        catalog.validate(&op)?;
        self.write(WriteBatch::catalog_only(op))?;
        self.table(&name)
    }

    /// Drop a table and delete its files.
    pub fn drop_table(&self, name: &str) -> Result<()> {
        let _ddl = lock(&self.inner.ddl);
        let id = self.table(name)?.id;
        self.write(WriteBatch::catalog_only(CatalogOp::DropTable { id }))?;
        Ok(())
    }

    /// Append a nullable column to a table (older versions read it as NULL).
    pub fn add_column(&self, name: &str, column: ColumnDef) -> Result<Arc<TableDef>> {
        let _ddl = lock(&self.inner.ddl);
        let id = self.table(name)?.id;
        let op = CatalogOp::AddColumn { id, column };
        self.catalog().validate(&op)?;
        self.write(WriteBatch::catalog_only(op))?;
        self.table(name)
    }

    /// Change a table's TTL and retention.
    pub fn set_table_options(&self, name: &str, options: TableOptions) -> Result<Arc<TableDef>> {
        let _ddl = lock(&self.inner.ddl);
        let id = self.table(name)?.id;
        let op = CatalogOp::SetOptions { id, options };
        self.catalog().validate(&op)?;
        self.write(WriteBatch::catalog_only(op))?;
        self.table(name)
    }

    /// Point lookup of the newest version of `key` at `at` (see [`Snapshot::get`]).
    pub fn get(&self, table: &TableDef, key: &[Value], at: &ReadAt) -> Result<Option<Row>> {
        let proj = Projection::new(table, None)?;
        self.snapshot().get(table, key, at, &proj)
    }

    /// Scan a table (see [`Snapshot::scan`]).
    pub fn scan(&self, table: &TableDef, opts: &ScanOptions) -> Result<ScanIter> {
        self.snapshot().scan(table, opts)
    }

    /// Seal the memtable and wait until every sealed memtable is flushed to level 0.
    pub fn flush(&self) -> Result<()> {
        {
            let mut w = lock(&self.inner.writer);
            if !self.inner.view.load().mem.is_empty() {
                self.inner.switch_memtable(&mut w)?;
            }
        }
        while self.inner.flush_one()? {}
        Ok(())
    }

    /// Flush, then merge every table's files into one sorted run at its deepest level.
    pub fn compact_now(&self) -> Result<()> {
        self.flush()?;
        let _c = lock(&self.inner.compact_lock);
        let view = self.inner.view.load_full();
        for table in view.catalog.tables() {
            if let Some(files) = view.version.table(table.id)
                && let Some(job) = compaction::full(
                    files,
                    &self.inner.opts.level_config(),
                    table.options.retention_micros.is_some(),
                )
            {
                self.inner.run_job(table, &job)?;
            }
        }
        Ok(())
    }

    /// Run background-style compactions until no level is over its target.
    pub fn compact_pending(&self) -> Result<()> {
        while self.inner.compact_one()? {}
        Ok(())
    }

    /// A summary of files, bytes, amplification and stalls.
    pub fn stats(&self) -> Stats {
        let view = self.inner.view.load_full();
        let c = &self.inner.counters;
        let mut levels = vec![LevelStats::default(); NUM_LEVELS];
        let (mut checks, mut negatives) = (0, 0);
        for files in view.version.tables.values() {
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

    /// Stop background work, make the WAL durable and release the directory.
    pub fn close(self) -> Result<()> {
        self.inner.shutdown()
    }

    fn start_threads(&self) -> Result<()> {
        let mut threads = lock(&self.inner.threads);
        if self.inner.opts.background_threads {
            threads.push(spawn(&self.inner, "hindsight-flush", Inner::flush_loop)?);
            threads.push(spawn(
                &self.inner,
                "hindsight-compact",
                Inner::compact_loop,
            )?);
        }
        if let SyncPolicy::EveryMillis(ms) = self.inner.opts.sync {
            threads.push(spawn(&self.inner, "hindsight-wal-sync", move |i| {
                i.sync_loop(ms)
            })?);
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Threads hold their own Arc<Inner>, so by now they have exited; make the
        // WAL durable for policies that did not sync every commit.
        if let Ok(w) = self.writer.get_mut() {
            let _ = w.wal.sync();
        }
    }
}

/// Start a background thread; a panic in it (a bug) stops writes with an error
/// instead of leaving writers waiting for work that will never happen.
fn spawn(
    inner: &Arc<Inner>,
    name: &str,
    f: impl FnOnce(&Inner) + Send + 'static,
) -> Result<JoinHandle<()>> {
    let inner = inner.clone();
    let thread_name = name.to_string();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&inner)));
            if r.is_err() {
                inner.fail(&Error::Background(format!("{thread_name} thread panicked")));
            }
        })
        .map_err(|e| Error::io("<thread>", e))
}

/// Take the next commit group: the queue head, and if it is a data batch, the data
/// batches behind it (up to 8 MiB); a catalog change always commits alone.
fn take_group(waiting: &mut VecDeque<(Ticket, WriteBatch)>) -> Vec<(Ticket, WriteBatch)> {
    let mut group = Vec::new();
    let mut bytes = 0;
    while let Some((_, b)) = waiting.front() {
        let ddl = b.catalog.is_some();
        if !group.is_empty() && (ddl || bytes >= 8 << 20) {
            break;
        }
        bytes += b.approximate_bytes();
        if let Some(item) = waiting.pop_front() {
            group.push(item);
        }
        if ddl {
            break;
        }
    }
    group
}

impl Inner {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if let Some(e) = lock(&self.bg_error).as_ref() {
            return Err(Error::Background(e.clone()));
        }
        Ok(())
    }

    fn fail(&self, e: &Error) {
        let mut g = lock(&self.bg_error);
        if g.is_none() {
            *g = Some(e.to_string());
        }
        self.state_cv.notify_all();
    }

    fn commit_group(&self, group: Vec<(Ticket, WriteBatch)>) -> Vec<(Ticket, Result<CommitInfo>)> {
        let mut w = lock(&self.writer);
        if let Err(e) = self.check_open().and_then(|()| self.make_room(&mut w)) {
            let msg = e.to_string();
            return group
                .into_iter()
                .map(|(t, _)| (t, Err(clone_error(&e, &msg))))
                .collect();
        }
        let mut results = Vec::with_capacity(group.len());
        let mut staged: Vec<(Ticket, Vec<u8>, CommitInfo, usize)> = Vec::new();
        let (mut seq, mut micros) = (w.last_seq, w.last_micros);
        for (ticket, b) in group {
            if let Err(e) = validate(&w.catalog, &b) {
                results.push((ticket, Err(e)));
                continue;
            }
            let next_seq = seq + 1;
            let next_micros = self.opts.clock.now().max(micros);
            let mut payload = Vec::with_capacity(b.approximate_bytes() + 32);
            b.encode(next_seq, next_micros, &mut payload);
            if payload.len() > MAX_FRAME_LEN {
                results.push((
                    ticket,
                    Err(Error::BatchTooLarge {
                        bytes: payload.len(),
                        limit: MAX_FRAME_LEN,
                    }),
                ));
                continue;
            }
            seq = next_seq;
            micros = next_micros;
            let info = CommitInfo {
                seq,
                commit_micros: micros,
            };
            staged.push((ticket, payload, info, b.len()));
        }
        if staged.is_empty() {
            return results;
        }
        let payloads: Vec<&[u8]> = staged.iter().map(|(_, p, ..)| p.as_slice()).collect();
        let durable = w
            .wal
            .append_frames(&payloads)
            .and_then(|bytes| match self.opts.sync {
                SyncPolicy::Always => {
                    self.counters.wal_syncs.fetch_add(1, Ordering::Relaxed);
                    w.wal.sync().map(|()| bytes)
                }
                _ => Ok(bytes),
            });
        let wal_bytes = match durable {
            Ok(bytes) => bytes,
            Err(e) => {
                // The log's tail is now unknown: refuse all further writes.
                self.fail(&e);
                let msg = e.to_string();
                results.extend(
                    staged
                        .into_iter()
                        .map(|(t, ..)| (t, Err(clone_error(&e, &msg)))),
                );
                return results;
            }
        };
        w.last_seq = seq;
        w.last_micros = micros;
        self.counters
            .wal_bytes
            .fetch_add(wal_bytes, Ordering::Relaxed);
        let mem = self.view.load().mem.clone();
        for (ticket, payload, info, rows) in staged {
            let payload: Payload = Arc::new(payload);
            match self.apply(&mut w, &mem, &payload) {
                Ok(()) => {
                    self.counters.batches.fetch_add(1, Ordering::Relaxed);
                    self.counters.rows.fetch_add(rows as u64, Ordering::Relaxed);
                    results.push((ticket, Ok(info)));
                }
                Err(e) => {
                    self.fail(&e);
                    results.push((ticket, Err(e)));
                }
            }
        }
        self.visible_seq.store(w.last_seq, Ordering::Release);
        results
    }

    /// Apply a logged payload: catalog changes, then rows.
    fn apply(&self, w: &mut WriterState, mem: &Arc<MemTable>, payload: &Payload) -> Result<()> {
        let decoded = batch::decode(payload)
            .map_err(|e| Error::corruption("<batch>", e.offset as u64, e.detail))?;
        for op in &decoded.catalog {
            let mut c = (*w.catalog).clone();
            c.apply(op)?;
            w.catalog = Arc::new(c);
            self.install(|v| View {
                catalog: w.catalog.clone(),
                ..v.clone()
            });
            if let CatalogOp::DropTable { id } = op {
                self.drop_table_files(*id)?;
            }
        }
        mem.apply(payload, &decoded, &w.catalog);
        Ok(())
    }

    /// Replace the published view (under the state lock).
    fn install(&self, f: impl FnOnce(&View) -> View) {
        let _st = lock(&self.state);
        let cur = self.view.load_full();
        self.view.store(Arc::new(f(&cur)));
    }

    fn drop_table_files(&self, id: TableId) -> Result<()> {
        let mut st = lock(&self.state);
        let cur = self.view.load_full();
        let Some(files) = cur.version.table(id) else {
            return Ok(());
        };
        let doomed: Vec<Arc<SstFile>> = files.all().cloned().collect();
        let edit = VersionEdit {
            deleted: doomed.iter().map(|f| (id, f.meta.number)).collect(),
            next_file: Some(st.next_file),
            ..VersionEdit::default()
        };
        st.manifest.append(&edit)?;
        let version = cur.version.apply(&edit, &[]);
        self.view.store(Arc::new(View {
            version: Arc::new(version),
            ..(*cur).clone()
        }));
        drop(st);
        for f in doomed {
            remove_if_exists(f.reader.path())?;
        }
        Ok(())
    }

    fn max_l0_files(&self) -> usize {
        self.view
            .load()
            .version
            .tables
            .values()
            .map(|t| t.level(0).len())
            .max()
            .unwrap_or(0)
    }

    /// Wait for background work (or do it inline) until the write may proceed.
    fn make_room(&self, w: &mut WriterState) -> Result<()> {
        let mut slowed = false;
        loop {
            self.check_open()?;
            let l0 = self.max_l0_files();
            if l0 >= self.opts.l0_stop_trigger.max(1) {
                self.stall(|| self.compact_one().map(|_| ()))?;
                continue;
            }
            if l0 >= self.opts.l0_slowdown_trigger && !slowed {
                slowed = true;
                self.counters.slowdowns.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
            let view = self.view.load_full();
            if view.mem.approximate_bytes() < self.opts.memtable_bytes {
                return Ok(());
            }
            if view.imm.len() >= self.opts.max_sealed_memtables.max(1) {
                self.stall(|| self.flush_one().map(|_| ()))?;
                continue;
            }
            self.switch_memtable(w)?;
        }
    }

    /// Wait for background threads to make progress, or run `inline` without them.
    fn stall(&self, inline: impl FnOnce() -> Result<()>) -> Result<()> {
        self.counters.stalls.fetch_add(1, Ordering::Relaxed);
        let t0 = std::time::Instant::now();
        let r = if self.opts.background_threads {
            let st = lock(&self.state);
            let _ = self
                .state_cv
                .wait_timeout(st, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner());
            Ok(())
        } else {
            inline()
        };
        self.counters
            .stall_micros
            .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        r
    }

    fn alloc_file_number(&self) -> u64 {
        let mut st = lock(&self.state);
        let n = st.next_file;
        st.next_file += 1;
        n
    }

    /// Seal the memtable, start a new WAL segment and memtable.
    fn switch_memtable(&self, w: &mut WriterState) -> Result<()> {
        let number = self.alloc_file_number();
        w.wal.sync()?;
        let wal = LogWriter::create_wal(&self.dir, number)?;
        *lock(&self.sync_file) = wal.sync_handle().ok();
        w.wal = wal;
        let mem = Arc::new(MemTable::new(number, w.last_seq, w.catalog.clone()));
        self.install(|v| {
            let mut imm = Vec::with_capacity(v.imm.len() + 1);
            imm.push(v.mem.clone());
            imm.extend(v.imm.iter().cloned());
            View {
                mem,
                imm,
                ..v.clone()
            }
        });
        self.state_cv.notify_all();
        Ok(())
    }

    /// Flush the oldest sealed memtable; false if there was none.
    fn flush_one(&self) -> Result<bool> {
        let _f = lock(&self.flush_lock);
        let view = self.view.load_full();
        let Some(mem) = view.imm.last().cloned() else {
            return Ok(false);
        };
        // The memtable after this one starts where this one ends: its start state is
        // the recovery point once this one is on disk.
        let next = view.imm.iter().rev().nth(1).unwrap_or(&view.mem).clone();
        let catalog = next.start_catalog.clone();
        let mut files = Vec::new();
        for id in mem.table_ids() {
            let (Some(table), Some(tm)) = (catalog.table_by_id(id), mem.table(id)) else {
                continue;
            };
            if tm.is_empty() {
                continue;
            }
            let f = self.write_memtable_sst(&mem, table, &tm)?;
            self.counters
                .flush_bytes
                .fetch_add(f.meta.size, Ordering::Relaxed);
            files.push(f);
        }
        sync_dir(&self.dir)?;
        let mut st = lock(&self.state);
        let cur = self.view.load_full();
        let (keep, gone): (Vec<_>, Vec<_>) = files
            .into_iter()
            .partition(|f| cur.catalog.table_by_id(f.meta.table).is_some());
        let imm: Vec<Arc<MemTable>> = cur
            .imm
            .iter()
            .filter(|m| !Arc::ptr_eq(m, &mem))
            .cloned()
            .collect();
        let edit = VersionEdit {
            next_file: Some(st.next_file),
            last_seq: Some(next.start_seq),
            log_number: Some(next.wal_number),
            catalog: Some(catalog.to_json()),
            last_micros: mem.last_commit_micros(),
            added: keep.iter().map(|f| f.meta.clone()).collect(),
            deleted: Vec::new(),
        };
        if let Err(e) = st.manifest.append(&edit) {
            self.fail(&e);
            return Err(e);
        }
        if let Some(t) = edit.last_micros {
            st.last_micros = st.last_micros.max(t);
        }
        let version = cur.version.apply(&edit, &keep);
        self.view.store(Arc::new(View {
            imm,
            version: Arc::new(version),
            ..(*cur).clone()
        }));
        self.maybe_rotate_manifest(&mut st)?;
        drop(st);
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        remove_if_exists(&self.dir.join(segment_name(mem.wal_number)))?;
        for f in gone {
            remove_if_exists(f.reader.path())?;
        }
        self.state_cv.notify_all();
        Ok(true)
    }

    fn write_memtable_sst(
        &self,
        mem: &Arc<MemTable>,
        table: &TableDef,
        tm: &crate::memtable::TableMem,
    ) -> Result<Arc<SstFile>> {
        let number = self.alloc_file_number();
        let path = self.dir.join(sst_name(number));
        let types = table.feature_types();
        let all = vec![true; types.len()];
        let mut writer =
            SstWriter::create(&path, table.id, types.clone(), self.opts.writer_options())?;
        let mut lower = std::ops::Bound::Unbounded;
        let res = (|| -> Result<()> {
            loop {
                let entries: Vec<MemEntry> = tm.entries(&lower, None, 65536);
                let Some(last) = entries.last() else { break };
                lower = std::ops::Bound::Excluded(last.clone());
                let v = entries_to_versions(&entries, &types, &all)
                    .map_err(|e| Error::corruption("<memtable>", e.offset as u64, e.detail))?;
                writer.add(&v)?;
                if entries.len() < 65536 {
                    break;
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            writer.abandon();
            return Err(e);
        }
        let (meta, size) = writer.finish(&|s| mem.commit_time(s))?;
        open_file(&path, number, 0, &meta, size)
    }

    /// Start a fresh manifest (one snapshot record) once the current one is large.
    fn maybe_rotate_manifest(&self, st: &mut State) -> Result<()> {
        if st.manifest.size() < 64 << 20 {
            return Ok(());
        }
        let view = self.view.load_full();
        // The recovery point is the start of the oldest memtable not yet on disk.
        let oldest = view.imm.last().unwrap_or(&view.mem);
        let number = st.next_file;
        st.next_file += 1;
        let mut state = ManifestState {
            next_file: st.next_file,
            last_seq: oldest.start_seq,
            log_number: oldest.wal_number,
            catalog: Some(oldest.start_catalog.to_json()),
            last_micros: st.last_micros,
            files: Default::default(),
        };
        for f in view.version.all_files() {
            state.files.insert(f.meta.number, f.meta.clone());
        }
        let old = st.manifest.number;
        st.manifest = Manifest::create(&self.dir, number, &state)?;
        remove_if_exists(&self.dir.join(manifest_name(old)))
    }

    fn flush_loop(&self) {
        while !self.closed.load(Ordering::Acquire) {
            if self.view.load().imm.is_empty() {
                let st = lock(&self.state);
                let _ = self
                    .state_cv
                    .wait_timeout(st, Duration::from_millis(200))
                    .unwrap_or_else(|e| e.into_inner());
                continue;
            }
            if let Err(e) = self.flush_one() {
                self.fail(&e);
                return;
            }
        }
    }

    fn compact_loop(&self) {
        while !self.closed.load(Ordering::Acquire) {
            match self.compact_one() {
                Ok(true) => {}
                Ok(false) => {
                    let st = lock(&self.state);
                    let _ = self
                        .state_cv
                        .wait_timeout(st, Duration::from_millis(200))
                        .unwrap_or_else(|e| e.into_inner());
                }
                Err(e) => {
                    self.fail(&e);
                    return;
                }
            }
        }
    }

    fn sync_loop(&self, ms: u64) {
        while !self.closed.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(ms.max(1)));
            if let Some((path, f)) = lock(&self.sync_file).as_ref()
                && let Err(e) = f.sync_data()
            {
                self.fail(&Error::io(path, e));
                return;
            }
            self.counters.wal_syncs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Run the most urgent compaction, if any; false if none is due.
    fn compact_one(&self) -> Result<bool> {
        let _c = lock(&self.compact_lock);
        let view = self.view.load_full();
        let cfg = self.opts.level_config();
        let mut best: Option<(Arc<TableDef>, Job)> = None;
        {
            let mut st = lock(&self.state);
            for (id, files) in &view.version.tables {
                let Some(table) = view.catalog.table_by_id(*id) else {
                    continue;
                };
                let cursor = st
                    .cursors
                    .entry(*id)
                    .or_insert_with(|| vec![Vec::new(); NUM_LEVELS]);
                if let Some(job) = compaction::pick(files, &cfg, cursor)
                    && best.as_ref().is_none_or(|(_, b)| job.score > b.score)
                {
                    best = Some((table.clone(), job));
                }
            }
        }
        let Some((table, job)) = best else {
            return Ok(false);
        };
        self.run_job(&table, &job)?;
        Ok(true)
    }

    /// Execute a compaction job and install its result.
    fn run_job(&self, table: &TableDef, job: &Job) -> Result<()> {
        let horizons = Horizons::of(table, self.opts.clock.now());
        let times = merged_commit_times(job)?;
        let commit_time = |s: u64| -> Option<i64> {
            times
                .binary_search_by_key(&s, |&(seq, _)| seq)
                .ok()
                .and_then(|i| times.get(i))
                .map(|&(_, t)| t)
        };
        let mut outputs: Vec<Arc<SstFile>> = Vec::new();
        let mut current: Option<(SstWriter, u64, PathBuf)> = None;
        let types = table.feature_types();
        let target = self.opts.target_file_bytes.max(1);
        let finish =
            |cur: (SstWriter, u64, PathBuf), outputs: &mut Vec<Arc<SstFile>>| -> Result<()> {
                let (w, number, path) = cur;
                let (meta, size) = w.finish(&commit_time)?;
                outputs.push(open_file(
                    &path,
                    number,
                    job.output_level as u8,
                    &meta,
                    size,
                )?);
                Ok(())
            };
        let res = compaction::run(job, table, horizons, 65536, |v| {
            if v.is_empty() {
                return Ok(());
            }
            if let Some((w, ..)) = &current
                && w.written() >= target
                && w.last_key() != Some(v.keys.value(0))
                && let Some(cur) = current.take()
            {
                finish(cur, &mut outputs)?;
            }
            if current.is_none() {
                let number = self.alloc_file_number();
                let path = self.dir.join(sst_name(number));
                let w =
                    SstWriter::create(&path, table.id, types.clone(), self.opts.writer_options())?;
                current = Some((w, number, path));
            }
            match &mut current {
                Some((w, ..)) => w.add(&v),
                None => Ok(()),
            }
        });
        let dropped = match res {
            Ok(d) => d,
            Err(e) => {
                if let Some((w, ..)) = current.take() {
                    w.abandon();
                }
                for f in &outputs {
                    let _ = remove_if_exists(f.reader.path());
                }
                return Err(e);
            }
        };
        if let Some(cur) = current.take()
            && cur.0.rows() > 0
        {
            finish(cur, &mut outputs)?;
        }
        sync_dir(&self.dir)?;
        let inputs: Vec<Arc<SstFile>> = job.input_files().cloned().collect();
        let mut st = lock(&self.state);
        let cur = self.view.load_full();
        let edit = VersionEdit {
            next_file: Some(st.next_file),
            added: outputs.iter().map(|f| f.meta.clone()).collect(),
            deleted: inputs.iter().map(|f| (table.id, f.meta.number)).collect(),
            ..VersionEdit::default()
        };
        if let Err(e) = st.manifest.append(&edit) {
            self.fail(&e);
            return Err(e);
        }
        let version = cur.version.apply(&edit, &outputs);
        self.view.store(Arc::new(View {
            version: Arc::new(version),
            ..(*cur).clone()
        }));
        self.maybe_rotate_manifest(&mut st)?;
        drop(st);
        let c = &self.counters;
        c.compactions.fetch_add(1, Ordering::Relaxed);
        c.compaction_read
            .fetch_add(inputs.iter().map(|f| f.meta.size).sum(), Ordering::Relaxed);
        c.compaction_written
            .fetch_add(outputs.iter().map(|f| f.meta.size).sum(), Ordering::Relaxed);
        c.compaction_dropped.fetch_add(dropped, Ordering::Relaxed);
        for f in inputs {
            remove_if_exists(f.reader.path())?;
        }
        self.state_cv.notify_all();
        Ok(())
    }

    fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        {
            let _st = lock(&self.state);
            self.state_cv.notify_all();
        }
        let threads: Vec<JoinHandle<()>> = lock(&self.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
        lock(&self.writer).wal.sync()
    }
}

impl Db {
    /// Stop background threads without consuming the handle (used by `Drop` of the
    /// last handle through `close`, and by servers on shutdown).
    pub fn shutdown(&self) -> Result<()> {
        self.inner.shutdown()
    }
}

fn clone_error(e: &Error, msg: &str) -> Error {
    match e {
        Error::Closed => Error::Closed,
        Error::Background(m) => Error::Background(m.clone()),
        _ => Error::Background(msg.to_string()),
    }
}

/// Check a batch against the catalog it will be applied to.
fn validate(catalog: &Catalog, b: &WriteBatch) -> Result<()> {
    if let Some(op) = &b.catalog {
        catalog.validate(op)?;
    }
    let mut last = None;
    for t in b.tables() {
        if last != Some(t) {
            if catalog.table_by_id(t).is_none() {
                return Err(Error::NoSuchTable(format!("#{t} (dropped)")));
            }
            last = Some(t);
        }
    }
    Ok(())
}

fn open_file(
    path: &Path,
    number: u64,
    level: u8,
    meta: &crate::sst::SstMeta,
    size: u64,
) -> Result<Arc<SstFile>> {
    let reader = SstReader::open(path)?;
    Ok(Arc::new(SstFile {
        meta: FileMeta {
            number,
            table: meta.table,
            level,
            size,
            rows: meta.rows,
            min_et: meta.min_et,
            max_et: meta.max_et,
            min_seq: meta.min_seq,
            max_seq: meta.max_seq,
            min_key: meta.min_key.clone(),
            max_key: meta.max_key.clone(),
        },
        reader,
    }))
}

/// The union of the commit-time tables of a job's inputs.
fn merged_commit_times(job: &Job) -> Result<Vec<(u64, i64)>> {
    let mut all = Vec::new();
    for f in job.input_files() {
        all.extend_from_slice(f.reader.commit_times()?);
    }
    all.sort_unstable();
    all.dedup_by_key(|&mut (s, _)| s);
    Ok(all)
}

impl Snapshot {
    /// This snapshot plus the writes of `batch`, as if committed now on top of it:
    /// read-your-writes for an open transaction. The overlay is seen by reads of the
    /// current system time only (time travel never sees uncommitted writes), and it
    /// wins ties with committed versions of the same (key, event time).
    pub fn with_overlay(&self, batch: &WriteBatch) -> Result<Snapshot> {
        if batch.is_empty() {
            return Ok(Snapshot {
                overlay: None,
                ..self.clone()
            });
        }
        let mem = MemTable::new(0, self.seq, self.view.catalog.clone());
        let mut payload = Vec::with_capacity(batch.approximate_bytes() + 32);
        batch.encode(crate::view::OVERLAY_SEQ, self.now, &mut payload);
        let payload: Payload = Arc::new(payload);
        let decoded = batch::decode(&payload)
            .map_err(|e| Error::corruption("<overlay>", e.offset as u64, e.detail))?;
        mem.apply(&payload, &decoded, &self.view.catalog);
        Ok(Snapshot {
            overlay: Some(Arc::new(View {
                overlay: Some(Arc::new(mem)),
                ..(*self.view).clone()
            })),
            ..self.clone()
        })
    }

    /// The view a read at `system` uses.
    fn view_at(&self, system: SystemAt) -> &View {
        match (&self.overlay, system) {
            (Some(v), SystemAt::Current) => v,
            _ => &self.view,
        }
    }

    /// Number of versions (including tombstones) of `table` in this snapshot's files
    /// and memtables: an upper bound of what a history scan returns.
    pub fn version_count(&self, table: TableId) -> u64 {
        let view = self.view_at(SystemAt::Current);
        let mem: u64 = view
            .memtables()
            .filter_map(|m| m.table(table))
            .map(|t| t.rows.load(Ordering::Relaxed))
            .sum();
        let files: u64 = view
            .version
            .table(table)
            .map_or(0, |f| f.all().map(|f| f.meta.rows).sum());
        mem + files
    }

    /// The sequence this snapshot reads at.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Wall-clock time when the snapshot was taken (the "now" of TTL).
    pub fn now_micros(&self) -> i64 {
        self.now
    }

    /// The catalog as of the snapshot.
    pub fn catalog(&self) -> &Catalog {
        &self.view.catalog
    }

    /// A table by name.
    pub fn table(&self, name: &str) -> Result<Arc<TableDef>> {
        self.view
            .catalog
            .table(name)
            .cloned()
            .ok_or_else(|| Error::NoSuchTable(name.to_string()))
    }

    /// The sequence a read at `system` sees for `table`, checking that the time lies
    /// inside retained history and not in the future.
    pub fn resolve(&self, table: &TableDef, system: SystemAt) -> Result<u64> {
        match system {
            SystemAt::Current => Ok(self.seq),
            SystemAt::Seq(s) => Ok(s.min(self.seq)),
            SystemAt::Micros(t) => {
                if t > self.now {
                    return Err(Error::OutsideRetention(format!(
                        "system time {} is in the future (now is {})",
                        fmt_micros(t),
                        fmt_micros(self.now)
                    )));
                }
                if t < table.created_micros {
                    return Err(Error::OutsideRetention(format!(
                        "table \"{}\" did not exist at system time {} (created {})",
                        table.name,
                        fmt_micros(t),
                        fmt_micros(table.created_micros)
                    )));
                }
                if let Some(r) = table.options.retention_micros
                    && t < self.now.saturating_sub(r)
                {
                    return Err(Error::OutsideRetention(format!(
                        "system time {} is older than the retained history of table \"{}\" (retention {} s)",
                        fmt_micros(t),
                        table.name,
                        r / 1_000_000
                    )));
                }
                Ok(self.seq_at_or_before(table.id, t)?.min(self.seq))
            }
        }
    }

    /// The largest sequence holding versions of `table` committed at or before `t`.
    fn seq_at_or_before(&self, table: TableId, t: i64) -> Result<u64> {
        let mut best = 0;
        for m in self.view.memtables() {
            if m.table(table).is_some()
                && let Some(s) = m.last_seq_at_or_before(t)
            {
                best = best.max(s);
            }
        }
        if let Some(files) = self.view.version.table(table) {
            for f in files.all() {
                if let Some(s) = f.reader.last_seq_at_or_before(t)? {
                    best = best.max(s);
                }
            }
        }
        Ok(best)
    }

    /// The newest version of `key` (key columns in key order) visible at `at`, with
    /// tombstones and TTL applied; `None` if the entity is absent.
    pub fn get(
        &self,
        table: &TableDef,
        key: &[Value],
        at: &ReadAt,
        proj: &Projection,
    ) -> Result<Option<Row>> {
        let k = crate::keycodec::encode_key(key, &table.key_types(), &key_names(table))?;
        self.get_encoded(table, &k, at, proj)
    }

    /// [`Snapshot::get`] with an already-encoded key.
    pub fn get_encoded(
        &self,
        table: &TableDef,
        key: &[u8],
        at: &ReadAt,
        proj: &Projection,
    ) -> Result<Option<Row>> {
        let seq = self.resolve(table, at.system)?;
        self.view_at(at.system).get(table, key, at, seq, proj)
    }

    /// Point lookups of many keys; results in the order of `keys`.
    pub fn multi_get(
        &self,
        table: &TableDef,
        keys: &[Vec<Value>],
        at: &ReadAt,
        proj: &Projection,
    ) -> Result<Vec<Option<Row>>> {
        let seq = self.resolve(table, at.system)?;
        let types = table.key_types();
        let names = key_names(table);
        let view = self.view_at(at.system);
        keys.iter()
            .map(|k| {
                let enc = crate::keycodec::encode_key(k, &types, &names)?;
                view.get(table, &enc, at, seq, proj)
            })
            .collect()
    }

    /// Point lookups of already-encoded keys as one Arrow batch of `columns` (all if
    /// `None`), in the order of `keys`; absent entities are omitted.
    pub fn lookup_batch(
        &self,
        table: &TableDef,
        keys: &[Vec<u8>],
        at: &ReadAt,
        columns: Option<&[usize]>,
    ) -> Result<arrow_array::RecordBatch> {
        let proj = Projection::new(table, columns)?;
        let schema = Arc::new(table.arrow_schema(columns));
        self.lookup_projected(table, keys, at, &proj, schema)
    }

    /// [`Snapshot::lookup_batch`] with the projection and the output schema resolved
    /// by the caller (a prepared lookup resolves them once). `schema` must have the
    /// projection's column types; its names and nullability are the caller's.
    pub fn lookup_projected(
        &self,
        table: &TableDef,
        keys: &[Vec<u8>],
        at: &ReadAt,
        proj: &Projection,
        schema: arrow_schema::SchemaRef,
    ) -> Result<arrow_array::RecordBatch> {
        let mut builders: Vec<crate::arrowutil::ColumnBuilder> = proj
            .types()
            .iter()
            .map(|&ty| crate::arrowutil::ColumnBuilder::new(ty, keys.len()))
            .collect();
        let n = self.lookup_rows(table, keys, at, proj, |row| {
            for (b, v) in builders.iter_mut().zip(row) {
                b.append_value(v);
            }
        })?;
        let arrays = builders.into_iter().map(|b| b.finish()).collect();
        arrow_array::RecordBatch::try_new_with_options(
            schema,
            arrays,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .map_err(crate::scan::arrow_err)
    }

    /// Point lookups of already-encoded keys, row by row: `row` is called with the
    /// projected values of each present entity, in the order of `keys` (absent
    /// entities are skipped), from one reused buffer. Returns the number of rows.
    /// This is the online path: nothing is allocated per row for fixed-width values.
    pub fn lookup_rows(
        &self,
        table: &TableDef,
        keys: &[Vec<u8>],
        at: &ReadAt,
        proj: &Projection,
        mut row: impl FnMut(&[Value]),
    ) -> Result<usize> {
        let seq = self.resolve(table, at.system)?;
        let view = self.view_at(at.system);
        let mut values = Vec::with_capacity(proj.types().len());
        let mut n = 0;
        for k in keys {
            if view
                .get_into(table, k, at, seq, proj, &mut values)?
                .is_some()
            {
                row(&values);
                n += 1;
            }
        }
        Ok(n)
    }

    /// One point lookup per request, each at its own read point: a batch with one row
    /// per request, all-NULL where the entity is absent (left-join style). All
    /// requests must read the same system time (`SystemAt`).
    pub fn lookup_each(
        &self,
        table: &TableDef,
        requests: &[(Vec<u8>, ReadAt)],
        columns: Option<&[usize]>,
    ) -> Result<arrow_array::RecordBatch> {
        let system = requests
            .first()
            .map_or(SystemAt::Current, |(_, at)| at.system);
        if requests.iter().any(|(_, at)| at.system != system) {
            return Err(Error::InvalidArgument(
                "lookup_each needs one system time".into(),
            ));
        }
        let seq = self.resolve(table, system)?;
        let proj = Projection::new(table, columns)?;
        let view = self.view_at(system);
        let schema = Arc::new(table.arrow_schema(columns));
        let mut builders: Vec<crate::arrowutil::ColumnBuilder> = proj
            .types()
            .iter()
            .map(|&ty| crate::arrowutil::ColumnBuilder::new(ty, requests.len()))
            .collect();
        for (k, at) in requests {
            match view.get(table, k, at, seq, &proj)? {
                Some(row) => {
                    for (b, v) in builders.iter_mut().zip(&row.values) {
                        b.append_value(v);
                    }
                }
                None => builders.iter_mut().for_each(|b| b.append_null()),
            }
        }
        let nullable = Arc::new(arrow_schema::Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let arrays = builders.into_iter().map(|b| b.finish()).collect();
        arrow_array::RecordBatch::try_new_with_options(
            nullable,
            arrays,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(requests.len())),
        )
        .map_err(crate::scan::arrow_err)
    }

    /// Stream versions of `table` as Arrow batches.
    pub fn scan(&self, table: &TableDef, opts: &ScanOptions) -> Result<ScanIter> {
        let seq = self.resolve(table, opts.at.system)?;
        crate::scan::scan(self.view_at(opts.at.system), table, opts, seq)
    }
}

fn key_names(table: &TableDef) -> Vec<String> {
    table
        .key
        .iter()
        .filter_map(|&i| table.columns.get(i).map(|c| c.name.clone()))
        .collect()
}

/// Render microseconds since the epoch for error messages (UTC, ISO 8601).
pub fn fmt_micros(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{frac:06}+00",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// What recovery hands to `Db::open`.
struct Recovered {
    manifest: Manifest,
    next_file: u64,
    version: Version,
    catalog: Arc<Catalog>,
    mem: Arc<MemTable>,
    wal: LogWriter,
    last_seq: u64,
    last_micros: i64,
}

/// Numbers of the engine's files in `dir`, by kind.
#[derive(Default)]
struct DirListing {
    ssts: Vec<u64>,
    wals: Vec<u64>,
    manifests: Vec<u64>,
    temps: Vec<PathBuf>,
    max_number: u64,
}

fn list_dir(dir: &Path) -> Result<DirListing> {
    let mut out = DirListing::default();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let num = |s: &str| s.parse::<u64>().ok();
        if let Some(n) = name.strip_suffix(".sst").and_then(num) {
            out.ssts.push(n);
            out.max_number = out.max_number.max(n);
        } else if let Some(n) = name.strip_suffix(".wal").and_then(num) {
            out.wals.push(n);
            out.max_number = out.max_number.max(n);
        } else if let Some(n) = name.strip_prefix("MANIFEST-").and_then(num) {
            out.manifests.push(n);
            out.max_number = out.max_number.max(n);
        } else if name.ends_with(".tmp") {
            out.temps.push(entry.path());
        }
    }
    out.wals.sort_unstable();
    Ok(out)
}

/// Rebuild the engine state from the manifest and the WAL.
fn recover(dir: &Path, opts: &Options) -> Result<Recovered> {
    let listing = list_dir(dir)?;
    let (manifest_number, state) = match manifest::recover(dir)? {
        Some(found) => found,
        None => {
            if !listing.ssts.is_empty() || !listing.wals.is_empty() || !listing.manifests.is_empty()
            {
                return Err(Error::corruption(
                    dir.join("CURRENT"),
                    0,
                    "data files exist but CURRENT is missing; refusing to start an empty database over them",
                ));
            }
            (0, ManifestState::default())
        }
    };
    let mut catalog = match &state.catalog {
        Some(json) => Catalog::from_json(json).map_err(|e| {
            Error::corruption(
                dir.join(manifest_name(manifest_number)),
                0,
                format!("bad catalog snapshot: {e}"),
            )
        })?,
        None => Catalog::default(),
    };

    // Open every live SST.
    let mut opened = Vec::new();
    for meta in state.files.values() {
        let path = dir.join(sst_name(meta.number));
        if !path.exists() {
            return Err(Error::corruption(
                &path,
                0,
                format!(
                    "the manifest names {} but the file is missing",
                    sst_name(meta.number)
                ),
            ));
        }
        let reader = SstReader::open(&path)?;
        if reader.meta.table != meta.table || reader.meta.rows != meta.rows {
            return Err(Error::corruption(
                &path,
                0,
                "file does not match its manifest record",
            ));
        }
        opened.push(Arc::new(SstFile {
            meta: meta.clone(),
            reader,
        }));
    }
    let mut version = Version::default().apply(
        &VersionEdit {
            added: state.files.values().cloned().collect(),
            ..VersionEdit::default()
        },
        &opened,
    );

    // Replay the WAL from the recovery point.
    let mut next_file = state.next_file.max(listing.max_number + 1).max(1);
    let segments: Vec<u64> = listing
        .wals
        .iter()
        .copied()
        .filter(|&n| n >= state.log_number)
        .collect();
    if manifest_number != 0 && state.log_number != 0 && segments.first() != Some(&state.log_number)
    {
        return Err(Error::corruption(
            dir.join(segment_name(state.log_number)),
            0,
            "the WAL segment the manifest starts recovery from is missing",
        ));
    }
    let replay_mem = Arc::new(MemTable::new(0, state.last_seq, Arc::new(catalog.clone())));
    let mut last_seq = state.last_seq;
    let mut last_micros = state.last_micros;
    let mut replayed = 0u64;
    // A torn tail is tolerated in the newest segment that holds frames: segments after
    // it that hold only a header (created just before a crash) carry no batches.
    let holds_frames: Vec<bool> = segments
        .iter()
        .map(|n| {
            std::fs::metadata(dir.join(segment_name(*n)))
                .map(|m| m.len() > wal::WAL_HEADER_LEN as u64)
                .unwrap_or(true)
        })
        .collect();
    for (i, &n) in segments.iter().enumerate() {
        let path = dir.join(segment_name(n));
        let is_last = !holds_frames.iter().skip(i + 1).any(|&f| f);
        wal::replay_log(&path, WAL_MAGIC, is_last, |payload, offset| {
            let decoded = batch::decode(payload).map_err(|e| e.at(&path, offset))?;
            if replayed == 0 && decoded.seq <= state.last_seq {
                // Already on disk: the segment starts before the recovery point.
                return Ok(());
            }
            if decoded.seq != last_seq + 1 {
                return Err(Error::corruption(
                    &path,
                    offset,
                    format!(
                        "expected batch {} but found {}: the WAL is missing batches",
                        last_seq + 1,
                        decoded.seq
                    ),
                ));
            }
            for op in &decoded.catalog {
                catalog.apply(op).map_err(|e| {
                    Error::corruption(
                        &path,
                        offset,
                        format!("catalog operation cannot be replayed: {e}"),
                    )
                })?;
            }
            let payload: Payload = Arc::new(payload.to_vec());
            replay_mem.apply(&payload, &decoded, &catalog);
            last_seq = decoded.seq;
            last_micros = last_micros.max(decoded.commit_micros);
            replayed += 1;
            Ok(())
        })?;
    }

    // Files of tables dropped after the manifest's catalog snapshot.
    let dropped: Vec<(TableId, u64)> = version
        .all_files()
        .filter(|f| catalog.table_by_id(f.meta.table).is_none())
        .map(|f| (f.meta.table, f.meta.number))
        .collect();
    if !dropped.is_empty() {
        version = version.apply(
            &VersionEdit {
                deleted: dropped.clone(),
                ..VersionEdit::default()
            },
            &[],
        );
    }

    // Persist what was replayed as level-0 files, so the old segments can go.
    let wopts = opts.writer_options();
    let mut added = Vec::new();
    for id in replay_mem.table_ids() {
        let (Some(table), Some(tm)) = (catalog.table_by_id(id), replay_mem.table(id)) else {
            continue;
        };
        let number = next_file;
        next_file += 1;
        let path = dir.join(sst_name(number));
        remove_if_exists(&path)?;
        let types = table.feature_types();
        let all = vec![true; types.len()];
        let mut writer = SstWriter::create(&path, table.id, types.clone(), wopts)?;
        let mut lower = std::ops::Bound::Unbounded;
        loop {
            let entries = tm.entries(&lower, None, 65536);
            let Some(last) = entries.last() else { break };
            lower = std::ops::Bound::Excluded(last.clone());
            let v = entries_to_versions(&entries, &types, &all)
                .map_err(|e| Error::corruption(&path, 0, e.detail))?;
            writer.add(&v)?;
        }
        let (meta, size) = writer.finish(&|s| replay_mem.commit_time(s))?;
        added.push(open_file(&path, number, 0, &meta, size)?);
    }
    sync_dir(dir)?;
    let wal_number = next_file;
    next_file += 1;
    let wal = LogWriter::create_wal(dir, wal_number)?;
    let new_manifest_number = next_file;
    next_file += 1;
    version = version.apply(
        &VersionEdit {
            added: added.iter().map(|f| f.meta.clone()).collect(),
            ..VersionEdit::default()
        },
        &added,
    );
    let mut new_state = ManifestState {
        next_file,
        last_seq,
        log_number: wal_number,
        catalog: Some(catalog.to_json()),
        last_micros,
        files: Default::default(),
    };
    for f in version.all_files() {
        new_state.files.insert(f.meta.number, f.meta.clone());
    }
    let manifest = Manifest::create(dir, new_manifest_number, &new_state)?;

    // Everything the new manifest does not reference is garbage now.
    for n in &listing.wals {
        remove_if_exists(&dir.join(segment_name(*n)))?;
    }
    for n in &listing.manifests {
        if *n != new_manifest_number {
            remove_if_exists(&dir.join(manifest_name(*n)))?;
        }
    }
    for n in &listing.ssts {
        if !new_state.files.contains_key(n) {
            remove_if_exists(&dir.join(sst_name(*n)))?;
        }
    }
    for (_, n) in &dropped {
        remove_if_exists(&dir.join(sst_name(*n)))?;
    }
    for t in &listing.temps {
        remove_if_exists(t)?;
    }
    sync_dir(dir)?;
    let catalog = Arc::new(catalog);
    Ok(Recovered {
        manifest,
        next_file,
        version,
        mem: Arc::new(MemTable::new(wal_number, last_seq, catalog.clone())),
        catalog,
        wal,
        last_seq,
        last_micros,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_render_as_utc_timestamps() {
        assert_eq!(fmt_micros(0), "1970-01-01 00:00:00.000000+00");
        assert_eq!(
            fmt_micros(1_704_067_200_000_000),
            "2024-01-01 00:00:00.000000+00"
        );
        assert_eq!(fmt_micros(-1), "1969-12-31 23:59:59.999999+00");
    }
}
