//! The engine: one [`Db`] handle over shared [`Engine`] state, in rooms by subsystem.
//!
//! - `mod.rs` (this file): open and close, DDL, the handle's accessors, background
//!   thread start and shutdown, and the shared state with its locks.
//! - [`options`]: settings, the clock and the sync policy.
//! - [`stats`]: counters and the [`Stats`] summary.
//! - [`commit`]: the group-commit write path and backpressure.
//! - [`background`]: memtable flush, compaction execution, manifest rotation.
//! - [`recovery`]: rebuilding the engine from the manifest, the SSTs and the WAL.
//! - [`checkpoint`]: the flushed state as a directory of its own, and installing
//!   one (a cluster member's Raft snapshot).
//!
//! The read API lives in [`crate::snapshot`].
//!
//! Locks, always taken in this order: `queue` (writers), `commit` (the WAL, the
//! authoritative catalog, sequence allocation, the real ids of created tables;
//! held by the commit leader; catalog changes are validated under it), `book`
//! (the manifest, file numbers, compaction cursors, and every change of the
//! published [`View`]). Flush and compaction hold `flush_lock` / `compact_lock` for
//! their whole run and `book` only to install their result.
//!
//! Invariants: the published view only ever moves forward (a reader holding an old
//! one keeps a consistent state); `visible_seq` is stored only after every batch up
//! to it is in the memtable; after a WAL or manifest failure (`stop_writes`) every
//! later write is refused until restart, while reads go on.

mod background;
mod checkpoint;
mod commit;
mod options;
mod recovery;
mod replica;
mod stats;
#[cfg(test)]
mod testutil;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;

use crate::batch::WriteBatch;
use crate::catalog::{Catalog, CatalogOp};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::scan::{ScanIter, ScanOptions};
use crate::snapshot::Snapshot;
use crate::types::{ColumnDef, IndexDef, TableDef, TableId, TableOptions, Value};
use crate::view::{Projection, ReadAt, Row, View};

pub use checkpoint::{CheckpointInfo, read_checkpoint};
pub use commit::CommitInfo;
pub use options::{Clock, Options, SyncPolicy};
pub use replica::{Member, MemberChange, Outcome, Replicate, Role, RoleKind, Stamp};
pub use stats::{LevelStats, Stats};

use commit::{CommitState, Queue};
use recovery::{Mode, recover};
use replica::ReplicaSlot;
use stats::Counters;

/// The manifest and the file bookkeeping that goes with it (under `Engine::book`).
struct FileBook {
    manifest: Manifest,
    next_file: u64,
    /// Commit time of the last flushed batch, as recorded in the manifest.
    last_micros: i64,
    cursors: HashMap<TableId, Vec<Vec<u8>>>,
}

/// The state every handle and background thread shares.
pub(crate) struct Engine {
    dir: PathBuf,
    opts: Options,
    _lock: File,
    view: ArcSwap<View>,
    visible_seq: AtomicU64,
    queue: Mutex<Queue>,
    queue_cv: Condvar,
    commit: Mutex<CommitState>,
    book: Mutex<FileBook>,
    progress: Condvar,
    flush_lock: Mutex<()>,
    compact_lock: Mutex<()>,
    /// Source of provisional table ids (see [`TableId::PROVISIONAL`]).
    provisional: AtomicU32,
    bg_error: Mutex<Option<String>>,
    closed: AtomicBool,
    counters: Counters,
    sync_file: Mutex<Option<(PathBuf, File)>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Replicated mode: the consensus layer's hook. `None` on a single node.
    replica: Option<ReplicaSlot>,
}

/// Lock a mutex, recovering the data if a thread panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The storage engine. Cheap to clone; all clones share one engine, which closes
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Db {
    engine: Arc<Engine>,
    _close: Arc<CloseOnDrop>,
}

/// Shuts the engine down when the last user handle goes away (background threads
/// hold `Engine` too, so `Engine`'s own drop would never run while they live).
struct CloseOnDrop(Arc<Engine>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let _ = self.0.shutdown();
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.engine.dir).finish()
    }
}

impl Db {
    /// Open (creating if needed) the database in `dir`, recovering from the WAL.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        Db::open_in(dir.as_ref(), opts, Mode::Single)
    }

    /// Open (creating if needed) the engine of a cluster member in `dir`: no WAL
    /// of its own, at the consensus position its flushed files cover
    /// ([`Db::applied`]). Writes go through the hook installed with
    /// [`Db::set_replicator`]; the consensus layer applies entries with
    /// [`Db::apply_entry`].
    pub fn open_replicated(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        if opts.sync != SyncPolicy::Always {
            return Err(Error::InvalidArgument(
                "a cluster member makes every entry durable: only fsync = always is allowed".into(),
            ));
        }
        Db::open_in(dir.as_ref(), opts, Mode::Replicated)
    }

    fn open_in(dir: &Path, opts: Options, mode: Mode) -> Result<Db> {
        let dir = dir.to_path_buf();
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
        let recovered = recover(&dir, &opts, mode)?;
        let sync_file = recovered.wal.as_ref().and_then(|w| w.sync_handle().ok());
        let engine = Arc::new(Engine {
            dir: dir.clone(),
            _lock: lock_file,
            view: ArcSwap::from_pointee(View {
                mem: recovered.mem.clone(),
                imm: Vec::new(),
                files: Arc::new(recovered.files),
                catalog: recovered.catalog.clone(),
                overlay: None,
            }),
            visible_seq: AtomicU64::new(recovered.last_seq),
            queue: Mutex::new(Queue::default()),
            queue_cv: Condvar::new(),
            sync_file: Mutex::new(sync_file),
            commit: Mutex::new(CommitState {
                wal: recovered.wal,
                last_seq: recovered.last_seq,
                last_micros: recovered.last_micros,
                catalog: recovered.catalog,
                applied: recovered.applied,
            }),
            book: Mutex::new(FileBook {
                manifest: recovered.manifest,
                next_file: recovered.next_file,
                last_micros: recovered.last_micros,
                cursors: HashMap::new(),
            }),
            progress: Condvar::new(),
            flush_lock: Mutex::new(()),
            compact_lock: Mutex::new(()),
            provisional: AtomicU32::new(0),
            bg_error: Mutex::new(None),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
            threads: Mutex::new(Vec::new()),
            replica: (mode == Mode::Replicated).then(ReplicaSlot::default),
            opts,
        });
        let db = Db {
            _close: Arc::new(CloseOnDrop(engine.clone())),
            engine,
        };
        db.start_threads()?;
        Ok(db)
    }

    /// The directory this database lives in.
    pub fn path(&self) -> &Path {
        &self.engine.dir
    }

    /// The engine's settings.
    pub fn options(&self) -> &Options {
        &self.engine.opts
    }

    /// The current catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.engine.view.load().catalog.clone()
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
        self.engine.visible_seq.load(Ordering::Acquire)
    }

    /// The engine's clock reading.
    pub fn now_micros(&self) -> i64 {
        self.engine.opts.clock.now()
    }

    /// Pin the current state for consistent reads.
    pub fn snapshot(&self) -> Snapshot {
        let seq = self.engine.visible_seq.load(Ordering::Acquire);
        let view = self.engine.view.load_full();
        Snapshot::new(view, seq, self.engine.opts.clock.now())
    }

    /// A fresh provisional table id, for a table created by a batch not yet
    /// committed: the commit replaces it with the table's real id.
    pub fn provisional_table_id(&self) -> TableId {
        let n = self.engine.provisional.fetch_add(1, Ordering::Relaxed);
        TableId(TableId::PROVISIONAL | (n & (TableId::PROVISIONAL - 1)))
    }

    /// Commit one catalog change alone (changes are validated at commit).
    fn change_catalog(&self, op: CatalogOp) -> Result<()> {
        self.write(WriteBatch::catalog_only(op))?;
        Ok(())
    }

    /// Create a table; the definition's id and creation time are assigned here.
    pub fn create_table(&self, mut def: TableDef) -> Result<Arc<TableDef>> {
        def.id = self.provisional_table_id();
        def.created_micros = self.now_micros();
        let name = def.name.clone();
        self.change_catalog(CatalogOp::CreateTable(def))?;
        self.table(&name)
    }

    /// Drop a table and delete its files.
    pub fn drop_table(&self, name: &str) -> Result<()> {
        let id = self.table(name)?.id;
        self.change_catalog(CatalogOp::DropTable { id })
    }

    /// Append a nullable column to a table (older versions read it as NULL).
    pub fn add_column(&self, name: &str, column: ColumnDef) -> Result<Arc<TableDef>> {
        let id = self.table(name)?.id;
        self.change_catalog(CatalogOp::AddColumn { id, column })?;
        self.table(name)
    }

    /// Declare an index on a table (see [`IndexDef`]: the key order serves it).
    pub fn create_index(&self, table: &str, index: IndexDef) -> Result<Arc<TableDef>> {
        let id = self.table(table)?.id;
        self.change_catalog(CatalogOp::CreateIndex { id, index })?;
        self.table(table)
    }

    /// Drop a declared index by name.
    pub fn drop_index(&self, name: &str) -> Result<()> {
        let catalog = self.catalog();
        let (t, _) = catalog
            .index(name)
            .ok_or_else(|| Error::NoSuchIndex(name.to_string()))?;
        self.change_catalog(CatalogOp::DropIndex {
            id: t.id,
            name: name.to_string(),
        })
    }

    /// Change a table's TTL and retention.
    pub fn set_table_options(&self, name: &str, options: TableOptions) -> Result<Arc<TableDef>> {
        let id = self.table(name)?.id;
        self.change_catalog(CatalogOp::SetOptions { id, options })?;
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

    /// Whether the engine accepts writes: `Ok` while open and healthy, else the
    /// error every write now gets (closed, or stopped after a WAL, manifest or
    /// background failure). Reads are served either way.
    pub fn health(&self) -> Result<()> {
        self.engine.check_open()
    }

    /// Stop background work, make the WAL durable and release the directory.
    pub fn close(self) -> Result<()> {
        self.engine.shutdown()
    }

    fn start_threads(&self) -> Result<()> {
        let mut threads = lock(&self.engine.threads);
        if self.engine.opts.background_threads {
            threads.push(spawn(&self.engine, "hindsight-flush", Engine::flush_loop)?);
            threads.push(spawn(
                &self.engine,
                "hindsight-compact",
                Engine::compact_loop,
            )?);
        }
        if let SyncPolicy::EveryMillis(ms) = self.engine.opts.sync {
            threads.push(spawn(&self.engine, "hindsight-wal-sync", move |i| {
                i.sync_loop(ms)
            })?);
        }
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Threads hold their own Arc<Engine>, so by now they have exited; make the
        // WAL durable for policies that did not sync every commit.
        if let Ok(w) = self.commit.get_mut()
            && let Some(wal) = &mut w.wal
        {
            let _ = wal.sync();
        }
    }
}

/// Start a background thread; a panic in it (a bug) stops writes with an error
/// instead of leaving writers waiting for work that will never happen.
fn spawn(
    inner: &Arc<Engine>,
    name: &str,
    f: impl FnOnce(&Engine) + Send + 'static,
) -> Result<JoinHandle<()>> {
    let inner = inner.clone();
    let thread_name = name.to_string();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&inner)));
            if r.is_err() {
                inner.stop_writes(&Error::Background(format!("{thread_name} thread panicked")));
            }
        })
        .map_err(|e| Error::io("<thread>", e))
}

impl Engine {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if let Some(e) = lock(&self.bg_error).as_ref() {
            return Err(Error::Background(e.clone()));
        }
        Ok(())
    }

    fn stop_writes(&self, e: &Error) {
        let mut g = lock(&self.bg_error);
        if g.is_none() {
            *g = Some(e.to_string());
        }
        self.progress.notify_all();
    }

    /// Replace the published view (under the state lock).
    fn publish_view(&self, f: impl FnOnce(&View) -> View) {
        let _st = lock(&self.book);
        let cur = self.view.load_full();
        self.view.store(Arc::new(f(&cur)));
    }

    fn alloc_file_number(&self) -> u64 {
        let mut st = lock(&self.book);
        let n = st.next_file;
        st.next_file += 1;
        n
    }

    fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        {
            let _st = lock(&self.book);
            self.progress.notify_all();
        }
        let threads: Vec<JoinHandle<()>> = lock(&self.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
        match &mut lock(&self.commit).wal {
            Some(wal) => wal.sync(),
            None => Ok(()),
        }
    }
}

impl Db {
    /// Stop background threads without consuming the handle (used by `Drop` of the
    /// last handle through `close`, and by servers on shutdown).
    pub fn shutdown(&self) -> Result<()> {
        self.engine.shutdown()
    }
}
