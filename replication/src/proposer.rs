//! The engine's write hook on a cluster member ([`Replicate`]): admission, the
//! Raft proposal of a commit group, and this node's role as SQL sees it.
//!
//! Invariants:
//! - **Term barrier**: a group is admitted only on the leader, once it has applied
//!   every entry of its log and the last applied entry belongs to its own term (the
//!   blank entry openraft appends on election). So the engine's `last_seq` is the
//!   cluster's, and the seqs the engine assigns follow the last committed ones.
//! - **Term stamp**: each Data entry carries the (term, node) that admitted it; if
//!   the entry lands under another leadership, every node applies it as a no-op.
//! - A proposal that fails after it may have been appended (timeout, fatal Raft
//!   error) is [`Error::OutcomeUnknown`], never "not written".
//! - While the leader has not heard from a majority for longer than the election
//!   timeout, it admits nothing (25006) instead of queueing writes that cannot commit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hindsight_storage::{
    Db, Error, Member, MemberChange, Outcome, Replicate, Role, RoleKind, Stamp,
};
use openraft::ServerState;
use openraft::error::{ClientWriteError, RaftError};

use crate::figures::{Counters, Figures, PeerLag};
use crate::transport::{Call, Identity, Peer, Status, hold_elections};
use crate::types::{Metrics, NodeId, Raft, Request, Response};

/// What this node last heard from each peer.
#[derive(Default)]
pub(crate) struct PeerTable {
    seen: Mutex<BTreeMap<NodeId, (Status, Instant)>>,
}

impl PeerTable {
    pub(crate) fn record(&self, s: Status) {
        let mut g = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        g.insert(s.node, (s, Instant::now()));
    }

    fn get(&self, node: NodeId) -> Option<(Status, Instant)> {
        let g = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        g.get(&node).cloned()
    }
}

/// How long a peer may stay silent before the cluster view calls it unreachable.
const UNREACHABLE_AFTER: Duration = Duration::from_secs(2);

pub struct Proposer {
    raft: Raft,
    runtime: tokio::runtime::Handle,
    id: Arc<Identity>,
    pg_addr: String,
    db: Db,
    pub(crate) peers: Arc<PeerTable>,
    pub(crate) counters: Counters,
    /// The node leadership is being handed to (0: none); admission refuses meanwhile.
    transfer_to: AtomicU64,
    commit_timeout: Duration,
    /// The longest a leader may go without a majority's acknowledgement.
    lease: Duration,
}

impl Proposer {
    pub(crate) fn new(
        raft: Raft,
        runtime: tokio::runtime::Handle,
        id: Arc<Identity>,
        pg_addr: String,
        db: Db,
        commit_timeout: Duration,
        lease: Duration,
    ) -> Proposer {
        Proposer {
            raft,
            runtime,
            id,
            pg_addr,
            db,
            peers: Arc::new(PeerTable::default()),
            counters: Counters::default(),
            transfer_to: AtomicU64::new(0),
            commit_timeout,
            lease,
        }
    }

    fn metrics(&self) -> Metrics {
        self.raft.metrics().borrow().clone()
    }

    fn pg_addr_of(&self, node: NodeId) -> Option<String> {
        if node == self.id.me {
            return Some(self.pg_addr.clone());
        }
        self.peers.get(node).map(|(s, _)| s.pg_addr)
    }

    /// This node's status as its peers poll it.
    pub(crate) fn status(&self) -> Status {
        let m = self.metrics();
        Status {
            node: self.id.me,
            pg_addr: self.pg_addr.clone(),
            role: self.role().kind.name().to_string(),
            term: m.current_term,
            leader: m.current_leader,
            applied_seq: self.db.visible_seq(),
            applied_index: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
        }
    }

    /// Whether this leader has lost its majority: no quorum acknowledged its
    /// appends within the lease, and no quorum's status answers (polled on their
    /// own connections) within the lease say they follow it in this term. The
    /// second test keeps a leader whose followers are busy persisting a large
    /// entry (a big COPY) from counting as cut off.
    fn lease_lost(&self, m: &Metrics) -> bool {
        let unacked = m
            .millis_since_quorum_ack
            .is_some_and(|ms| ms > self.lease.as_millis() as u64);
        unacked && !self.quorum_follows(m)
    }

    /// Whether a majority of voters (this node included) answered a status poll
    /// within the lease naming this node as leader of `term`.
    fn quorum_follows(&self, m: &Metrics) -> bool {
        let term = m.current_term;
        let voters = voters(m);
        let following = voters
            .iter()
            .filter(|&&n| n != self.id.me)
            .filter_map(|&n| self.peers.get(n))
            .filter(|(s, at)| {
                s.leader == Some(self.id.me) && s.term == term && at.elapsed() <= self.lease
            })
            .count();
        following + 1 > voters.len() / 2
    }

    /// The figures `/metrics` shows.
    pub(crate) fn figures(&self) -> Figures {
        let m = self.metrics();
        let last = m.last_log_index;
        let peers = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(n, _)| **n != self.id.me)
                    .map(|(&node, matched)| PeerLag {
                        node,
                        lag_entries: last.map(|l| l.saturating_sub(matched.map_or(0, |m| m.index))),
                        last_contact_ms: self
                            .peers
                            .get(node)
                            .map(|(_, at)| at.elapsed().as_millis() as u64),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut f = Figures {
            node: self.id.me,
            term: m.current_term,
            is_leader: m.state == ServerState::Leader,
            leader: m.current_leader,
            last_log_index: last,
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            peers,
            ..Figures::default()
        };
        self.counters.fill(&mut f);
        f
    }

    fn propose(&self, req: Request) -> hindsight_storage::Result<Response> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let raft = self.raft.clone();
        let started = Instant::now();
        self.runtime.spawn(async move {
            let _ = tx.send(raft.client_write(req).await);
        });
        match self.await_commit(&rx, started) {
            Ok(Ok(resp)) => {
                self.counters.committed(started.elapsed());
                Ok(resp.data)
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                let mut role = self.role();
                role.leader = f.leader_id.map(|l| (l, self.pg_addr_of(l)));
                Err(Error::ReadOnlyReplica(role.standby_reason()))
            }
            Ok(Err(e)) => Err(Error::OutcomeUnknown(format!(
                "the replicated log failed after the commit was proposed: {e}"
            ))),
            Err(why) => Err(Error::OutcomeUnknown(why)),
        }
    }

    /// Wait for a proposal's answer until the commit timeout, or until this leader
    /// has lost its lease (it cannot commit any more; clients should go elsewhere
    /// now rather than after the whole timeout).
    fn await_commit<T>(
        &self,
        rx: &std::sync::mpsc::Receiver<T>,
        started: Instant,
    ) -> Result<T, String> {
        use std::sync::mpsc::RecvTimeoutError;
        loop {
            match rx.recv_timeout(LEASE_CHECK_EVERY) {
                Ok(answer) => return Ok(answer),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("the replicated log stopped before answering".into());
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            let m = self.metrics();
            if self.lease_lost(&m) {
                return Err(format!(
                    "node {} lost contact with the majority while the commit was replicated",
                    self.id.me
                ));
            }
            if started.elapsed() >= self.commit_timeout {
                return Err(format!(
                    "no majority confirmed the commit within {:?}",
                    self.commit_timeout
                ));
            }
        }
    }
}

/// The voter ids of the membership in effect (both halves of a joint one).
pub(crate) fn voters(m: &Metrics) -> std::collections::BTreeSet<NodeId> {
    m.membership_config.membership().voter_ids().collect()
}

fn role_kind(state: ServerState) -> RoleKind {
    match state {
        ServerState::Leader => RoleKind::Leader,
        ServerState::Candidate => RoleKind::Candidate,
        ServerState::Learner => RoleKind::Learner,
        ServerState::Follower | ServerState::Shutdown => RoleKind::Follower,
    }
}

/// How long a transfer waits for its target to catch up, and then to win.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(5);

/// Hand leadership from this leader (in `term`) to `to`: wait until `to` holds
/// the whole log, hold the other voters' elections and stop heartbeats so every
/// vote lease runs out, then ask `to` to campaign. Returns the new term.
async fn hand_over(
    raft: &crate::types::Raft,
    id: &Arc<Identity>,
    to: NodeId,
    term: u64,
    lease: Duration,
) -> Result<u64, String> {
    let caught_up = |m: &Metrics| {
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&to).copied().flatten());
        matched.map(|l| l.index) == m.last_log_index
    };
    let mut metrics = raft.metrics();
    tokio::time::timeout(TRANSFER_TIMEOUT, metrics.wait_for(caught_up))
        .await
        .map_err(|_| format!("node {to} did not catch up within {TRANSFER_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let hold = lease * 2 + Duration::from_millis(500);
    let others = voters(&raft.metrics().borrow());
    for &voter in others.iter().filter(|&&n| n != to && n != id.me) {
        let mut peer = Peer::new(id.clone(), voter);
        let ms = hold.as_millis() as u64;
        if let Err(e) = peer.call(&Call::Hold { ms }, &[], lease).await {
            tracing::info!(voter, "could not hold elections on node {voter}: {e}");
        }
    }
    hold_elections(raft, hold);
    raft.runtime_config().heartbeat(false);
    // Every voter's lease on this leader runs out one election timeout after the
    // last heartbeat.
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let mut target = Peer::new(id.clone(), to);
    match target.call(&Call::Elect, &[], lease).await {
        Ok(crate::transport::Answer::Done(Ok(()))) => {}
        Ok(other) => return Err(format!("node {to} refused to campaign: {other:?}")),
        Err(e) => return Err(format!("node {to} unreachable: {e}")),
    }
    let won = |m: &Metrics| m.current_leader == Some(to) && m.current_term > term;
    let m = tokio::time::timeout(TRANSFER_TIMEOUT, metrics.wait_for(won))
        .await
        .map_err(|_| format!("node {to} did not win an election within {TRANSFER_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    Ok(m.current_term)
}

/// How often a waiting proposal checks the leader's lease.
const LEASE_CHECK_EVERY: Duration = Duration::from_millis(100);

/// How long admission waits for a new leader to apply its log.
const BARRIER_WAIT: Duration = Duration::from_secs(3);

impl Replicate for Proposer {
    /// A leader that has not heard from a majority for longer than its lease is
    /// reported as a candidate with no known leader: it cannot commit, so clients
    /// (`target_session_attrs=read-write`, `/primary`) must look elsewhere.
    fn role(&self) -> Role {
        let m = self.metrics();
        let kind = role_kind(m.state);
        if kind == RoleKind::Leader && self.lease_lost(&m) {
            return Role {
                kind: RoleKind::Candidate,
                node: self.id.me,
                term: m.current_term,
                leader: None,
            };
        }
        Role {
            kind,
            node: self.id.me,
            term: m.current_term,
            leader: m.current_leader.map(|l| (l, self.pg_addr_of(l))),
        }
    }

    fn members(&self) -> Vec<Member> {
        let me = self.status();
        let now = Instant::now();
        let m = self.metrics();
        let matched = m.replication;
        let mut ids: Vec<NodeId> = m.membership_config.nodes().map(|(n, _)| *n).collect();
        if ids.is_empty() {
            ids = self.id.known(); // not yet initialized: the configured peers
        }
        ids.into_iter()
            .map(|node| {
                let raft_addr = self.id.addr(node).unwrap_or_default();
                let seen = if node == self.id.me {
                    Some((me.clone(), now))
                } else {
                    self.peers.get(node)
                };
                let age = seen.as_ref().map(|(_, at)| now.duration_since(*at));
                let fresh = age.is_some_and(|a| a < UNREACHABLE_AFTER);
                let s = seen.map(|(s, _)| s);
                Member {
                    node,
                    role: match (&s, fresh) {
                        (Some(s), true) => s.role.clone(),
                        _ => "unreachable".into(),
                    },
                    term: s.as_ref().map_or(0, |s| s.term),
                    pg_addr: s.as_ref().map(|s| s.pg_addr.clone()),
                    raft_addr: raft_addr.clone(),
                    applied_seq: s.as_ref().map(|s| s.applied_seq),
                    applied_index: s.as_ref().and_then(|s| s.applied_index),
                    last_log_index: s.as_ref().and_then(|s| s.last_log_index),
                    matched_index: matched
                        .as_ref()
                        .and_then(|r| r.get(&node).copied().flatten())
                        .map(|l| l.index),
                    last_contact_ms: age.map(|a| a.as_millis() as u64),
                    is_self: node == self.id.me,
                }
            })
            .collect()
    }

    fn admit(&self) -> hindsight_storage::Result<Stamp> {
        let deadline = Instant::now() + BARRIER_WAIT;
        loop {
            let m = self.metrics();
            if m.state != ServerState::Leader {
                return Err(Error::ReadOnlyReplica(self.role().standby_reason()));
            }
            let moving = self.transfer_to.load(Ordering::SeqCst);
            if moving != 0 {
                return Err(Error::ReadOnlyReplica(format!(
                    "leadership is moving from node {} to node {moving}; nothing was written",
                    self.id.me
                )));
            }
            if self.lease_lost(&m) {
                return Err(Error::ReadOnlyReplica(format!(
                    "node {} leads term {} but has not heard from a majority for {} ms",
                    self.id.me,
                    m.current_term,
                    m.millis_since_quorum_ack.unwrap_or_default()
                )));
            }
            let caught_up = m.last_applied.is_some_and(|a| {
                a.leader_id.term == m.current_term && Some(a.index) == m.last_log_index
            });
            if caught_up {
                return Ok(Stamp {
                    term: m.current_term,
                    node: self.id.me,
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::ReadOnlyReplica(format!(
                    "node {} leads term {} but has not yet applied its log",
                    self.id.me, m.current_term
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn transfer_leader(&self, to: u64) -> hindsight_storage::Result<String> {
        let voters = voters(&self.metrics());
        if !voters.contains(&to) {
            return Err(Error::InvalidArgument(format!(
                "node {to} is not a voter of this cluster (voters: {voters:?})"
            )));
        }
        let role = self.role();
        if role.kind != RoleKind::Leader {
            return Err(Error::ReadOnlyReplica(format!(
                "{}; run hindsight_transfer_leader on the leader",
                role.standby_reason()
            )));
        }
        if to == self.id.me {
            return Ok(format!("node {to} already leads term {}", role.term));
        }
        if self
            .transfer_to
            .compare_exchange(0, to, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(Error::ClusterState(
                "a leadership transfer is already running".into(),
            ));
        }
        tracing::info!(
            node = self.id.me,
            to,
            term = role.term,
            "leadership transfer begins"
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (raft, id, lease) = (self.raft.clone(), self.id.clone(), self.lease);
        self.runtime.spawn(async move {
            let r = hand_over(&raft, &id, to, role.term, lease).await;
            raft.runtime_config().heartbeat(true);
            raft.runtime_config().elect(true);
            let _ = tx.send(r);
        });
        let result = rx
            .recv_timeout(TRANSFER_TIMEOUT + lease * 4)
            .unwrap_or_else(|_| Err(format!("node {to} did not take over in time")));
        self.transfer_to.store(0, Ordering::SeqCst);
        match result {
            Ok(term) => {
                tracing::info!(node = self.id.me, to, term, "leadership transferred");
                Ok(format!("node {to} leads term {term}"))
            }
            Err(why) => {
                tracing::warn!(node = self.id.me, to, "leadership transfer failed: {why}");
                Err(Error::ClusterState(format!(
                    "leadership was not transferred: {why}"
                )))
            }
        }
    }

    fn change_members(&self, change: MemberChange) -> hindsight_storage::Result<String> {
        let role = self.role();
        if role.kind != RoleKind::Leader {
            return Err(Error::ReadOnlyReplica(format!(
                "{}; change members on the leader",
                role.standby_reason()
            )));
        }
        if self.transfer_to.load(Ordering::SeqCst) != 0 {
            return Err(Error::ClusterState(
                "a leadership transfer is running; change members after it".into(),
            ));
        }
        tracing::info!(node = self.id.me, ?change, "membership change requested");
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (raft, id) = (self.raft.clone(), self.id.clone());
        self.runtime.spawn(async move {
            let _ = tx.send(crate::membership::change(&raft, &id, change).await);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(Error::OutcomeUnknown(
                "the raft runtime stopped during the membership change".into(),
            ))
        })
    }

    fn replicate(
        &self,
        stamp: Stamp,
        payloads: Vec<Vec<u8>>,
    ) -> hindsight_storage::Result<Outcome> {
        let req = Request::Data {
            stamp: (stamp.term, stamp.node),
            payloads,
        };
        match self.propose(req)? {
            Response::Applied => Ok(Outcome::Applied),
            Response::Stale => Ok(Outcome::Stale),
            Response::None => Err(Error::OutcomeUnknown(
                "the replicated log answered a commit with no outcome".into(),
            )),
        }
    }
}
