//! Raft log entries as bytes: the payload of one frame of a Raft log segment.
//!
//! ```text
//! entry := term:u64 node:u64 index:u64 kind:u8 body
//! Data       (1): stamp_term:u64 stamp_node:u64 n:varint (len:varint payload[len])*
//! Tick       (2): micros:i64
//! Blank      (3): (nothing)
//! Membership (4): json[rest of the frame]
//! ```
//!
//! `(term, node, index)` is the entry's Raft log id (the leader that appended it
//! and its position). A Data entry carries one commit group: the WAL batch payloads
//! of the engine, unchanged, and the stamp of the leader that assigned their
//! sequence numbers (which apply compares with the log id). This module knows
//! nothing of Raft beyond these fields: it is free of any consensus library.

use std::sync::Arc;

use crate::codec::{Put, Reader};
use crate::error::DecodeResult;

/// A Raft log id: the term and node of the leader that appended the entry, and
/// the entry's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogId {
    pub term: u64,
    pub node: u64,
    pub index: u64,
}

/// The consensus position the engine's state reflects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppliedPoint {
    /// The last log id applied.
    pub log: Option<LogId>,
    /// The last membership applied, as the consensus layer serialized it.
    pub membership: Option<Arc<[u8]>>,
}

/// What an entry holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryBody {
    /// One commit group: engine WAL batch payloads, in commit order, stamped with
    /// the (term, node) of the leader that assigned their sequence numbers.
    Data {
        stamp: (u64, u64),
        payloads: Vec<Vec<u8>>,
    },
    /// The leader's clock while idle: raises the applied commit time everywhere.
    Tick { micros: i64 },
    /// A new leader's first entry.
    Blank,
    /// A membership change, as the consensus layer serializes it.
    Membership(Vec<u8>),
}

/// One Raft log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: LogId,
    pub body: EntryBody,
}

const KIND_DATA: u8 = 1;
const KIND_TICK: u8 = 2;
const KIND_BLANK: u8 = 3;
const KIND_MEMBERSHIP: u8 = 4;

/// Bytes of the fixed part in front of every body: term, node, index, kind.
pub(crate) const ENTRY_HEAD_LEN: usize = 25;

impl Entry {
    /// This entry's bytes (as in a log frame), e.g. to send it to a peer.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode()
    }

    /// An entry from [`Entry::to_bytes`]; every length is checked.
    pub fn from_bytes(buf: &[u8]) -> crate::error::Result<Entry> {
        Entry::decode(buf)
            .map_err(|e| crate::error::Error::corruption("<raft entry>", e.offset as u64, e.detail))
    }

    /// The frame payload of this entry.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENTRY_HEAD_LEN + self.body_len_hint());
        out.put_u64(self.id.term);
        out.put_u64(self.id.node);
        out.put_u64(self.id.index);
        match &self.body {
            EntryBody::Data { stamp, payloads } => {
                out.put_u8(KIND_DATA);
                out.put_u64(stamp.0);
                out.put_u64(stamp.1);
                out.put_varint(payloads.len() as u64);
                for p in payloads {
                    out.put_bytes_prefixed(p);
                }
            }
            EntryBody::Tick { micros } => {
                out.put_u8(KIND_TICK);
                out.put_i64(*micros);
            }
            EntryBody::Blank => out.put_u8(KIND_BLANK),
            EntryBody::Membership(json) => {
                out.put_u8(KIND_MEMBERSHIP);
                out.extend_from_slice(json);
            }
        }
        out
    }

    fn body_len_hint(&self) -> usize {
        match &self.body {
            EntryBody::Data { payloads, .. } => {
                32 + payloads.iter().map(|p| p.len() + 5).sum::<usize>()
            }
            EntryBody::Membership(json) => json.len(),
            _ => 8,
        }
    }

    /// Decode a frame payload. Every length is checked against the frame.
    pub(crate) fn decode(buf: &[u8]) -> DecodeResult<Entry> {
        let mut r = Reader::new(buf);
        let id = LogId {
            term: r.u64("entry term")?,
            node: r.u64("entry node")?,
            index: r.u64("entry index")?,
        };
        let kind = r.u8("entry kind")?;
        let body = match kind {
            KIND_DATA => {
                let stamp = (r.u64("stamp term")?, r.u64("stamp node")?);
                // Each payload takes at least its length byte.
                let n = r.len(r.remaining(), "payload count")?;
                let mut payloads = Vec::with_capacity(n);
                for _ in 0..n {
                    payloads.push(r.bytes_prefixed("batch payload")?.to_vec());
                }
                EntryBody::Data { stamp, payloads }
            }
            KIND_TICK => EntryBody::Tick {
                micros: r.i64("tick time")?,
            },
            KIND_BLANK => EntryBody::Blank,
            KIND_MEMBERSHIP => {
                EntryBody::Membership(r.bytes(r.remaining(), "membership")?.to_vec())
            }
            other => return Err(r.err(format!("unknown entry kind {other}"))),
        };
        if !r.is_empty() {
            return Err(r.err("trailing bytes after the entry"));
        }
        Ok(Entry { id, body })
    }

    /// The log id alone, from the front of a frame payload.
    pub(crate) fn decode_id(buf: &[u8]) -> DecodeResult<LogId> {
        let mut r = Reader::new(buf);
        Ok(LogId {
            term: r.u64("entry term")?,
            node: r.u64("entry node")?,
            index: r.u64("entry index")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(index: u64) -> LogId {
        LogId {
            term: 3,
            node: 2,
            index,
        }
    }

    #[test]
    fn every_kind_round_trips() {
        let bodies = [
            EntryBody::Data {
                stamp: (3, 2),
                payloads: vec![b"batch one".to_vec(), Vec::new(), vec![7; 300]],
            },
            EntryBody::Tick { micros: -5 },
            EntryBody::Blank,
            EntryBody::Membership(br#"{"voters":[1,2,3]}"#.to_vec()),
        ];
        for (i, body) in bodies.into_iter().enumerate() {
            let e = Entry {
                id: id(i as u64),
                body,
            };
            let bytes = e.encode();
            assert_eq!(Entry::decode(&bytes).ok(), Some(e.clone()));
            assert_eq!(Entry::decode_id(&bytes).ok(), Some(e.id));
        }
    }

    #[test]
    fn cut_or_padded_entries_are_errors() {
        let e = Entry {
            id: id(9),
            body: EntryBody::Data {
                stamp: (1, 1),
                payloads: vec![b"abc".to_vec()],
            },
        };
        let bytes = e.encode();
        for cut in 0..bytes.len() {
            assert!(Entry::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(Entry::decode(&padded).is_err());
        let mut unknown = bytes;
        unknown[ENTRY_HEAD_LEN - 1] = 99;
        assert!(Entry::decode(&unknown).is_err());
    }
}
