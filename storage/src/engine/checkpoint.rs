//! Checkpoints: the engine's flushed state as a directory of its own, and
//! installing one in place of the whole state (a cluster member's Raft snapshot).
//!
//! A checkpoint directory is a complete engine directory, as RocksDB's Checkpoint:
//! hard links of the live SSTs (immutable, so a link is a copy) plus a manifest of
//! one snapshot record and `CURRENT` naming it. It is built in `<dir>.tmp` and
//! renamed into place, so a checkpoint directory that exists is complete.
//!
//! Invariants:
//! - A checkpoint is the durable state at one instant: its files and its recovery
//!   point (sequence, commit time, catalog, applied log id, membership) are read
//!   together under `book`, so no flush or compaction is half in it, and the files
//!   are linked before `book` is released, so none is deleted under it.
//! - Installing reads every block of every file first (checksums; table and rows
//!   against the manifest), links the files in under fresh numbers, then switches
//!   `CURRENT` to a new manifest. A crash before the switch keeps the old state
//!   (the linked files are garbage the next start removes), one after it the new.
//!   Readers holding the old view keep their mapped files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::recovery::open_ssts;
use super::{Db, Engine, lock};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::fsutil::{remove_if_exists, sync_dir};
use crate::manifest::{self, FileMeta, Manifest, ManifestState, manifest_name, sst_name};
use crate::memtable::MemTable;
use crate::raftlog::AppliedPoint;
use crate::view::View;

/// What a checkpoint directory holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The consensus position its state reflects (replicated mode).
    pub applied: AppliedPoint,
    /// The last sequence in it.
    pub last_seq: u64,
    /// Every file in it (SSTs, the manifest, `CURRENT`) with its size in bytes: what
    /// a copy to another node ships.
    pub files: Vec<(String, u64)>,
}

impl CheckpointInfo {
    /// Total bytes of the files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, n)| n).sum()
    }
}

/// Describe the checkpoint in `dir` (a corruption error if it holds none).
pub fn read_checkpoint(dir: &Path) -> Result<CheckpointInfo> {
    let (number, state) = manifest::recover(dir)?
        .ok_or_else(|| Error::corruption(dir, 0, "not a checkpoint: no CURRENT"))?;
    let mut names: Vec<String> = state.files.keys().map(|n| sst_name(*n)).collect();
    names.push(manifest_name(number));
    names.push("CURRENT".to_string());
    let files = names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let len = std::fs::metadata(&path)
                .map_err(|e| Error::io(&path, e))?
                .len();
            Ok((name, len))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CheckpointInfo {
        applied: applied_of(&state),
        last_seq: state.last_seq,
        files,
    })
}

fn applied_of(state: &ManifestState) -> AppliedPoint {
    AppliedPoint {
        log: state.applied_log,
        membership: state.membership.as_deref().map(Arc::from),
    }
}

fn link(from: &Path, to: &Path) -> Result<()> {
    remove_if_exists(to)?;
    std::fs::hard_link(from, to).map_err(|e| Error::io(to, e))
}

impl Db {
    /// The consensus position the flushed files cover: what a checkpoint taken
    /// now would hold (replicated mode).
    pub fn durable_applied(&self) -> Option<crate::raftlog::LogId> {
        let view = self.engine.view.load();
        view.imm.last().unwrap_or(&view.mem).start_applied.log
    }

    /// Write the flushed state into the new directory `dir` as a checkpoint (the
    /// memtables are not in it: flush first for a checkpoint of everything).
    pub fn checkpoint(&self, dir: &Path) -> Result<CheckpointInfo> {
        if dir.exists() {
            return Err(Error::InvalidArgument(format!(
                "checkpoint directory {} already exists",
                dir.display()
            )));
        }
        let tmp = dir.with_extension("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let state = {
            let book = lock(&self.engine.book);
            let state = self.engine.durable_state(&book)?;
            for n in state.files.keys() {
                link(&self.engine.dir.join(sst_name(*n)), &tmp.join(sst_name(*n)))?;
            }
            state
        };
        Manifest::create(&tmp, state.next_file, &state)?;
        std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        read_checkpoint(dir)
    }

    /// Replace this engine's whole state with the checkpoint in `dir` (replicated
    /// mode: a snapshot from the leader). The checkpoint directory is left as it
    /// was (its files are linked, not moved).
    pub fn install_checkpoint(&self, dir: &Path) -> Result<CheckpointInfo> {
        if !self.is_replicated() {
            return Err(Error::InvalidArgument(
                "only a cluster member installs checkpoints".into(),
            ));
        }
        let (_, state) = manifest::recover(dir)?
            .ok_or_else(|| Error::corruption(dir, 0, "not a checkpoint: no CURRENT"))?;
        // Every block of every file is read before anything changes here.
        drop(open_ssts(dir, &state, true)?);
        let catalog = match &state.catalog {
            Some(json) => Catalog::from_json(json).map_err(|e| {
                Error::corruption(dir, 0, format!("bad catalog in checkpoint: {e}"))
            })?,
            None => Catalog::default(),
        };
        let r = self.engine.install_state(dir, &state, Arc::new(catalog));
        if let Err(e) = &r {
            self.engine.stop_writes(e);
        }
        r?;
        read_checkpoint(dir)
    }
}

impl Engine {
    /// Link the checkpoint's files in, switch to a manifest naming only them, and
    /// publish its state with empty memtables. Holds `commit` (no apply), the
    /// flush and compaction locks (no background job), then `book`.
    fn install_state(
        &self,
        src: &Path,
        state: &ManifestState,
        catalog: Arc<Catalog>,
    ) -> Result<()> {
        let mut w = lock(&self.commit);
        let _flush = lock(&self.flush_lock);
        let _compact = lock(&self.compact_lock);
        let mut book = lock(&self.book);
        let old = self.view.load_full();
        let mut files = BTreeMap::new();
        for meta in state.files.values() {
            let number = book.next_file;
            book.next_file += 1;
            link(
                &src.join(sst_name(meta.number)),
                &self.dir.join(sst_name(number)),
            )?;
            files.insert(
                number,
                FileMeta {
                    number,
                    ..meta.clone()
                },
            );
        }
        sync_dir(&self.dir)?;
        let (mem_number, manifest_number) = (book.next_file, book.next_file + 1);
        book.next_file += 2;
        let new = ManifestState {
            next_file: book.next_file,
            log_number: mem_number,
            catalog: state.catalog.clone(),
            files,
            ..state.clone()
        };
        let fileset = open_ssts(&self.dir, &new, false)?;
        let old_manifest = book.manifest.number;
        // The switch: CURRENT names the new manifest from here on.
        book.manifest = Manifest::create(&self.dir, manifest_number, &new)?;
        book.last_micros = state.last_micros;
        book.cursors.clear();
        let applied = applied_of(state);
        let mem = MemTable::new(mem_number, state.last_seq, catalog.clone());
        self.view.store(Arc::new(View {
            mem: Arc::new(mem.starting_at(applied.clone())),
            imm: Vec::new(),
            files: Arc::new(fileset),
            catalog: catalog.clone(),
            overlay: None,
        }));
        w.last_seq = state.last_seq;
        w.last_micros = state.last_micros;
        w.catalog = catalog;
        w.applied = applied;
        self.visible_seq.store(state.last_seq, Ordering::Release);
        drop(book);
        remove_if_exists(&self.dir.join(manifest_name(old_manifest)))?;
        for f in old.files.all_files() {
            remove_if_exists(f.reader.path())?;
        }
        self.progress.notify_all();
        Ok(())
    }
}
