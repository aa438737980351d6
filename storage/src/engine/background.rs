//! Background work: memtable flush, compaction execution, manifest rotation, and
//! the threads that run them (and the periodic WAL sync).
//!
//! Invariants: a new SST is complete and synced (with its directory) before the
//! manifest names it; a file leaves disk only after the manifest stops naming it;
//! a flush records the recovery point (the next memtable's start sequence, WAL
//! segment and catalog) in the same manifest edit that adds its files, so the WAL
//! segment it replaces can be deleted. Which files a compaction merges is decided
//! by [`crate::compaction::policy`] from metadata alone.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Db, Engine, FileBook, Options, lock};
use crate::compaction::{self, Horizons, Job, policy};
use crate::error::{Error, Result};
use crate::fileset::{NUM_LEVELS, SstFile};
use crate::fsutil::{remove_if_exists, sync_dir};
use crate::manifest::{FileMeta, Manifest, ManifestEdit, ManifestState, manifest_name, sst_name};
use crate::memtable::{MemTable, TableMem, entries_to_run};
use crate::sst::{SstReader, SstWriter};
use crate::types::{TableDef, TableId};
use crate::version_run::VersionRun;
use crate::view::View;
use crate::wal::segment_name;

impl Db {
    /// Seal the memtable and wait until every sealed memtable is flushed to level 0
    /// (in replicated mode the manifest then records the applied point).
    pub fn flush(&self) -> Result<()> {
        {
            let mut w = lock(&self.engine.commit);
            let mem = self.engine.view.load().mem.clone();
            // A replicated engine also seals an empty memtable when entries without
            // rows moved the applied point, so the manifest records it.
            if !mem.is_empty() || mem.start_applied.log != w.applied.log {
                self.engine.switch_memtable(&mut w)?;
            }
        }
        while self.engine.flush_one()? {}
        Ok(())
    }

    /// Flush, then merge every table's files into one sorted run at its deepest level.
    pub fn compact_now(&self) -> Result<()> {
        self.flush()?;
        let _c = lock(&self.engine.compact_lock);
        let view = self.engine.view.load_full();
        for table in view.catalog.tables() {
            if let Some(files) = view.files.table(table.id)
                && let Some(job) = policy::full(
                    &files.levels,
                    &self.engine.opts.level_config(),
                    table.options.retention_micros.is_some(),
                )
            {
                self.engine.run_job(table, &job)?;
            }
        }
        Ok(())
    }

    /// Run background-style compactions until no level is over its target.
    pub fn compact_pending(&self) -> Result<()> {
        while self.engine.compact_one()? {}
        Ok(())
    }
}

impl Engine {
    /// Log `edit` to the manifest and publish the file set it makes (with
    /// `opened` as the added files), changing the rest of the view with `view`.
    /// Called with `book` held, so edits reach the manifest in publication order. A
    /// manifest failure stops writes: the on-disk file list is no longer known.
    fn install_edit(
        &self,
        book: &mut FileBook,
        edit: &ManifestEdit,
        opened: &[Arc<SstFile>],
        view: impl FnOnce(View) -> View,
    ) -> Result<()> {
        if let Err(e) = book.manifest.append(edit) {
            self.stop_writes(&e);
            return Err(e);
        }
        if let Some(t) = edit.last_micros {
            book.last_micros = book.last_micros.max(t);
        }
        let cur = self.view.load_full();
        let files = Arc::new(cur.files.apply(edit, opened));
        self.view.store(Arc::new(view(View {
            files,
            ..(*cur).clone()
        })));
        self.maybe_rotate_manifest(book)
    }

    /// Remove a dropped table's files from the file set, then from disk.
    pub(super) fn drop_table_files(&self, id: TableId) -> Result<()> {
        let mut book = lock(&self.book);
        let Some(files) = self.view.load().files.table(id).cloned() else {
            return Ok(());
        };
        let doomed: Vec<Arc<SstFile>> = files.all().cloned().collect();
        let edit = ManifestEdit {
            deleted: doomed.iter().map(|f| (id, f.meta.number)).collect(),
            next_file: Some(book.next_file),
            ..ManifestEdit::default()
        };
        self.install_edit(&mut book, &edit, &[], |v| v)?;
        drop(book);
        for f in doomed {
            remove_if_exists(f.reader.path())?;
        }
        Ok(())
    }

    /// Flush the oldest sealed memtable; false if there was none.
    pub(super) fn flush_one(&self) -> Result<bool> {
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
            let number = self.alloc_file_number();
            let path = self.dir.join(sst_name(number));
            let f = write_memtable_sst(&path, number, table, &tm, &mem, &self.opts)?;
            self.counters
                .flush_bytes
                .fetch_add(f.meta.size, Ordering::Relaxed);
            files.push(f);
        }
        sync_dir(&self.dir)?;
        let mut book = lock(&self.book);
        // A table dropped while this flush ran: its new files are garbage.
        let (keep, gone): (Vec<_>, Vec<_>) = files.into_iter().partition(|f| {
            let cur = self.view.load();
            cur.catalog.table_by_id(f.meta.table).is_some()
        });
        let edit = ManifestEdit {
            next_file: Some(book.next_file),
            last_seq: Some(next.start_seq),
            log_number: Some(next.wal_number),
            catalog: Some(catalog.to_json()?),
            last_micros: mem.last_commit_micros(),
            applied_log: next.start_applied.log,
            membership: next.start_applied.membership.as_deref().map(<[u8]>::to_vec),
            added: keep.iter().map(|f| f.meta.clone()).collect(),
            deleted: Vec::new(),
        };
        self.install_edit(&mut book, &edit, &keep, |v| View {
            imm: v
                .imm
                .iter()
                .filter(|m| !Arc::ptr_eq(m, &mem))
                .cloned()
                .collect(),
            ..v
        })?;
        drop(book);
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        remove_if_exists(&self.dir.join(segment_name(mem.wal_number)))?;
        for f in gone {
            remove_if_exists(f.reader.path())?;
        }
        self.progress.notify_all();
        Ok(true)
    }

    /// Start a fresh manifest (one snapshot record) once the current one is large.
    fn maybe_rotate_manifest(&self, book: &mut FileBook) -> Result<()> {
        if book.manifest.size() < 64 << 20 {
            return Ok(());
        }
        let number = book.next_file;
        book.next_file += 1;
        let state = self.durable_state(book)?;
        let old = book.manifest.number;
        book.manifest = Manifest::create(&self.dir, number, &state)?;
        remove_if_exists(&self.dir.join(manifest_name(old)))
    }

    /// The state the manifest describes now (called with `book` held): the
    /// published files, and as recovery point the start of the oldest memtable not
    /// yet on disk.
    pub(super) fn durable_state(&self, book: &FileBook) -> Result<ManifestState> {
        let view = self.view.load_full();
        let oldest = view.imm.last().unwrap_or(&view.mem);
        let mut state = ManifestState {
            next_file: book.next_file,
            last_seq: oldest.start_seq,
            log_number: oldest.wal_number,
            catalog: Some(oldest.start_catalog.to_json()?),
            last_micros: book.last_micros,
            applied_log: oldest.start_applied.log,
            membership: oldest
                .start_applied
                .membership
                .as_deref()
                .map(<[u8]>::to_vec),
            files: Default::default(),
        };
        for f in view.files.all_files() {
            state.files.insert(f.meta.number, f.meta.clone());
        }
        Ok(state)
    }

    /// Wait up to `ms` for background progress (or shutdown).
    fn idle(&self, ms: u64) {
        let book = lock(&self.book);
        let _ = self
            .progress
            .wait_timeout(book, Duration::from_millis(ms))
            .unwrap_or_else(|e| e.into_inner());
    }

    pub(super) fn flush_loop(&self) {
        while !self.closed.load(Ordering::Acquire) {
            if self.view.load().imm.is_empty() {
                self.idle(200);
                continue;
            }
            if let Err(e) = self.flush_one() {
                self.stop_writes(&e);
                return;
            }
        }
    }

    pub(super) fn compact_loop(&self) {
        while !self.closed.load(Ordering::Acquire) {
            match self.compact_one() {
                Ok(true) => {}
                Ok(false) => self.idle(200),
                Err(e) => {
                    self.stop_writes(&e);
                    return;
                }
            }
        }
    }

    pub(super) fn sync_loop(&self, ms: u64) {
        while !self.closed.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(ms.max(1)));
            if let Some((path, f)) = lock(&self.sync_file).as_ref()
                && let Err(e) = f.sync_data()
            {
                self.stop_writes(&Error::io(path, e));
                return;
            }
            self.counters.wal_syncs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Run the most urgent compaction the policy picks across tables, if any; false
    /// if none is due.
    pub(super) fn compact_one(&self) -> Result<bool> {
        let _c = lock(&self.compact_lock);
        let view = self.view.load_full();
        let cfg = self.opts.level_config();
        let mut best: Option<(Arc<TableDef>, Job<Arc<SstFile>>)> = None;
        {
            let mut book = lock(&self.book);
            for (id, files) in &view.files.tables {
                let Some(table) = view.catalog.table_by_id(*id) else {
                    continue;
                };
                let cursor = book
                    .cursors
                    .entry(*id)
                    .or_insert_with(|| vec![Vec::new(); NUM_LEVELS]);
                if let Some(job) = policy::pick(&files.levels, &cfg, cursor)
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

    /// Execute a compaction job: merge its inputs through the retention filter into
    /// new files of the output level, install them in place of the inputs, then
    /// delete the inputs.
    pub(super) fn run_job(&self, table: &TableDef, job: &Job<Arc<SstFile>>) -> Result<()> {
        let horizons = Horizons::of(table, self.opts.clock.now());
        let times = merged_commit_times(job)?;
        let mut out = OutputFiles {
            engine: self,
            table,
            level: job.output_level,
            commit_times: &times,
            current: None,
            done: Vec::new(),
        };
        let dropped = match compaction::run(job, table, horizons, 65536, |v| out.add(&v)) {
            Ok(d) => d,
            Err(e) => {
                out.abandon();
                return Err(e);
            }
        };
        let outputs = out.finish()?;
        sync_dir(&self.dir)?;
        let inputs: Vec<Arc<SstFile>> = job.input_files().cloned().collect();
        let mut book = lock(&self.book);
        let edit = ManifestEdit {
            next_file: Some(book.next_file),
            added: outputs.iter().map(|f| f.meta.clone()).collect(),
            deleted: inputs.iter().map(|f| (table.id, f.meta.number)).collect(),
            ..ManifestEdit::default()
        };
        self.install_edit(&mut book, &edit, &outputs, |v| v)?;
        drop(book);
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
        self.progress.notify_all();
        Ok(())
    }
}

/// The files a compaction writes: a new file is started once the current one
/// reaches the target size, at an entity boundary (an entity's versions never span
/// two files of one level).
struct OutputFiles<'a> {
    engine: &'a Engine,
    table: &'a TableDef,
    level: usize,
    /// (sequence, commit time) of every input, sorted by sequence.
    commit_times: &'a [(u64, i64)],
    current: Option<(SstWriter, u64, PathBuf)>,
    done: Vec<Arc<SstFile>>,
}

impl OutputFiles<'_> {
    fn add(&mut self, v: &VersionRun) -> Result<()> {
        let Some(first_key) = (!v.is_empty()).then(|| v.keys.value(0)) else {
            return Ok(());
        };
        let target = self.engine.opts.target_file_bytes.max(1);
        if let Some((w, ..)) = &self.current
            && w.written() >= target
            && w.last_key() != Some(first_key)
        {
            self.close_current()?;
        }
        let w = match &mut self.current {
            Some((w, ..)) => w,
            None => {
                let number = self.engine.alloc_file_number();
                let path = self.engine.dir.join(sst_name(number));
                let w = SstWriter::create(
                    &path,
                    self.table.id,
                    self.table.feature_types(),
                    self.engine.opts.writer_options(),
                )?;
                &mut self.current.insert((w, number, path)).0
            }
        };
        w.add(v)
    }

    fn close_current(&mut self) -> Result<()> {
        let Some((w, number, path)) = self.current.take() else {
            return Ok(());
        };
        let times = self.commit_times;
        let commit_time = |s: u64| -> Option<i64> {
            times
                .binary_search_by_key(&s, |&(seq, _)| seq)
                .ok()
                .and_then(|i| times.get(i))
                .map(|&(_, t)| t)
        };
        let (meta, size) = w.finish(&commit_time)?;
        self.done
            .push(open_file(&path, number, self.level as u8, &meta, size)?);
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<Arc<SstFile>>> {
        if self.current.as_ref().is_some_and(|(w, ..)| w.rows() > 0) {
            self.close_current()?;
        } else if let Some((w, ..)) = self.current.take() {
            w.abandon();
        }
        Ok(self.done)
    }

    /// Remove everything written so far (the compaction failed).
    fn abandon(mut self) {
        if let Some((w, ..)) = self.current.take() {
            w.abandon();
        }
        for f in &self.done {
            let _ = remove_if_exists(f.reader.path());
        }
    }
}

/// Write one table's part of a memtable as a level-0 SST at `path` and open it.
/// The file is complete and synced when this returns, but not yet named by the
/// manifest.
pub(super) fn write_memtable_sst(
    path: &Path,
    number: u64,
    table: &TableDef,
    tm: &TableMem,
    mem: &MemTable,
    opts: &Options,
) -> Result<Arc<SstFile>> {
    let types = table.feature_types();
    let all = vec![true; types.len()];
    let mut writer = SstWriter::create(path, table.id, types.clone(), opts.writer_options())?;
    let mut lower = Bound::Unbounded;
    let res = (|| -> Result<()> {
        loop {
            let entries = tm.entries(&lower, None, 65536);
            let Some(last) = entries.last() else { break };
            lower = Bound::Excluded(last.clone());
            let run = entries_to_run(&entries, &types, &all)
                .map_err(|e| Error::corruption(path, e.offset as u64, e.detail))?;
            writer.add(&run)?;
        }
        Ok(())
    })();
    if let Err(e) = res {
        writer.abandon();
        return Err(e);
    }
    let (meta, size) = writer.finish(&|s| mem.commit_time(s))?;
    open_file(path, number, 0, &meta, size)
}

/// Open a just-written SST with its manifest record.
pub(super) fn open_file(
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
            bounds: meta.bounds.clone(),
        },
        reader,
    }))
}

/// The union of the commit-time tables of a job's inputs.
fn merged_commit_times(job: &Job<Arc<SstFile>>) -> Result<Vec<(u64, i64)>> {
    let mut all = Vec::new();
    for f in job.input_files() {
        all.extend_from_slice(f.reader.commit_times()?);
    }
    all.sort_unstable();
    all.dedup_by_key(|&mut (s, _)| s);
    Ok(all)
}
