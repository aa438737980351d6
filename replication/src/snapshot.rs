//! Raft snapshots as engine checkpoints: building, keeping, receiving them.
//!
//! A snapshot is the engine's flushed state (`Db::checkpoint`): hard links of the
//! SSTs and a one-record manifest in `<data>/snapshots/<id>/`, where `<id>` is the
//! applied log id it covers (`term-node-index`). Only the newest is kept; older
//! ones are deleted once a newer one is built or installed.
//!
//! Receiving stages the leader's files in `snapshots/recv-<id>.tmp/`: each file
//! arrives in order in chunks, is fsynced with its directory, and the staging
//! directory is renamed to `snapshots/<id>/` before openraft installs it, so a
//! snapshot directory without `.tmp` is always complete. Staging directories left
//! by a crash are removed at start.
//!
//! Invariants: the current snapshot only moves forward (a build that races an
//! install never replaces a newer one); file and id names from the network are
//! plain names (no path separators), checked before any file is touched.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use hindsight_storage::{CheckpointInfo, Db, raftlog::LogId, read_checkpoint};
use openraft::{SnapshotMeta, StoredMembership};

use crate::error::{ReplError, ReplResult};
use crate::types::{NodeId, RaftLogId, log_id_in, stored_membership_in};

/// openraft's snapshot data: the directory of a complete checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotDir {
    pub dir: PathBuf,
}

pub type Meta = SnapshotMeta<NodeId, crate::types::NodeInfo>;

/// The snapshot this node holds now.
#[derive(Clone, Debug)]
struct Current {
    meta: Meta,
    dir: PathBuf,
}

/// `<data>/snapshots/`: the newest snapshot and the staging of received ones.
pub struct SnapshotStore {
    root: PathBuf,
    current: Mutex<Option<Current>>,
}

impl std::fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStore")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn io(context: impl std::fmt::Display, path: &Path) -> impl FnOnce(std::io::Error) -> ReplError {
    let context = format!("{context} {}", path.display());
    move |e| ReplError::io(context, e)
}

/// The directory name of a snapshot covering `id`.
fn snapshot_id(id: &LogId) -> String {
    format!("{}-{}-{}", id.term, id.node, id.index)
}

/// A name from the network that may become a file name: no separators, no dots
/// at the start, nothing but ASCII letters, digits, `-`, `_` and `.`.
pub(crate) fn check_name(name: &str) -> ReplResult<&str> {
    let plain = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    match plain {
        true => Ok(name),
        false => Err(ReplError::Corrupt(format!(
            "{name:?} is not a plain file name"
        ))),
    }
}

/// The openraft metadata of a checkpoint.
fn meta_of(id: String, info: &CheckpointInfo) -> ReplResult<Meta> {
    let last_membership = match &info.applied.membership {
        Some(bytes) => stored_membership_in(bytes)?,
        None => StoredMembership::default(),
    };
    Ok(SnapshotMeta {
        last_log_id: info.applied.log.as_ref().map(log_id_in),
        last_membership,
        snapshot_id: id,
    })
}

fn remove_dir(path: &Path) -> ReplResult<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ReplError::io(format!("removing {}", path.display()), e)),
    }
}

fn sync_dir(path: &Path) -> ReplResult<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing", path))
}

impl SnapshotStore {
    /// Open `<data_dir>/snapshots/`: drop staging left by a crash, keep the newest
    /// complete snapshot the engine has reached (`applied`: its applied index). A
    /// received snapshot newer than that was not installed before a crash; it is
    /// dropped, so openraft asks the leader for it again rather than believing it
    /// already holds it.
    pub fn open(data_dir: &Path, applied: Option<u64>) -> ReplResult<Arc<SnapshotStore>> {
        let root = data_dir.join("snapshots");
        std::fs::create_dir_all(&root).map_err(io("creating", &root))?;
        let store = SnapshotStore {
            root,
            current: Mutex::new(None),
        };
        let mut found: Vec<Current> = Vec::new();
        for (name, path) in store.entries()? {
            if name.ends_with(".tmp") {
                remove_dir(&path)?;
                continue;
            }
            match read_checkpoint(&path).map_err(ReplError::from) {
                Ok(info) if info.applied.log.map(|l| l.index) > applied => {
                    tracing::info!(dir = %path.display(), "removing a snapshot received but not installed");
                    remove_dir(&path)?;
                }
                Ok(info) => found.push(Current {
                    meta: meta_of(name, &info)?,
                    dir: path,
                }),
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "removing an unreadable snapshot");
                    remove_dir(&path)?;
                }
            }
        }
        found.sort_by_key(|c| c.meta.last_log_id);
        if let Some(newest) = found.pop() {
            *store.lock() = Some(newest);
        }
        store.remove_all_but_current()?;
        Ok(Arc::new(store))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Current>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entries(&self) -> ReplResult<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.root).map_err(io("listing", &self.root))? {
            let e = e.map_err(io("listing", &self.root))?;
            if let Some(name) = e.file_name().to_str() {
                out.push((name.to_string(), e.path()));
            }
        }
        Ok(out)
    }

    fn remove_all_but_current(&self) -> ReplResult<()> {
        let keep = self.lock().as_ref().map(|c| c.dir.clone());
        for (name, path) in self.entries()? {
            if Some(&path) != keep.as_ref() && !name.starts_with("recv-") {
                remove_dir(&path)?;
            }
        }
        Ok(())
    }

    /// The newest snapshot's metadata and directory.
    pub fn current(&self) -> Option<(Meta, SnapshotDir)> {
        self.lock()
            .as_ref()
            .map(|c| (c.meta.clone(), SnapshotDir { dir: c.dir.clone() }))
    }

    /// The log id the newest snapshot covers.
    pub fn last_log_id(&self) -> Option<RaftLogId> {
        self.lock().as_ref().and_then(|c| c.meta.last_log_id)
    }

    /// Make `meta` at `dir` the current snapshot unless a newer one is; then
    /// delete the others.
    fn advance(&self, meta: Meta, dir: PathBuf) -> ReplResult<()> {
        {
            let mut cur = self.lock();
            if cur
                .as_ref()
                .is_some_and(|c| c.meta.last_log_id >= meta.last_log_id && c.dir != dir)
            {
                return Ok(());
            }
            *cur = Some(Current { meta, dir });
        }
        self.remove_all_but_current()
    }

    /// Build a snapshot of `db`'s flushed state (blocking). When nothing applied
    /// is flushed yet, the memtable is flushed first.
    pub fn build(&self, db: &Db) -> ReplResult<(Meta, SnapshotDir)> {
        if db.durable_applied().is_none() {
            db.flush()?;
        }
        let point = db.durable_applied().ok_or_else(|| {
            ReplError::Raft("nothing is applied yet: there is no state to snapshot".into())
        })?;
        let id = snapshot_id(&point);
        let dir = self.root.join(&id);
        let info = match read_checkpoint(&dir) {
            Ok(info) => info,
            Err(_) => {
                remove_dir(&dir)?;
                db.checkpoint(&dir)?
            }
        };
        let meta = meta_of(id, &info)?;
        tracing::info!(
            snapshot = %meta.snapshot_id,
            files = info.files.len(),
            bytes = info.bytes(),
            "raft snapshot built"
        );
        self.advance(meta.clone(), dir.clone())?;
        Ok((meta, SnapshotDir { dir }))
    }

    /// Record that the snapshot in `dir` was installed into the engine.
    pub fn installed(&self, meta: &Meta, dir: &SnapshotDir) -> ReplResult<()> {
        self.advance(meta.clone(), dir.dir.clone())
    }

    fn staging(&self, id: &str) -> ReplResult<PathBuf> {
        Ok(self.root.join(format!("recv-{}.tmp", check_name(id)?)))
    }

    /// Start receiving snapshot `id` with these files: an empty staging directory.
    pub fn begin_receive(&self, id: &str, files: &[(String, u64)]) -> ReplResult<()> {
        for (name, _) in files {
            check_name(name)?;
        }
        // Only one transfer at a time is useful: older staging goes.
        for (name, path) in self.entries()? {
            if name.starts_with("recv-") {
                remove_dir(&path)?;
            }
        }
        let dir = self.staging(id)?;
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))
    }

    /// Append one chunk at `offset` of file `name` (chunks arrive in order).
    pub fn write_chunk(&self, id: &str, name: &str, offset: u64, bytes: &[u8]) -> ReplResult<()> {
        let path = self.staging(id)?.join(check_name(name)?);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        let len = f.metadata().map_err(io("reading", &path))?.len();
        if len != offset {
            return Err(ReplError::Corrupt(format!(
                "chunk of {name} at offset {offset}, but {len} bytes are staged"
            )));
        }
        f.write_all(bytes).map_err(io("writing", &path))
    }

    /// Finish receiving: check sizes, make every file durable, and move the
    /// staging directory to its final name. Returns the snapshot directory.
    pub fn finish_receive(&self, id: &str, files: &[(String, u64)]) -> ReplResult<SnapshotDir> {
        let staged = self.staging(id)?;
        for (name, len) in files {
            let path = staged.join(check_name(name)?);
            let f = std::fs::File::open(&path).map_err(io("opening", &path))?;
            let got = f.metadata().map_err(io("reading", &path))?.len();
            if got != *len {
                return Err(ReplError::Corrupt(format!(
                    "{name}: {got} bytes received, {len} sent"
                )));
            }
            f.sync_all().map_err(io("syncing", &path))?;
        }
        sync_dir(&staged)?;
        let dir = self.root.join(id);
        remove_dir(&dir)?;
        std::fs::rename(&staged, &dir).map_err(io("renaming", &staged))?;
        sync_dir(&self.root)?;
        Ok(SnapshotDir { dir })
    }
}

/// The files of the snapshot in `dir`, in the order they are sent.
pub fn snapshot_files(dir: &SnapshotDir) -> ReplResult<Vec<(String, u64)>> {
    Ok(read_checkpoint(&dir.dir)?.files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_network_must_be_plain() {
        for ok in ["000012.sst", "MANIFEST-000003", "CURRENT", "3-1-420"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "x\0y", "/etc/passwd"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    /// A data dir whose engine applied up to index 5 and holds a checkpoint of it
    /// in `snapshots/1-1-5`.
    fn dir_with_snapshot_at_5() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let db = Db::open_replicated(d.path(), hindsight_storage::Options::default()).unwrap();
        let id = LogId {
            term: 1,
            node: 1,
            index: 5,
        };
        db.apply_entry(id, &hindsight_storage::raftlog::EntryBody::Blank)
            .unwrap();
        db.flush().unwrap();
        std::fs::create_dir_all(d.path().join("snapshots")).unwrap();
        db.checkpoint(&d.path().join("snapshots/1-1-5")).unwrap();
        d
    }

    #[test]
    fn a_snapshot_the_engine_has_not_reached_is_dropped_at_open() {
        let d = dir_with_snapshot_at_5();
        let store = SnapshotStore::open(d.path(), Some(5)).unwrap();
        let (meta, dir) = store.current().unwrap();
        assert_eq!(meta.last_log_id.map(|l| l.index), Some(5));
        assert_eq!(meta.snapshot_id, "1-1-5");
        assert!(dir.dir.exists());
        drop(store);
        // Received but not installed before a crash: the engine is at 3.
        let store = SnapshotStore::open(d.path(), Some(3)).unwrap();
        assert!(store.current().is_none());
        assert!(!d.path().join("snapshots/1-1-5").exists());
    }

    #[test]
    fn staging_checks_offsets_and_sizes_and_renames_when_complete() {
        let d = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(d.path(), None).unwrap();
        let files = vec![("a.sst".to_string(), 6u64), ("CURRENT".to_string(), 0)];
        store.begin_receive("1-1-9", &files).unwrap();
        store.write_chunk("1-1-9", "a.sst", 0, b"abc").unwrap();
        assert!(store.write_chunk("1-1-9", "a.sst", 0, b"abc").is_err());
        assert!(store.finish_receive("1-1-9", &files).is_err(), "short file");
        store.write_chunk("1-1-9", "a.sst", 3, b"def").unwrap();
        store.write_chunk("1-1-9", "CURRENT", 0, b"").unwrap();
        let dir = store.finish_receive("1-1-9", &files).unwrap();
        assert_eq!(std::fs::read(dir.dir.join("a.sst")).unwrap(), b"abcdef");
        assert!(!d.path().join("snapshots/recv-1-1-9.tmp").exists());
        // Not a checkpoint: a restart removes it rather than offering it.
        drop(store);
        let store = SnapshotStore::open(d.path(), None).unwrap();
        assert!(store.current().is_none());
        assert!(!dir.dir.exists());
        assert!(store.begin_receive("1-1-9", &[("../x".into(), 1)]).is_err());
    }
}
