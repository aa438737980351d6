//! The Raft type configuration and the mapping between openraft's types and the
//! storage crate's log types.
//!
//! openraft stays inside this crate: the engine and its Raft log know only
//! `raftlog::{LogId, Entry, EntryBody, Vote}`. Every conversion here is total in
//! the openraft → storage direction; the reverse fails only on a membership record
//! that does not parse (a corrupt log).

use hindsight_storage::raftlog;
use openraft::{CommittedLeaderId, EntryPayload, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::error::{ReplError, ReplResult};

/// Node ids are the operator's `--node-id` numbers.
pub type NodeId = u64;

/// What an application entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// One commit group: the engine's batch payloads, numbered by the leader
    /// `stamp` = (term, node).
    Data {
        stamp: (u64, u64),
        payloads: Vec<Vec<u8>>,
    },
    /// The leader's clock while idle.
    Tick { micros: i64 },
}

/// What applying an entry did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Applied,
    /// Numbered under a leadership that changed before the append: a no-op.
    Stale,
    /// Not a Data entry.
    None,
}

/// What the membership records about a node: its Raft address, when it joined
/// by `hindsight_add_learner` (the voters that formed the cluster have none
/// until a membership change fills theirs in from the leader's `--peers`). A
/// node's own `--peers` entry always wins over this.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_addr: Option<String>,
}

openraft::declare_raft_types!(
    /// Hindsight's Raft types.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = NodeInfo,
        SnapshotData = crate::snapshot::SnapshotDir,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type RaftEntry = openraft::Entry<TypeConfig>;
pub type RaftLogId = openraft::LogId<NodeId>;
pub type RaftVote = openraft::Vote<NodeId>;
pub type Membership = openraft::Membership<NodeId, NodeInfo>;
pub type Stored = StoredMembership<NodeId, NodeInfo>;
pub type Metrics = openraft::RaftMetrics<NodeId, NodeInfo>;

pub fn log_id_out(id: &RaftLogId) -> raftlog::LogId {
    raftlog::LogId {
        term: id.leader_id.term,
        node: id.leader_id.node_id,
        index: id.index,
    }
}

pub fn log_id_in(id: &raftlog::LogId) -> RaftLogId {
    openraft::LogId::new(CommittedLeaderId::new(id.term, id.node), id.index)
}

pub fn vote_out(v: &RaftVote) -> raftlog::Vote {
    raftlog::Vote {
        term: v.leader_id.term,
        node: v.leader_id.node_id,
        committed: v.committed,
    }
}

pub fn vote_in(v: &raftlog::Vote) -> RaftVote {
    if v.committed {
        openraft::Vote::new_committed(v.term, v.node)
    } else {
        openraft::Vote::new(v.term, v.node)
    }
}

/// The storage body of an entry's payload.
pub fn body_out(payload: &EntryPayload<TypeConfig>) -> ReplResult<raftlog::EntryBody> {
    Ok(match payload {
        EntryPayload::Blank => raftlog::EntryBody::Blank,
        EntryPayload::Normal(Request::Data { stamp, payloads }) => raftlog::EntryBody::Data {
            stamp: *stamp,
            payloads: payloads.clone(),
        },
        EntryPayload::Normal(Request::Tick { micros }) => {
            raftlog::EntryBody::Tick { micros: *micros }
        }
        EntryPayload::Membership(m) => raftlog::EntryBody::Membership(
            serde_json::to_vec(m).map_err(|e| ReplError::Encode(e.to_string()))?,
        ),
    })
}

pub fn entry_out(e: &RaftEntry) -> ReplResult<raftlog::Entry> {
    Ok(raftlog::Entry {
        id: log_id_out(&e.log_id),
        body: body_out(&e.payload)?,
    })
}

pub fn entry_in(e: raftlog::Entry) -> ReplResult<RaftEntry> {
    let payload = match e.body {
        raftlog::EntryBody::Blank => EntryPayload::Blank,
        raftlog::EntryBody::Data { stamp, payloads } => {
            EntryPayload::Normal(Request::Data { stamp, payloads })
        }
        raftlog::EntryBody::Tick { micros } => EntryPayload::Normal(Request::Tick { micros }),
        raftlog::EntryBody::Membership(json) => {
            EntryPayload::Membership(serde_json::from_slice(&json).map_err(|err| {
                ReplError::Corrupt(format!("membership of entry {}: {err}", e.id.index))
            })?)
        }
    };
    Ok(openraft::Entry {
        log_id: log_id_in(&e.id),
        payload,
    })
}

/// The applied membership as the engine keeps it (a JSON [`StoredMembership`]).
pub fn stored_membership_out(m: &Stored) -> ReplResult<Vec<u8>> {
    serde_json::to_vec(m).map_err(|e| ReplError::Encode(e.to_string()))
}

pub fn stored_membership_in(bytes: &[u8]) -> ReplResult<Stored> {
    serde_json::from_slice(bytes)
        .map_err(|e| ReplError::Corrupt(format!("applied membership: {e}")))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    #[test]
    fn entries_round_trip_through_storage_form() {
        let mem = Membership::new(vec![BTreeSet::from([1, 2, 3])], BTreeMap::new());
        let id = log_id_in(&raftlog::LogId {
            term: 4,
            node: 2,
            index: 17,
        });
        for payload in [
            EntryPayload::Blank,
            EntryPayload::Normal(Request::Data {
                stamp: (4, 2),
                payloads: vec![vec![1, 2], vec![]],
            }),
            EntryPayload::Normal(Request::Tick { micros: -5 }),
            EntryPayload::Membership(mem),
        ] {
            let e = openraft::Entry {
                log_id: id,
                payload,
            };
            let stored = entry_out(&e).unwrap();
            let bytes = stored.to_bytes();
            let back = entry_in(raftlog::Entry::from_bytes(&bytes).unwrap()).unwrap();
            assert_eq!(back.log_id, e.log_id);
            assert_eq!(format!("{:?}", back.payload), format!("{:?}", e.payload));
        }
    }

    #[test]
    fn memberships_written_with_empty_nodes_still_read() {
        // Logs and manifests of clusters formed before nodes carried addresses.
        let old = br#"{"log_id":null,"membership":{"configs":[[1,2]],"nodes":{"1":{},"2":{}}}}"#;
        let m = stored_membership_in(old).unwrap();
        assert_eq!(m.membership().nodes().count(), 2);
        let back = stored_membership_out(&m).unwrap();
        assert_eq!(stored_membership_in(&back).unwrap(), m);
    }

    #[test]
    fn votes_round_trip() {
        for v in [
            openraft::Vote::new(3, 1),
            openraft::Vote::new_committed(9, 2),
        ] {
            assert_eq!(vote_in(&vote_out(&v)), v);
        }
    }
}
