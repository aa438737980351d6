//! The manifest: an append-only log of version edits, named by the `CURRENT` file.
//!
//! A version edit adds and removes SST files and moves the recovery point forward
//! (the oldest WAL segment still needed, the last flushed sequence, the next file
//! number, and a snapshot of the catalog as of that WAL position). The manifest uses
//! the WAL's frame format with its own header magic (FORMAT.md).
//!
//! Invariants: an SST is fsynced (and its directory entry made durable) before an
//! edit names it; files are deleted only after the edit removing them is durable;
//! `CURRENT` is replaced atomically (write temp, fsync, rename, fsync directory) and
//! only names a manifest whose first record, a full snapshot, is already durable.

use std::collections::BTreeMap;
use std::path::Path;

use crate::bounds::Bounds;
use crate::codec::{Put, Reader};
use crate::error::{DecodeResult, Error, Result};
use crate::fsutil::write_atomic;
use crate::raftlog::LogId;
use crate::types::TableId;
use crate::wal::{LogWriter, encode_frame, replay_log};

pub(crate) const MANIFEST_MAGIC: [u8; 8] = *b"HSIGHTM1";
const CURRENT: &str = "CURRENT";

const T_NEXT_FILE: u8 = 1;
const T_LAST_SEQ: u8 = 2;
const T_LOG_NUMBER: u8 = 3;
const T_ADD_FILE: u8 = 4;
const T_DELETE_FILE: u8 = 5;
const T_CATALOG: u8 = 6;
const T_LAST_MICROS: u8 = 7;
const T_APPLIED_LOG: u8 = 8;
const T_MEMBERSHIP: u8 = 9;

/// File name of manifest `number`.
pub(crate) fn manifest_name(number: u64) -> String {
    format!("MANIFEST-{number:06}")
}

/// File name of SST `number`.
pub(crate) fn sst_name(number: u64) -> String {
    format!("{number:06}.sst")
}

/// What the manifest records about one SST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileMeta {
    pub number: u64,
    pub table: TableId,
    pub level: u8,
    pub size: u64,
    pub rows: u64,
    pub bounds: Bounds,
}

impl FileMeta {
    fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.number);
        out.put_u32(self.table.0);
        out.put_u8(self.level);
        out.put_u64(self.size);
        out.put_u64(self.rows);
        self.bounds.encode(out);
    }

    fn decode(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(FileMeta {
            number: r.u64("file number")?,
            table: TableId(r.u32("file table")?),
            level: r.u8("file level")?,
            size: r.u64("file size")?,
            rows: r.u64("file rows")?,
            bounds: Bounds::decode(r)?,
        })
    }
}

/// One atomic change to the set of live files and the recovery point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ManifestEdit {
    pub next_file: Option<u64>,
    pub last_seq: Option<u64>,
    pub log_number: Option<u64>,
    pub catalog: Option<Vec<u8>>,
    /// Commit time of the last flushed batch (commit times never go backwards).
    pub last_micros: Option<i64>,
    /// Replicated mode: the consensus log id applied as of the recovery point.
    pub applied_log: Option<LogId>,
    /// Replicated mode: the membership applied as of the recovery point (opaque).
    pub membership: Option<Vec<u8>>,
    pub added: Vec<FileMeta>,
    pub deleted: Vec<(TableId, u64)>,
}

impl ManifestEdit {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(v) = self.next_file {
            out.put_u8(T_NEXT_FILE);
            out.put_u64(v);
        }
        if let Some(v) = self.last_seq {
            out.put_u8(T_LAST_SEQ);
            out.put_u64(v);
        }
        if let Some(v) = self.log_number {
            out.put_u8(T_LOG_NUMBER);
            out.put_u64(v);
        }
        if let Some(c) = &self.catalog {
            out.put_u8(T_CATALOG);
            out.put_bytes_prefixed(c);
        }
        if let Some(v) = self.last_micros {
            out.put_u8(T_LAST_MICROS);
            out.put_i64(v);
        }
        if let Some(id) = self.applied_log {
            out.put_u8(T_APPLIED_LOG);
            out.put_u64(id.term);
            out.put_u64(id.node);
            out.put_u64(id.index);
        }
        if let Some(m) = &self.membership {
            out.put_u8(T_MEMBERSHIP);
            out.put_bytes_prefixed(m);
        }
        for f in &self.added {
            out.put_u8(T_ADD_FILE);
            f.encode(&mut out);
        }
        for (t, n) in &self.deleted {
            out.put_u8(T_DELETE_FILE);
            out.put_u32(t.0);
            out.put_u64(*n);
        }
        out
    }

    pub(crate) fn decode(buf: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(buf);
        let mut e = ManifestEdit::default();
        while !r.is_empty() {
            match r.u8("edit tag")? {
                T_NEXT_FILE => e.next_file = Some(r.u64("next file")?),
                T_LAST_SEQ => e.last_seq = Some(r.u64("last seq")?),
                T_LOG_NUMBER => e.log_number = Some(r.u64("log number")?),
                T_CATALOG => e.catalog = Some(r.bytes_prefixed("catalog")?.to_vec()),
                T_LAST_MICROS => e.last_micros = Some(r.i64("last commit time")?),
                T_APPLIED_LOG => {
                    e.applied_log = Some(LogId {
                        term: r.u64("applied term")?,
                        node: r.u64("applied node")?,
                        index: r.u64("applied index")?,
                    })
                }
                T_MEMBERSHIP => e.membership = Some(r.bytes_prefixed("membership")?.to_vec()),
                T_ADD_FILE => e.added.push(FileMeta::decode(&mut r)?),
                T_DELETE_FILE => {
                    let t = TableId(r.u32("deleted table")?);
                    e.deleted.push((t, r.u64("deleted file")?));
                }
                other => return Err(r.err(format!("unknown edit tag {other}"))),
            }
        }
        Ok(e)
    }
}

/// The state a manifest describes once all its edits are applied.
#[derive(Clone, Debug, Default)]
pub(crate) struct ManifestState {
    pub next_file: u64,
    pub last_seq: u64,
    pub log_number: u64,
    pub catalog: Option<Vec<u8>>,
    pub last_micros: i64,
    pub applied_log: Option<LogId>,
    pub membership: Option<Vec<u8>>,
    /// Live files by number.
    pub files: BTreeMap<u64, FileMeta>,
}

impl ManifestState {
    pub(crate) fn apply(&mut self, e: &ManifestEdit) {
        if let Some(v) = e.next_file {
            self.next_file = self.next_file.max(v);
        }
        if let Some(v) = e.last_seq {
            self.last_seq = self.last_seq.max(v);
        }
        if let Some(v) = e.log_number {
            self.log_number = self.log_number.max(v);
        }
        if let Some(c) = &e.catalog {
            self.catalog = Some(c.clone());
        }
        if let Some(v) = e.last_micros {
            self.last_micros = self.last_micros.max(v);
        }
        if let Some(id) = e.applied_log {
            self.applied_log = self.applied_log.max(Some(id));
        }
        if let Some(m) = &e.membership {
            self.membership = Some(m.clone());
        }
        for (_, n) in &e.deleted {
            self.files.remove(n);
        }
        for f in &e.added {
            self.files.insert(f.number, f.clone());
        }
    }

    /// A single edit that recreates this state.
    pub(crate) fn snapshot_edit(&self) -> ManifestEdit {
        ManifestEdit {
            next_file: Some(self.next_file),
            last_seq: Some(self.last_seq),
            log_number: Some(self.log_number),
            catalog: self.catalog.clone(),
            last_micros: Some(self.last_micros),
            applied_log: self.applied_log,
            membership: self.membership.clone(),
            added: self.files.values().cloned().collect(),
            deleted: Vec::new(),
        }
    }
}

/// The manifest being appended to.
pub(crate) struct Manifest {
    log: LogWriter,
    pub(crate) number: u64,
}

impl Manifest {
    /// Write a new manifest holding `state` as its first record and point `CURRENT`
    /// at it. The previous manifest (if any) is deleted afterwards by the caller.
    pub(crate) fn create(dir: &Path, number: u64, state: &ManifestState) -> Result<Manifest> {
        let path = dir.join(manifest_name(number));
        crate::fsutil::remove_if_exists(&path)?;
        let mut log = LogWriter::create(&path, MANIFEST_MAGIC)?;
        let mut frame = Vec::new();
        encode_frame(&state.snapshot_edit().encode(), &mut frame);
        log.append(&frame)?;
        log.sync()?;
        write_atomic(
            &dir.join(CURRENT),
            format!("{}\n", manifest_name(number)).as_bytes(),
        )?;
        Ok(Manifest { log, number })
    }

    /// Append an edit and make it durable.
    pub(crate) fn append(&mut self, edit: &ManifestEdit) -> Result<()> {
        let mut frame = Vec::new();
        encode_frame(&edit.encode(), &mut frame);
        self.log.append(&frame)?;
        self.log.sync()
    }

    /// Bytes in the manifest so far.
    pub(crate) fn size(&self) -> u64 {
        self.log.size
    }
}

/// Read `CURRENT` and replay the manifest it names. `Ok(None)`: no database here.
pub(crate) fn recover(dir: &Path) -> Result<Option<(u64, ManifestState)>> {
    let current = dir.join(CURRENT);
    let text = match std::fs::read(&current) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&current, e)),
    };
    let name = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.strip_suffix('\n'))
        .filter(|n| n.starts_with("MANIFEST-"))
        .ok_or_else(|| Error::corruption(&current, 0, "CURRENT does not name a manifest"))?;
    let number: u64 = name
        .trim_start_matches("MANIFEST-")
        .parse()
        .map_err(|_| Error::corruption(&current, 0, format!("bad manifest name {name:?}")))?;
    let path = dir.join(name);
    if !path.exists() {
        return Err(Error::corruption(
            &current,
            0,
            format!("CURRENT names {name}, which does not exist"),
        ));
    }
    let mut state = ManifestState::default();
    let mut records = 0u64;
    replay_log(&path, MANIFEST_MAGIC, true, |payload, offset| {
        let edit = ManifestEdit::decode(payload).map_err(|e| e.at(&path, offset))?;
        state.apply(&edit);
        records += 1;
        Ok(())
    })?;
    if records == 0 {
        return Err(Error::corruption(
            &path,
            0,
            "manifest holds no snapshot record",
        ));
    }
    Ok(Some((number, state)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(n: u64) -> FileMeta {
        FileMeta {
            number: n,
            table: TableId(1),
            level: 0,
            size: 100,
            rows: 10,
            bounds: Bounds {
                min_et: 1,
                max_et: 2,
                min_seq: 3,
                max_seq: 4,
                min_key: vec![1],
                max_key: vec![9],
            },
        }
    }

    #[test]
    fn edits_round_trip() {
        let e = ManifestEdit {
            next_file: Some(9),
            last_seq: Some(100),
            log_number: Some(7),
            catalog: Some(b"{}".to_vec()),
            last_micros: Some(-5),
            added: vec![file(3), file(4)],
            deleted: vec![(TableId(1), 2)],
            applied_log: Some(LogId {
                term: 3,
                node: 2,
                index: 41,
            }),
            membership: Some(b"{\"voters\":[1,2,3]}".to_vec()),
        };
        assert_eq!(ManifestEdit::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn manifest_recovers_the_applied_state() {
        let d = tempfile::tempdir().unwrap();
        let mut st = ManifestState {
            next_file: 5,
            ..Default::default()
        };
        let mut m = Manifest::create(d.path(), 1, &st).unwrap();
        let e1 = ManifestEdit {
            added: vec![file(5)],
            next_file: Some(6),
            ..Default::default()
        };
        m.append(&e1).unwrap();
        st.apply(&e1);
        let e2 = ManifestEdit {
            deleted: vec![(TableId(1), 5)],
            added: vec![file(6)],
            log_number: Some(4),
            ..Default::default()
        };
        m.append(&e2).unwrap();
        let (n, got) = recover(d.path()).unwrap().unwrap();
        assert_eq!(n, 1);
        assert_eq!(got.files.keys().copied().collect::<Vec<_>>(), vec![6]);
        assert_eq!(got.log_number, 4);
        assert_eq!(got.next_file, 6);
    }

    #[test]
    fn missing_or_garbled_current_is_reported() {
        let d = tempfile::tempdir().unwrap();
        assert!(recover(d.path()).unwrap().is_none());
        std::fs::write(d.path().join(CURRENT), b"garbage").unwrap();
        assert!(recover(d.path()).unwrap_err().is_corruption());
        std::fs::write(d.path().join(CURRENT), b"MANIFEST-000009\n").unwrap();
        assert!(recover(d.path()).unwrap_err().is_corruption());
    }
}
