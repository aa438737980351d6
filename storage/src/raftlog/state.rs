//! `raft/RAFTSTATE`: the vote, the last known committed log id and the last purged
//! log id, in one small file replaced atomically (temp file, fsync, rename, fsync
//! the directory).
//!
//! ```text
//! RAFTSTATE := magic[8] ("HSIGHTRS") version:u32
//!              vote?      (present:u8 [term:u64 node:u64 committed:u8])
//!              committed? (present:u8 [term:u64 node:u64 index:u64])
//!              purged?    (present:u8 [term:u64 node:u64 index:u64])
//!              crc32(everything before):u32
//! ```
//!
//! Invariant: a vote is durable before the call that saves it returns (Raft's
//! safety rests on a node never voting twice in a term). `committed` may lag (an
//! older committed id is safe: the log is re-applied from the snapshot up to it).

use std::path::Path;

use super::entry::LogId;
use crate::codec::{Put, Reader};
use crate::error::{DecodeResult, Error, Result};
use crate::fsutil::write_atomic;

const MAGIC: [u8; 8] = *b"HSIGHTRS";
const VERSION: u32 = 1;
pub(crate) const STATE_FILE: &str = "RAFTSTATE";

/// A Raft vote: the candidate (term, node) this node voted for, and whether that
/// candidate's leadership is committed (granted by a quorum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vote {
    pub term: u64,
    pub node: u64,
    pub committed: bool,
}

/// What RAFTSTATE holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RaftState {
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    pub purged: Option<LogId>,
}

impl RaftState {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        out.extend_from_slice(&MAGIC);
        out.put_u32(VERSION);
        match self.vote {
            Some(v) => {
                out.put_u8(1);
                out.put_u64(v.term);
                out.put_u64(v.node);
                out.put_u8(u8::from(v.committed));
            }
            None => out.put_u8(0),
        }
        for id in [self.committed, self.purged] {
            put_log_id(&mut out, id);
        }
        let crc = crc32fast::hash(&out);
        out.put_u32(crc);
        out
    }

    fn decode(buf: &[u8]) -> DecodeResult<RaftState> {
        let mut r = Reader::new(buf);
        if r.bytes(MAGIC.len(), "magic")? != MAGIC {
            return Err(r.err("bad magic number"));
        }
        let version = r.u32("version")?;
        if version != VERSION {
            return Err(r.err(format!("unsupported raft state version {version}")));
        }
        let vote = match r.u8("vote flag")? {
            0 => None,
            1 => Some(Vote {
                term: r.u64("vote term")?,
                node: r.u64("vote node")?,
                committed: r.u8("vote committed")? != 0,
            }),
            f => return Err(r.err(format!("bad vote flag {f}"))),
        };
        let committed = get_log_id(&mut r, "committed")?;
        let purged = get_log_id(&mut r, "purged")?;
        let body_len = r.offset();
        let crc = r.u32("checksum")?;
        if !r.is_empty() {
            return Err(r.err("trailing bytes"));
        }
        if buf.get(..body_len).map(crc32fast::hash) != Some(crc) {
            return Err(r.err("checksum mismatch"));
        }
        Ok(RaftState {
            vote,
            committed,
            purged,
        })
    }

    /// Read `dir/RAFTSTATE`; a missing file is the empty state (a new node).
    pub(crate) fn load(dir: &Path) -> Result<RaftState> {
        let path = dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(buf) => RaftState::decode(&buf).map_err(|e| e.at(&path, 0)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RaftState::default()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Replace `dir/RAFTSTATE` with this state, durably.
    pub(crate) fn save(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(STATE_FILE), &self.encode())
    }
}

fn put_log_id(out: &mut Vec<u8>, id: Option<LogId>) {
    match id {
        Some(id) => {
            out.put_u8(1);
            out.put_u64(id.term);
            out.put_u64(id.node);
            out.put_u64(id.index);
        }
        None => out.put_u8(0),
    }
}

fn get_log_id(r: &mut Reader<'_>, what: &str) -> DecodeResult<Option<LogId>> {
    match r.u8(what)? {
        0 => Ok(None),
        1 => Ok(Some(LogId {
            term: r.u64(what)?,
            node: r.u64(what)?,
            index: r.u64(what)?,
        })),
        f => Err(r.err(format!("bad {what} flag {f}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> RaftState {
        RaftState {
            vote: Some(Vote {
                term: 7,
                node: 2,
                committed: true,
            }),
            committed: Some(LogId {
                term: 7,
                node: 2,
                index: 41,
            }),
            purged: Some(LogId {
                term: 6,
                node: 1,
                index: 10,
            }),
        }
    }

    #[test]
    fn state_round_trips_through_the_file_and_a_missing_file_is_empty() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(RaftState::load(d.path()).unwrap(), RaftState::default());
        full().save(d.path()).unwrap();
        assert_eq!(RaftState::load(d.path()).unwrap(), full());
        RaftState::default().save(d.path()).unwrap();
        assert_eq!(RaftState::load(d.path()).unwrap(), RaftState::default());
    }

    #[test]
    fn any_flipped_or_missing_byte_is_corruption() {
        let bytes = full().encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(RaftState::decode(&b).is_err(), "flip at {i}");
            assert!(RaftState::decode(&bytes[..i]).is_err(), "cut at {i}");
        }
        let d = tempfile::tempdir().unwrap();
        let mut b = bytes;
        b[20] ^= 1;
        std::fs::write(d.path().join(STATE_FILE), b).unwrap();
        assert!(RaftState::load(d.path()).unwrap_err().is_corruption());
    }
}
