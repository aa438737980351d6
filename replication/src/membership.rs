//! Changing the cluster's members on the leader: `hindsight_add_learner`,
//! `hindsight_promote`, `hindsight_remove_node`.
//!
//! A new node is started with `--join` (it forms nothing and adopts the cluster
//! that calls it), added as a learner with its Raft address (recorded in the
//! membership, so every member can reach it), catches up by snapshot and then by
//! the log, and is promoted to voter by openraft's joint consensus once it is at
//! most [`PROMOTE_LAG`] entries behind. Voters that formed the cluster carry no
//! address in the membership; the first change fills theirs in from the leader's
//! `--peers`, so a joined node can reach them too.
//!
//! Invariants: the leader is never removed (transfer leadership first); a change
//! answers only once openraft has committed it, and one that times out is 40003
//! (it may still commit).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hindsight_storage::{Error, MemberChange, Result};
use openraft::ChangeMembers;
use openraft::error::{ClientWriteError, RaftError};

use crate::identity::Identity;
use crate::types::{Membership, Metrics, NodeId, NodeInfo, Raft};

/// How long a membership change may take to commit.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A learner may become a voter once it is at most this many entries behind.
pub const PROMOTE_LAG: u64 = 64;

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            Error::ReadOnlyReplica(format!(
                "leadership moved (to {:?}) before the change was proposed",
                f.leader_id
            ))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            Error::ClusterState(format!("the membership was not changed: {c}"))
        }
        RaftError::Fatal(f) => Error::OutcomeUnknown(format!(
            "the replicated log failed during the membership change: {f}"
        )),
    }
}

fn voter_list(m: &Membership) -> String {
    let v: Vec<String> = m.voter_ids().map(|n| n.to_string()).collect();
    v.join(", ")
}

/// Run `change` on this leader; answers what the membership is afterwards.
pub(crate) async fn change(raft: &Raft, id: &Identity, change: MemberChange) -> Result<String> {
    let m: Metrics = raft.metrics().borrow().clone();
    let work = async {
        match change {
            MemberChange::AddLearner { node, raft_addr } => {
                add_learner(raft, id, &m, node, raft_addr).await
            }
            MemberChange::Promote { node } => promote(raft, &m, node).await,
            MemberChange::Remove { node } => remove(raft, id, &m, node).await,
        }
    };
    tokio::time::timeout(CHANGE_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(Error::OutcomeUnknown(format!(
                "the membership change was not committed within {CHANGE_TIMEOUT:?}; \
                 it may still take effect (see hindsight_cluster)"
            )))
        })
}

async fn add_learner(
    raft: &Raft,
    id: &Identity,
    m: &Metrics,
    node: NodeId,
    raft_addr: String,
) -> Result<String> {
    let membership = m.membership_config.membership();
    if node == 0 {
        return Err(Error::InvalidArgument("node id 0 is reserved".into()));
    }
    if membership.voter_ids().any(|v| v == node) {
        return Err(Error::InvalidArgument(format!(
            "node {node} is already a voter (voters: {})",
            voter_list(membership)
        )));
    }
    if !raft_addr.contains(':') {
        return Err(Error::InvalidArgument(format!(
            "\"{raft_addr}\" is not a Raft address (HOST:PORT)"
        )));
    }
    fill_voter_addresses(raft, id, membership).await?;
    let info = NodeInfo {
        raft_addr: Some(raft_addr.clone()),
    };
    id.learn(std::iter::once((&node, &info)));
    raft.add_learner(node, info, false)
        .await
        .map_err(write_error)?;
    tracing::info!(node, addr = %raft_addr, "learner added");
    Ok(format!(
        "node {node} is a learner at {raft_addr}; it catches up by snapshot and log, \
         then hindsight_promote({node}) makes it a voter"
    ))
}

/// Record the `--peers` address of every voter the membership has none for.
async fn fill_voter_addresses(raft: &Raft, id: &Identity, membership: &Membership) -> Result<()> {
    let missing: BTreeMap<NodeId, NodeInfo> = membership
        .nodes()
        .filter(|(_, info)| info.raft_addr.is_none())
        .filter_map(|(n, _)| {
            id.configured(*n).map(|a| {
                (
                    *n,
                    NodeInfo {
                        raft_addr: Some(a.clone()),
                    },
                )
            })
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    raft.change_membership(ChangeMembers::SetNodes(missing), true)
        .await
        .map_err(write_error)?;
    Ok(())
}

async fn promote(raft: &Raft, m: &Metrics, node: NodeId) -> Result<String> {
    let membership = m.membership_config.membership();
    if membership.voter_ids().any(|v| v == node) {
        return Ok(format!(
            "node {node} is already a voter (voters: {})",
            voter_list(membership)
        ));
    }
    if membership.get_node(&node).is_none() {
        return Err(Error::InvalidArgument(format!(
            "node {node} is not a learner of this cluster: add it with hindsight_add_learner first"
        )));
    }
    let matched = m
        .replication
        .as_ref()
        .and_then(|r| r.get(&node).copied().flatten())
        .map(|l| l.index);
    let last = m.last_log_index.unwrap_or(0);
    let behind = last.saturating_sub(matched.unwrap_or(0));
    if matched.is_none() || behind > PROMOTE_LAG {
        return Err(Error::ClusterState(format!(
            "node {node} is not caught up ({behind} entries behind the leader's {last}); \
             promote it once hindsight_cluster shows it streaming"
        )));
    }
    let r = raft
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node])), false)
        .await
        .map_err(write_error)?;
    let voters = r.membership.as_ref().map_or_else(String::new, voter_list);
    tracing::info!(node, %voters, "learner promoted to voter");
    Ok(format!("node {node} is a voter (voters: {voters})"))
}

async fn remove(raft: &Raft, id: &Identity, m: &Metrics, node: NodeId) -> Result<String> {
    let membership = m.membership_config.membership();
    if node == id.me {
        return Err(Error::ClusterState(format!(
            "node {node} leads: hand leadership to another voter first (hindsight_transfer_leader)"
        )));
    }
    let change = if membership.voter_ids().any(|v| v == node) {
        ChangeMembers::RemoveVoters(BTreeSet::from([node]))
    } else if membership.get_node(&node).is_some() {
        ChangeMembers::RemoveNodes(BTreeSet::from([node]))
    } else {
        return Err(Error::InvalidArgument(format!(
            "node {node} is not a member of this cluster"
        )));
    };
    let r = raft
        .change_membership(change, false)
        .await
        .map_err(write_error)?;
    let voters = r.membership.as_ref().map_or_else(String::new, voter_list);
    tracing::info!(node, %voters, "node removed from the cluster");
    Ok(format!(
        "node {node} is no longer a member (voters: {voters}); stop it and drop it from --peers"
    ))
}
