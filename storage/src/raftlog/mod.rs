//! The Raft log of a replicated node: the node's durable log in replicated mode,
//! in place of the engine's WAL (REPLICATION.md §5).
//!
//! Files in the log directory (`<data>/raft/`):
//! - `NNNNNN.log` segments: header magic `HSIGHTR1`, then the WAL's `HWF1` frames,
//!   one per entry ([`entry`] gives the payload); a new segment is started once the
//!   newest reaches `segment_bytes`;
//! - `RAFTSTATE`: vote, committed and purged log ids ([`state`]).
//!
//! Invariants:
//! - Entries are held for consecutive indexes, after the purged id. An append that
//!   would leave a gap or overlap is refused; a gap found on disk is corruption.
//! - [`RaftLog::append`] returns only after its frames are written with one
//!   vectored write and made durable with one `fdatasync`.
//! - A torn frame at the tail of the newest segment is an append that never
//!   returned (so was never acknowledged): opening cuts it off. Damage anywhere
//!   else is corruption and the log refuses to open.
//! - `truncate` cuts the segment holding the first removed entry at that entry's
//!   frame and deletes later segments, newest first; `purge` makes the purged id
//!   durable before it deletes whole segments, so a crash in between leaves only
//!   segments the next open recognises as purged and removes.
//!
//! This module is free of any consensus library: the replication crate adapts it to
//! openraft's log-store traits.

mod entry;
mod state;

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub use entry::{AppliedPoint, Entry, EntryBody, LogId};
pub use state::{RaftState, Vote};

use crate::error::{Error, Result};
use crate::fsutil::{remove_if_exists, sync_dir};
use crate::wal::{FRAME_HEADER_LEN, LogWriter, WAL_HEADER_LEN, frame_at, replay_log};

/// First 8 bytes of every Raft log segment.
pub(crate) const RAFT_MAGIC: [u8; 8] = *b"HSIGHTR1";

/// Tuning of a [`RaftLog`].
#[derive(Clone, Copy, Debug)]
pub struct RaftLogOptions {
    /// Size at which the newest segment is closed and a new one started.
    pub segment_bytes: u64,
}

impl Default for RaftLogOptions {
    fn default() -> Self {
        RaftLogOptions {
            segment_bytes: 64 << 20,
        }
    }
}

/// Where one held entry lies.
#[derive(Clone, Copy, Debug)]
struct Loc {
    id: LogId,
    segment: u64,
    /// Offset of the entry's frame (header included) in its segment.
    offset: u64,
    /// Length of the frame's payload.
    len: u32,
}

impl Loc {
    fn frame_end(&self) -> u64 {
        self.offset + FRAME_HEADER_LEN as u64 + u64::from(self.len)
    }
}

/// One segment file, with a read handle once opened.
#[derive(Debug)]
struct Segment {
    number: u64,
    path: PathBuf,
    file: File,
}

/// File name of segment `number`.
fn segment_name(number: u64) -> String {
    format!("{number:06}.log")
}

/// The Raft log of one node. Not internally synchronized: the owner serializes
/// calls (openraft's log store does).
pub struct RaftLog {
    dir: PathBuf,
    opts: RaftLogOptions,
    state: RaftState,
    segments: Vec<Segment>,
    /// Held entries in index order.
    locs: VecDeque<Loc>,
    /// Appends go here: the newest segment, once opened or created.
    writer: Option<LogWriter>,
    /// Set when a write failed half-way: the file's tail is unknown, so every later
    /// call fails until the log is reopened (which cuts the torn tail).
    failed: bool,
}

impl std::fmt::Debug for RaftLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftLog")
            .field("dir", &self.dir)
            .field("state", &self.state)
            .field("segments", &self.segments.len())
            .field("entries", &self.locs.len())
            .finish()
    }
}

impl RaftLog {
    /// Open (or create) the log in `dir`.
    pub fn open(dir: &Path, opts: RaftLogOptions) -> Result<RaftLog> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        let mut log = RaftLog {
            dir: dir.to_path_buf(),
            opts,
            state: RaftState::load(dir)?,
            segments: Vec::new(),
            locs: VecDeque::new(),
            writer: None,
            failed: false,
        };
        let numbers = log.segment_numbers()?;
        for (i, &number) in numbers.iter().enumerate() {
            log.load_segment(number, i + 1 == numbers.len())?;
        }
        log.remove_purged_segments()?;
        if let Some(newest) = log.segments.last() {
            log.writer = Some(LogWriter::open_end(&newest.path)?);
        }
        Ok(log)
    }

    /// Segment numbers in the directory, ascending.
    fn segment_numbers(&self) -> Result<Vec<u64>> {
        let mut numbers = Vec::new();
        let rd = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        for e in rd {
            let e = e.map_err(|e| Error::io(&self.dir, e))?;
            let name = e.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
                continue;
            };
            if let Ok(n) = stem.parse::<u64>() {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// Index the entries of segment `number`; the newest segment's torn tail is cut
    /// off (and a newest segment without a whole header removed).
    fn load_segment(&mut self, number: u64, newest: bool) -> Result<()> {
        let path = self.dir.join(segment_name(number));
        let purged = self.state.purged.map(|p| p.index);
        let mut found: Vec<Loc> = Vec::new();
        let replay = replay_log(&path, RAFT_MAGIC, newest, |payload, offset| {
            let at = offset + FRAME_HEADER_LEN as u64;
            let id = Entry::decode_id(payload).map_err(|e| e.at(&path, at))?;
            if purged.is_some_and(|p| id.index <= p) {
                return Ok(());
            }
            let expected = found
                .last()
                .or(self.locs.back())
                .map(|l| l.id.index + 1)
                .or(purged.map(|p| p + 1));
            if expected.is_some_and(|x| x != id.index) {
                return Err(Error::corruption(
                    &path,
                    offset,
                    format!("entry {} where {expected:?} was expected", id.index),
                ));
            }
            found.push(Loc {
                id,
                segment: number,
                offset,
                len: payload.len() as u32,
            });
            Ok(())
        })?;
        match replay.torn_at {
            Some(at) if at < WAL_HEADER_LEN as u64 => {
                remove_if_exists(&path)?;
                return sync_dir(&self.dir);
            }
            Some(at) => cut_file(&path, at)?,
            None => {}
        }
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        self.segments.push(Segment { number, path, file });
        self.locs.extend(found);
        Ok(())
    }

    /// Delete the segments before the one holding the first held entry (all of them
    /// if none is held but the purged id is set): they hold purged entries only.
    fn remove_purged_segments(&mut self) -> Result<()> {
        let keep_from = match (self.locs.front(), self.state.purged) {
            (Some(first), _) => first.segment,
            (None, Some(_)) => u64::MAX,
            (None, None) => return Ok(()),
        };
        let before = self.segments.len();
        let (gone, kept): (Vec<Segment>, Vec<Segment>) = std::mem::take(&mut self.segments)
            .into_iter()
            .partition(|s| s.number < keep_from);
        self.segments = kept;
        if self.segments.is_empty() {
            self.writer = None;
        }
        for s in gone.iter().rev() {
            remove_if_exists(&s.path)?;
        }
        if self.segments.len() != before {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// The persisted vote, committed and purged ids.
    pub fn state(&self) -> RaftState {
        self.state
    }

    /// The id of the last entry held, else the last purged one.
    pub fn last_log_id(&self) -> Option<LogId> {
        self.locs.back().map(|l| l.id).or(self.state.purged)
    }

    /// The index of the first entry held, if any.
    pub fn first_index(&self) -> Option<u64> {
        self.locs.front().map(|l| l.id.index)
    }

    /// The id of the held entry at `index`.
    pub fn log_id(&self, index: u64) -> Option<LogId> {
        self.loc(index).map(|l| l.id)
    }

    fn loc(&self, index: u64) -> Option<&Loc> {
        let first = self.first_index()?;
        let i = usize::try_from(index.checked_sub(first)?).ok()?;
        self.locs.get(i)
    }

    fn check_usable(&self) -> Result<()> {
        match self.failed {
            true => Err(Error::InvalidArgument(format!(
                "the raft log in {} failed a write; reopen it",
                self.dir.display()
            ))),
            false => Ok(()),
        }
    }

    /// Append `entries` (consecutive, following the last held or purged index) and
    /// make them durable.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        self.check_usable()?;
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let expected = self.last_log_id().map(|l| l.index + 1);
        let consecutive = entries
            .windows(2)
            .all(|w| w[1].id.index == w[0].id.index + 1);
        if expected.is_some_and(|x| x != first.id.index) || !consecutive {
            return Err(Error::InvalidArgument(format!(
                "raft append of entries {}..={} does not follow entry {expected:?}",
                first.id.index,
                entries.last().map_or(first.id.index, |e| e.id.index)
            )));
        }
        let payloads: Vec<Vec<u8>> = entries.iter().map(Entry::encode).collect();
        if payloads.iter().any(|p| p.len() > crate::wal::MAX_FRAME_LEN) {
            return Err(Error::InvalidArgument(
                "raft entry larger than the largest frame".into(),
            ));
        }
        self.roll_if_full()?;
        let (segment, mut offset) = match (&self.writer, self.segments.last()) {
            (Some(w), Some(s)) => (s.number, w.size),
            _ => {
                return Err(Error::InvalidArgument(
                    "raft log has no open segment".into(),
                ));
            }
        };
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let written = match self.writer.as_mut() {
            Some(w) => w.append_frames(&refs).and_then(|_| w.sync()),
            None => Ok(()),
        };
        if let Err(e) = written {
            self.failed = true;
            return Err(e);
        }
        for (e, p) in entries.iter().zip(&payloads) {
            let loc = Loc {
                id: e.id,
                segment,
                offset,
                len: p.len() as u32,
            };
            offset = loc.frame_end();
            self.locs.push_back(loc);
        }
        Ok(())
    }

    /// Start a new segment when there is none or the newest is full.
    fn roll_if_full(&mut self) -> Result<()> {
        if self
            .writer
            .as_ref()
            .is_some_and(|w| w.size < self.opts.segment_bytes)
        {
            return Ok(());
        }
        let number = self.segments.last().map_or(1, |s| s.number + 1);
        let path = self.dir.join(segment_name(number));
        let writer = LogWriter::create(&path, RAFT_MAGIC)?;
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        self.segments.push(Segment { number, path, file });
        self.writer = Some(writer);
        Ok(())
    }

    /// The held entries with indexes in `from..to`, read from disk and checked.
    pub fn entries(&self, from: u64, to: u64) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let (Some(first), Some(last)) = (self.locs.front(), self.locs.back()) else {
            return Ok(out);
        };
        let mut i = from.max(first.id.index);
        let to = to.min(last.id.index + 1);
        while i < to {
            let Some(first) = self.loc(i) else {
                break;
            };
            // One read per run of entries in the same segment.
            let mut last = *first;
            while last.id.index + 1 < to {
                match self.loc(last.id.index + 1) {
                    Some(l) if l.segment == first.segment => last = *l,
                    _ => break,
                }
            }
            self.read_run(first, &last, &mut out)?;
            i = last.id.index + 1;
        }
        Ok(out)
    }

    /// Read the entries from `first` to `last` (one segment) into `out`.
    fn read_run(&self, first: &Loc, last: &Loc, out: &mut Vec<Entry>) -> Result<()> {
        let seg = self
            .segments
            .iter()
            .find(|s| s.number == first.segment)
            .ok_or_else(|| Error::InvalidArgument(format!("segment {} is gone", first.segment)))?;
        let len = usize::try_from(last.frame_end() - first.offset)
            .map_err(|_| Error::corruption(&seg.path, first.offset, "run too large"))?;
        let mut buf = vec![0u8; len];
        seg.file
            .read_exact_at(&mut buf, first.offset)
            .map_err(|e| Error::io(&seg.path, e))?;
        let mut pos = 0;
        for index in first.id.index..=last.id.index {
            let at = first.offset + pos as u64;
            let (next, payload) =
                frame_at(&buf, pos).map_err(|why| Error::corruption(&seg.path, at, why))?;
            let e = Entry::decode(payload)
                .map_err(|e| e.at(&seg.path, at + FRAME_HEADER_LEN as u64))?;
            if e.id.index != index {
                return Err(Error::corruption(&seg.path, at, "entry moved"));
            }
            out.push(e);
            pos = next;
        }
        Ok(())
    }

    /// Remove the held entries with index `since` and later (a conflicting suffix).
    pub fn truncate(&mut self, since: u64) -> Result<()> {
        self.check_usable()?;
        let Some(cut) = self.loc(since).copied() else {
            if self.first_index().is_some_and(|f| since < f) {
                return Err(Error::InvalidArgument(format!(
                    "raft truncate at {since} reaches purged entries"
                )));
            }
            return Ok(());
        };
        self.writer = None;
        while let Some(s) = self.segments.pop_if(|s| s.number > cut.segment) {
            remove_if_exists(&s.path)?;
        }
        sync_dir(&self.dir)?;
        let Some(seg) = self.segments.last() else {
            return Err(Error::InvalidArgument("raft log lost its segment".into()));
        };
        cut_file(&seg.path, cut.offset)?;
        self.writer = Some(LogWriter::open_end(&seg.path)?);
        // `cut` is held, so the first index is at most `since`.
        let keep = self.first_index().map_or(0, |f| since.saturating_sub(f));
        self.locs
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        Ok(())
    }

    /// Forget the entries up to and including `upto` (they are in a snapshot): the
    /// purged id is made durable, then segments holding only purged entries are
    /// deleted.
    pub fn purge(&mut self, upto: LogId) -> Result<()> {
        self.check_usable()?;
        if self.state.purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(());
        }
        self.state.purged = Some(upto);
        self.state.save(&self.dir)?;
        while self.locs.front().is_some_and(|l| l.id.index <= upto.index) {
            self.locs.pop_front();
        }
        self.remove_purged_segments()
    }

    /// Where to purge so that at least `keep_bytes` of entries stay held after the
    /// purged point, never past `upto` (the snapshot's index): the highest such
    /// index above the current purge point, if any.
    pub fn purge_point(&self, upto: u64, keep_bytes: u64) -> Option<u64> {
        let mut kept = 0u64;
        let mut candidate = None;
        for l in self.locs.iter().rev() {
            if kept >= keep_bytes {
                candidate = Some(l.id.index);
                break;
            }
            kept += l.frame_end() - l.offset;
        }
        let point = candidate?.min(upto);
        let purged = self.state.purged.map_or(0, |p| p.index);
        (point > purged && self.loc(point).is_some()).then_some(point)
    }

    /// Make `vote` durable.
    pub fn save_vote(&mut self, vote: Vote) -> Result<()> {
        self.state.vote = Some(vote);
        self.state.save(&self.dir)
    }

    /// Record the last known committed id (the caller decides how often).
    pub fn save_committed(&mut self, committed: Option<LogId>) -> Result<()> {
        self.state.committed = committed;
        self.state.save(&self.dir)
    }
}

/// Cut `path` to `len` bytes, durably.
fn cut_file(path: &Path, len: u64) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.set_len(len).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests;
