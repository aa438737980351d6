//! Recovery: rebuild the engine from the data directory, in four phases.
//!
//! 1. [`load_manifest`]: find the live manifest (through `CURRENT`) and its file
//!    list, recovery point and catalog snapshot; refuse to start an empty database
//!    over data files that no manifest names.
//! 2. [`open_ssts`]: open every SST the manifest names, checking each against its
//!    record.
//! 3. [`replay_wal`]: replay the WAL segments from the recovery point into a
//!    memtable, applying catalog changes as they come; a torn tail of the newest
//!    segment that holds frames is cut, anything else wrong is corruption.
//! 4. [`install`]: write what was replayed as level-0 SSTs, start a new WAL segment
//!    and a new manifest naming exactly the live files, then delete everything the
//!    new manifest does not name.
//!
//! In replicated mode phase 3 is skipped: the consensus log, not a WAL, holds what
//! the SSTs do not, and the consensus layer re-applies it from the applied position
//! the manifest records (fields 0x08 and 0x09). Each mode refuses the other's
//! directory: a cluster member's has `raft/`, a single node's has a WAL with frames.
//!
//! Invariant: after recovery every acknowledged batch is either in an SST the new
//! manifest names or (under a non-`Always` sync policy) lost with the unsynced tail,
//! never half applied; the engine starts with an empty WAL and an empty memtable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Options;
use super::background::write_memtable_sst;
use crate::batch;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::fileset::{FileSet, SstFile};
use crate::fsutil::{remove_if_exists, sync_dir};
use crate::manifest::{self, Manifest, ManifestEdit, ManifestState, manifest_name, sst_name};
use crate::memtable::{MemTable, Payload};
use crate::raftlog::AppliedPoint;
use crate::sst::SstReader;
use crate::types::TableId;
use crate::wal::{self, LogWriter, WAL_MAGIC, segment_name};

/// What recovery hands to `Db::open`.
pub(super) struct Recovered {
    pub(super) manifest: Manifest,
    pub(super) next_file: u64,
    pub(super) files: FileSet,
    pub(super) catalog: Arc<Catalog>,
    pub(super) mem: Arc<MemTable>,
    pub(super) wal: Option<LogWriter>,
    pub(super) last_seq: u64,
    pub(super) last_micros: i64,
    pub(super) applied: AppliedPoint,
}

/// Whether the engine keeps its own WAL or is fed by a consensus log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Single,
    Replicated,
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

/// Rebuild the engine state from the manifest, the SSTs and the WAL.
pub(super) fn recover(dir: &Path, opts: &Options, mode: Mode) -> Result<Recovered> {
    let listing = list_dir(dir)?;
    check_mode(dir, &listing, mode)?;
    let (manifest_number, state) = load_manifest(dir, &listing)?;
    let catalog = match &state.catalog {
        Some(json) => Catalog::from_json(json).map_err(|e| {
            Error::corruption(
                dir.join(manifest_name(manifest_number)),
                0,
                format!("bad catalog snapshot: {e}"),
            )
        })?,
        None => Catalog::default(),
    };
    let files = open_ssts(dir, &state, false)?;
    let replayed = match mode {
        Mode::Single => replay_wal(dir, &listing, manifest_number, &state, catalog)?,
        Mode::Replicated => Replayed {
            mem: Arc::new(MemTable::new(0, state.last_seq, Arc::new(catalog.clone()))),
            catalog,
            last_seq: state.last_seq,
            last_micros: state.last_micros,
        },
    };
    install(dir, opts, mode, &listing, &state, files, replayed)
}

/// Refuse a directory written in the other mode.
fn check_mode(dir: &Path, listing: &DirListing, mode: Mode) -> Result<()> {
    match mode {
        Mode::Single if dir.join("raft").exists() => Err(Error::InvalidArgument(format!(
            "{} belongs to a cluster member (it has raft/): start it with --node-id and --peers",
            dir.display()
        ))),
        Mode::Replicated if wal_has_frames(dir, listing) => Err(Error::InvalidArgument(format!(
            "{} holds a single-node write-ahead log: it cannot join a cluster as it is",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

fn wal_has_frames(dir: &Path, listing: &DirListing) -> bool {
    listing.wals.iter().any(|n| {
        std::fs::metadata(dir.join(segment_name(*n)))
            .map(|m| m.len() > wal::WAL_HEADER_LEN as u64)
            .unwrap_or(true)
    })
}

/// Phase 1: the live manifest's state, or an empty state for a new directory.
fn load_manifest(dir: &Path, listing: &DirListing) -> Result<(u64, ManifestState)> {
    if let Some(found) = manifest::recover(dir)? {
        return Ok(found);
    }
    if !listing.ssts.is_empty() || !listing.wals.is_empty() || !listing.manifests.is_empty() {
        return Err(Error::corruption(
            dir.join("CURRENT"),
            0,
            "data files exist but CURRENT is missing; refusing to start an empty database over them",
        ));
    }
    Ok((0, ManifestState::default()))
}

/// Phase 2: open every SST the manifest names (with `verify`, reading every block
/// to check its checksum).
pub(super) fn open_ssts(dir: &Path, state: &ManifestState, verify: bool) -> Result<FileSet> {
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
        if verify {
            reader.verify_all()?;
        }
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
    Ok(FileSet::default().apply(
        &ManifestEdit {
            added: state.files.values().cloned().collect(),
            ..ManifestEdit::default()
        },
        &opened,
    ))
}

/// What WAL replay produced.
struct Replayed {
    mem: Arc<MemTable>,
    catalog: Catalog,
    last_seq: u64,
    last_micros: i64,
}

/// Phase 3: replay the WAL from the manifest's recovery point.
fn replay_wal(
    dir: &Path,
    listing: &DirListing,
    manifest_number: u64,
    state: &ManifestState,
    mut catalog: Catalog,
) -> Result<Replayed> {
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
    let mem = Arc::new(MemTable::new(0, state.last_seq, Arc::new(catalog.clone())));
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
            mem.apply(&payload, &decoded, &catalog);
            last_seq = decoded.seq;
            last_micros = last_micros.max(decoded.commit_micros);
            replayed += 1;
            Ok(())
        })?;
    }
    Ok(Replayed {
        mem,
        catalog,
        last_seq,
        last_micros,
    })
}

/// Phase 4: persist the replayed batches as level-0 SSTs, start a new WAL segment
/// and a new manifest, and delete every file the new manifest does not name.
fn install(
    dir: &Path,
    opts: &Options,
    mode: Mode,
    listing: &DirListing,
    state: &ManifestState,
    mut files: FileSet,
    replayed: Replayed,
) -> Result<Recovered> {
    let Replayed {
        mem: replay_mem,
        catalog,
        last_seq,
        last_micros,
    } = replayed;
    let mut next_file = state.next_file.max(listing.max_number + 1).max(1);
    // Files of tables dropped after the manifest's catalog snapshot.
    let dropped: Vec<(TableId, u64)> = files
        .all_files()
        .filter(|f| catalog.table_by_id(f.meta.table).is_none())
        .map(|f| (f.meta.table, f.meta.number))
        .collect();
    files = files.apply(
        &ManifestEdit {
            deleted: dropped.clone(),
            ..ManifestEdit::default()
        },
        &[],
    );
    let added = persist_replayed(dir, opts, &replay_mem, &catalog, &mut next_file)?;
    let wal_number = next_file;
    let new_manifest_number = next_file + 1;
    next_file += 2;
    let wal = match mode {
        Mode::Single => Some(LogWriter::create_wal(dir, wal_number)?),
        Mode::Replicated => None,
    };
    files = files.apply(
        &ManifestEdit {
            added: added.iter().map(|f| f.meta.clone()).collect(),
            ..ManifestEdit::default()
        },
        &added,
    );
    let mut new_state = ManifestState {
        next_file,
        last_seq,
        log_number: wal_number,
        catalog: Some(catalog.to_json()?),
        last_micros,
        applied_log: state.applied_log,
        membership: state.membership.clone(),
        files: Default::default(),
    };
    for f in files.all_files() {
        new_state.files.insert(f.meta.number, f.meta.clone());
    }
    let manifest = Manifest::create(dir, new_manifest_number, &new_state)?;
    let applied = AppliedPoint {
        log: state.applied_log,
        membership: state.membership.as_deref().map(Arc::from),
    };
    remove_garbage(dir, listing, new_manifest_number, &new_state, &dropped)?;
    let catalog = Arc::new(catalog);
    Ok(Recovered {
        manifest,
        next_file,
        files,
        mem: Arc::new(
            MemTable::new(wal_number, last_seq, catalog.clone()).starting_at(applied.clone()),
        ),
        catalog,
        wal,
        last_seq,
        last_micros,
        applied,
    })
}

/// Write each table's replayed versions as a level-0 SST numbered from
/// `next_file`, then sync the directory.
fn persist_replayed(
    dir: &Path,
    opts: &Options,
    mem: &MemTable,
    catalog: &Catalog,
    next_file: &mut u64,
) -> Result<Vec<Arc<SstFile>>> {
    let mut added = Vec::new();
    for id in mem.table_ids() {
        let (Some(table), Some(tm)) = (catalog.table_by_id(id), mem.table(id)) else {
            continue;
        };
        let number = *next_file;
        *next_file += 1;
        let path = dir.join(sst_name(number));
        remove_if_exists(&path)?;
        added.push(write_memtable_sst(&path, number, table, &tm, mem, opts)?);
    }
    sync_dir(dir)?;
    Ok(added)
}

/// Delete every engine file the new manifest does not name (old WAL segments and
/// manifests, orphaned and dropped SSTs, temporaries), then sync the directory.
fn remove_garbage(
    dir: &Path,
    listing: &DirListing,
    manifest_number: u64,
    state: &ManifestState,
    dropped: &[(TableId, u64)],
) -> Result<()> {
    for n in &listing.wals {
        remove_if_exists(&dir.join(segment_name(*n)))?;
    }
    for n in &listing.manifests {
        if *n != manifest_number {
            remove_if_exists(&dir.join(manifest_name(*n)))?;
        }
    }
    for n in &listing.ssts {
        if !state.files.contains_key(n) {
            remove_if_exists(&dir.join(sst_name(*n)))?;
        }
    }
    for (_, n) in dropped {
        remove_if_exists(&dir.join(sst_name(*n)))?;
    }
    for t in &listing.temps {
        remove_if_exists(t)?;
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::WriteBatch;
    use crate::engine::Db;
    use crate::engine::testutil::id_value_table;
    use crate::types::Value;

    fn opts() -> Options {
        Options {
            background_threads: false,
            ..Options::default()
        }
    }

    /// A database with table `t` and `n` committed single-row batches (ids 0..n).
    fn populated(dir: &Path, n: i64, flush_after: Option<i64>) -> Db {
        let db = Db::open(dir, opts()).unwrap();
        let t = db.create_table(id_value_table("t")).unwrap();
        for i in 0..n {
            let mut b = WriteBatch::new();
            b.put(&t, &[Value::Int64(i), Value::Int64(i * 10)]).unwrap();
            db.write(b).unwrap();
            if flush_after == Some(i) {
                db.flush().unwrap();
            }
        }
        db
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_new_directory_recovers_to_an_empty_engine() {
        let dir = tempfile::tempdir().unwrap();
        let r = recover(dir.path(), &opts(), Mode::Single).unwrap();
        assert_eq!(r.last_seq, 0);
        assert_eq!(r.catalog.tables().count(), 0);
        assert_eq!(r.files.all_files().count(), 0);
    }

    #[test]
    fn data_files_without_current_are_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(sst_name(7)), b"not empty").unwrap();
        let err = recover(dir.path(), &opts(), Mode::Single).err().unwrap();
        assert!(err.is_corruption(), "{err}");
        assert!(dir.path().join(sst_name(7)).exists(), "nothing was deleted");
    }

    #[test]
    fn replay_continues_from_the_recovery_point_and_persists_the_tail_as_level_0() {
        let dir = tempfile::tempdir().unwrap();
        let db = populated(dir.path(), 10, Some(5));
        let seq = db.visible_seq();
        drop(db);
        let r = recover(dir.path(), &opts(), Mode::Single).unwrap();
        assert_eq!(r.last_seq, seq);
        let rows: u64 = r.files.all_files().map(|f| f.meta.rows).sum();
        assert_eq!(
            rows, 10,
            "6 flushed before the crash, 4 replayed into level 0"
        );
        assert!(r.files.all_files().all(|f| f.meta.level == 0));
        assert!(r.mem.is_empty(), "the engine starts on an empty memtable");
        let wals = names(dir.path())
            .iter()
            .filter(|n| n.ends_with(".wal"))
            .count();
        let manifests = names(dir.path())
            .iter()
            .filter(|n| n.starts_with("MANIFEST-"))
            .count();
        assert_eq!((wals, manifests), (1, 1), "{:?}", names(dir.path()));
    }

    #[test]
    fn a_missing_recovery_segment_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let db = populated(dir.path(), 3, None);
        drop(db);
        for n in names(dir.path()).iter().filter(|n| n.ends_with(".wal")) {
            std::fs::remove_file(dir.path().join(n)).unwrap();
        }
        let err = recover(dir.path(), &opts(), Mode::Single).err().unwrap();
        assert!(err.to_string().contains("WAL segment"), "{err}");
    }

    #[test]
    fn files_the_manifest_does_not_name_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        drop(populated(dir.path(), 3, Some(1)));
        std::fs::write(dir.path().join(sst_name(9_999)), b"orphan").unwrap();
        std::fs::write(dir.path().join("CURRENT.tmp"), b"half written").unwrap();
        let r = recover(dir.path(), &opts(), Mode::Single).unwrap();
        let left = names(dir.path());
        assert!(!left.contains(&sst_name(9_999)), "{left:?}");
        assert!(!left.iter().any(|n| n.ends_with(".tmp")), "{left:?}");
        assert!(
            r.next_file > 9_999,
            "file numbers never reuse one seen on disk"
        );
    }
}
