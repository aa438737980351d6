//! hindsight-replication: one Raft group of Hindsight servers on openraft.
//!
//! The storage engine's commit groups are the Raft entries; in replicated mode the
//! Raft log (`hindsight_storage::raftlog`) is each node's only durable log. This
//! crate adapts openraft to that log ([`logstore`]) and to the engine
//! ([`statemachine`]), keeps its snapshots as engine checkpoints ([`snapshot`]),
//! carries Raft over TCP ([`transport`]), admits and proposes
//! commits as the engine's write hook ([`proposer`]), and starts a member
//! ([`node`]).
//!
//! Dependency rule: `storage <- replication <- src`. openraft appears in no public
//! signature the server needs beyond [`Cluster`] and [`ClusterConfig`].

// openraft's traits fix `StorageError` (large) as the error type of every storage
// call; boxing it in our closures would only move the copy.
#![allow(clippy::result_large_err)]

pub mod error;
pub mod figures;
pub mod identity;
pub mod logstore;
pub mod membership;
pub mod node;
pub mod proposer;
pub mod snapshot;
pub mod statemachine;
pub mod transport;
pub mod types;

pub use error::{ReplError, ReplResult};
pub use figures::{COMMIT_BUCKETS, FigureSource, Figures, PeerLag};
pub use node::{Cluster, ClusterConfig, parse_peers};
