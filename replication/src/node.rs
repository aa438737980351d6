//! A cluster member: its Raft runtime, log, transport, bootstrap and status poll.
//!
//! Start-up order: the engine is already open in replicated mode at its flushed
//! point; the Raft log is opened from `<data dir>/raft/`, `raft/CLUSTER` checked
//! (node id and cluster id), the Raft listener bound, openraft started (it
//! re-applies the committed entries after the engine's point), and, when the Raft
//! state is empty, the cluster initialized with every voter of `--peers`: the same
//! call on every node, so the first majority that meets forms the group. Only then
//! is the engine's write hook installed and the caller may open the SQL listener.
//!
//! openraft and the transport run on their own two-thread runtime, so a busy SQL
//! runtime never delays heartbeats.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use hindsight_storage::raftlog::{RaftLog, RaftLogOptions};
use hindsight_storage::{Db, Replicate, Role};
use openraft::{Config, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::error::{ReplError, ReplResult};
use crate::identity::{Identity, cluster_id, read_cluster_file, write_cluster_file};
use crate::logstore::LogStore;
use crate::proposer::Proposer;
use crate::snapshot::SnapshotStore;
use crate::statemachine::StateMachine;
use crate::transport::{self, Call, Network, Peer};
use crate::types::{NodeId, Raft};

/// How a member is started (the `--node-id`, `--peers` contract and `[cluster]`).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub node_id: NodeId,
    /// Every voter's Raft address by node id; the same list on every node.
    pub peers: BTreeMap<NodeId, String>,
    /// Where to serve Raft (default: this node's `peers` entry).
    pub raft_listen: Option<String>,
    /// This node's Postgres address, as clients should be told it.
    pub pg_addr: String,
    pub heartbeat: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// How long a COMMIT waits for a majority before answering 40003.
    pub commit_timeout: Duration,
    /// Started with `--join`: never forms a cluster; waits to be added by the
    /// leader (`hindsight_add_learner`) and adopts that cluster's id.
    pub join: bool,
    /// Bytes of Raft log kept behind the newest snapshot, so members down for a
    /// while catch up from the log rather than by a whole snapshot.
    pub raft_log_keep: u64,
}

impl ClusterConfig {
    /// The defaults of the design brief around the operator's ids and addresses.
    pub fn new(node_id: NodeId, peers: BTreeMap<NodeId, String>, pg_addr: String) -> Self {
        ClusterConfig {
            node_id,
            peers,
            raft_listen: None,
            pg_addr,
            heartbeat: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(600),
            election_timeout_max: Duration::from_millis(1200),
            commit_timeout: Duration::from_secs(10),
            raft_log_keep: 1 << 30,
            join: false,
        }
    }
}

/// Parse `--peers`: `1=HOST:PORT,2=HOST:PORT,...`.
pub fn parse_peers(s: &str) -> ReplResult<BTreeMap<NodeId, String>> {
    let mut peers = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| ReplError::Config(format!("peer \"{part}\" is not ID=HOST:PORT")))?;
        let id: NodeId = id.trim().parse().map_err(|_| {
            ReplError::Config(format!("peer id \"{id}\" is not a positive integer"))
        })?;
        if id == 0 {
            return Err(ReplError::Config("node id 0 is reserved".into()));
        }
        let addr = addr.trim();
        if !addr.contains(':') {
            return Err(ReplError::Config(format!(
                "peer {id} address \"{addr}\" has no port"
            )));
        }
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(ReplError::Config(format!("peer {id} is listed twice")));
        }
    }
    if peers.is_empty() {
        return Err(ReplError::Config("--peers lists no node".into()));
    }
    Ok(peers)
}

/// A running cluster member.
pub struct Cluster {
    runtime: Option<tokio::runtime::Runtime>,
    raft: Raft,
    proposer: Arc<Proposer>,
    roles: watch::Receiver<Role>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

/// How often each node asks its peers for their status.
const STATUS_EVERY: Duration = Duration::from_millis(500);

impl Cluster {
    /// Join (or form) the cluster with `db`, an engine opened with
    /// [`Db::open_replicated`]. Returns once the committed entries the engine had
    /// not flushed are applied again (or `catch_up` passes).
    pub async fn start(db: Db, cfg: ClusterConfig, catch_up: Duration) -> ReplResult<Cluster> {
        if !cfg.peers.contains_key(&cfg.node_id) {
            return Err(ReplError::Config(format!(
                "--node-id {} is not among --peers",
                cfg.node_id
            )));
        }
        let raft_dir = db.path().join("raft");
        std::fs::create_dir_all(&raft_dir)
            .map_err(|e| ReplError::io(format!("creating {}", raft_dir.display()), e))?;
        let stored = read_cluster_file(&raft_dir, cfg.node_id)?;
        let cluster = match (stored, cfg.join) {
            (Some(c), _) => {
                if !cfg.join && c != cluster_id(&cfg.peers) {
                    tracing::warn!(
                        "--peers names other voters than when this cluster was formed; \
                         the committed membership wins"
                    );
                }
                Some(c)
            }
            (None, true) => None,
            (None, false) => {
                let c = cluster_id(&cfg.peers);
                write_cluster_file(&raft_dir, cfg.node_id, c)?;
                Some(c)
            }
        };
        let log = RaftLog::open(&raft_dir, RaftLogOptions::default())?;
        let empty = log.state().vote.is_none() && log.last_log_id().is_none();
        let committed = log.state().committed.map(|c| c.index);
        let id = Arc::new(Identity::new(
            cfg.node_id,
            cluster,
            &raft_dir,
            cfg.peers.clone(),
        ));
        let listen = cfg
            .raft_listen
            .clone()
            .or_else(|| cfg.peers.get(&cfg.node_id).cloned())
            .unwrap_or_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hindsight-raft")
            .enable_all()
            .build()
            .map_err(|e| ReplError::io("starting the raft runtime", e))?;
        let handle = runtime.handle().clone();
        let listener = handle
            .spawn(async move {
                TcpListener::bind(listen.as_str())
                    .await
                    .map(|l| (l, listen))
            })
            .await
            .map_err(|e| ReplError::Raft(e.to_string()))?
            .map_err(|e| ReplError::io("binding the raft listener", e))?;
        let config = raft_config(&cfg)?;
        let snapshots = SnapshotStore::open(db.path(), db.applied().log.map(|l| l.index))?;
        let logs = LogStore::new(log);
        let (store, sm, net) = (
            logs.clone(),
            StateMachine::new(db.clone(), snapshots.clone()),
            Network::new(id.clone()),
        );
        let me = cfg.node_id;
        let raft = handle
            .spawn(async move { Raft::new(me, config, net, store, sm).await })
            .await
            .map_err(|e| ReplError::Raft(e.to_string()))?
            .map_err(|e| ReplError::Raft(e.to_string()))?;
        let proposer = Arc::new(Proposer::new(
            raft.clone(),
            handle.clone(),
            id.clone(),
            cfg.pg_addr.clone(),
            db.clone(),
            cfg.commit_timeout,
            cfg.election_timeout_max,
        ));
        let status = {
            let p = Arc::downgrade(&proposer);
            Arc::new(move || p.upgrade().map(|p| p.status()).unwrap_or_default())
        };
        tracing::info!(node = me, addr = %listener.1, "raft listener ready");
        handle.spawn(transport::serve(
            listener.0,
            transport::Served {
                id: id.clone(),
                raft: raft.clone(),
                status,
                snapshots: snapshots.clone(),
            },
        ));
        handle.spawn(compact_log(
            raft.clone(),
            db.clone(),
            logs.clone(),
            snapshots.clone(),
            cfg.raft_log_keep,
        ));
        let leader_changed = Arc::new(tokio::sync::Notify::new());
        handle.spawn(poll_status(
            id.clone(),
            Arc::downgrade(&proposer),
            leader_changed.clone(),
        ));
        let (roles_tx, roles) = watch::channel(proposer.role());
        handle.spawn(watch_roles(
            raft.clone(),
            id.clone(),
            Arc::downgrade(&proposer),
            roles_tx,
            leader_changed,
        ));
        if empty && !cfg.join {
            let voters: BTreeSet<NodeId> = cfg.peers.keys().copied().collect();
            let first = voters.first().copied() == Some(me);
            // The lowest id forms the cluster at once; the others give it a few
            // election timeouts to reach them before forming it themselves (so a
            // dead first node does not stop a first start, and a live one does not
            // race two other candidates into an extra election).
            let patience = if first {
                Duration::ZERO
            } else {
                cfg.election_timeout_max * 3
            };
            handle.spawn(form_cluster(raft.clone(), me, voters, patience));
        }
        if let Some(index) = committed {
            let r = raft.clone();
            let wait = handle.spawn(async move {
                r.wait(Some(catch_up))
                    .applied_index_at_least(Some(index), "re-apply committed entries")
                    .await
            });
            if let Ok(Err(e)) = wait.await {
                tracing::warn!(
                    node = me,
                    "still re-applying the log after {catch_up:?}: {e}"
                );
            }
        }
        let hook: Arc<dyn Replicate> = proposer.clone();
        let weak: Weak<dyn Replicate> = Arc::downgrade(&hook);
        db.set_replicator(weak)?;
        Ok(Cluster {
            runtime: Some(runtime),
            raft,
            proposer,
            roles,
        })
    }

    /// This node's role now.
    pub fn role(&self) -> Role {
        self.proposer.role()
    }

    /// A handle on this member's figures for `/metrics`.
    pub fn figures(&self) -> crate::figures::FigureSource {
        crate::figures::FigureSource(Arc::downgrade(&self.proposer))
    }

    /// This node's role, updated on every change of role, leader or term.
    pub fn role_changes(&self) -> watch::Receiver<Role> {
        self.roles.clone()
    }

    /// Stop Raft (the engine stays open; the caller closes it).
    pub async fn shutdown(mut self) {
        let raft = self.raft.clone();
        if let Some(rt) = self.runtime.take() {
            let _ = rt
                .handle()
                .spawn(async move { raft.shutdown().await })
                .await;
            rt.shutdown_background();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn raft_config(cfg: &ClusterConfig) -> ReplResult<Arc<Config>> {
    let ms = |d: Duration| d.as_millis() as u64;
    let config = Config {
        cluster_name: "hindsight".into(),
        heartbeat_interval: ms(cfg.heartbeat),
        election_timeout_min: ms(cfg.election_timeout_min),
        election_timeout_max: ms(cfg.election_timeout_max),
        // Snapshots follow flushes and the log is purged by bytes (`compact_log`),
        // never by openraft's own policies.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: u64::MAX,
        max_payload_entries: 64,
        ..Config::default()
    };
    Ok(Arc::new(
        config
            .validate()
            .map_err(|e| ReplError::Config(e.to_string()))?,
    ))
}

/// How often the snapshot and purge points are checked.
const COMPACT_EVERY: Duration = Duration::from_secs(1);

/// Keep the Raft log bounded: once the engine has flushed past the newest
/// snapshot, build a new one (it links the flushed files); then purge the log up
/// to that snapshot, keeping `keep` bytes of entries behind it for members that
/// are briefly away. So `purged <= snapshot <= flushed` always holds, and a
/// restart re-applies from the flushed point out of entries still held.
async fn compact_log(raft: Raft, db: Db, logs: LogStore, snapshots: Arc<SnapshotStore>, keep: u64) {
    let mut tick = tokio::time::interval(COMPACT_EVERY);
    loop {
        tick.tick().await;
        let snapshot = snapshots.last_log_id().map(|l| l.index);
        let flushed = db.durable_applied().map(|l| l.index);
        if flushed > snapshot && raft.trigger().snapshot().await.is_err() {
            return; // Raft stopped.
        }
        let Some(upto) = snapshot else { continue };
        if let Some(point) = logs.purge_point(upto, keep)
            && raft.trigger().purge_log(point).await.is_err()
        {
            return;
        }
    }
}

/// Initialize the Raft group with `voters` unless, within `patience`, another
/// member already did and reached this node.
async fn form_cluster(raft: Raft, me: NodeId, voters: BTreeSet<NodeId>, patience: Duration) {
    if !patience.is_zero() {
        let joined =
            |m: &crate::types::Metrics| m.current_leader.is_some() || m.last_log_index.is_some();
        let mut metrics = raft.metrics();
        if tokio::time::timeout(patience, metrics.wait_for(joined))
            .await
            .is_ok_and(|r| r.is_ok())
        {
            return;
        }
    }
    match raft.initialize(voters.clone()).await {
        Ok(()) => tracing::info!(node = me, ?voters, "cluster initialized"),
        Err(e) => tracing::info!(node = me, "cluster already initialized: {e}"),
    }
}

/// Ask every peer for its status every [`STATUS_EVERY`], and at once when the
/// leader changes: how followers learn the leader's Postgres address, and what
/// `hindsight_cluster` shows.
async fn poll_status(id: Arc<Identity>, proposer: Weak<Proposer>, leader_changed: Arc<Notify>) {
    let mut clients: BTreeMap<NodeId, Peer> = BTreeMap::new();
    let mut tick = tokio::time::interval(STATUS_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = leader_changed.notified() => {}
        }
        let Some(p) = proposer.upgrade() else { return };
        for n in id.known().into_iter().filter(|&n| n != id.me) {
            let c = clients.entry(n).or_insert_with(|| Peer::new(id.clone(), n));
            if let Ok(transport::Answer::Status(s)) = c.call(&Call::Status, &[], STATUS_EVERY).await
            {
                p.peers.record(s);
            }
        }
    }
}

/// Log every change of role, leader or term at info level and publish it.
async fn watch_roles(
    raft: Raft,
    id: Arc<Identity>,
    proposer: Weak<Proposer>,
    roles: watch::Sender<Role>,
    leader_changed: Arc<Notify>,
) {
    let mut rx = raft.metrics();
    let mut last = None;
    loop {
        let now = {
            let m = rx.borrow_and_update();
            id.learn(m.membership_config.nodes());
            (m.state, m.current_leader, m.current_term)
        };
        if last != Some(now) {
            let Some(p) = proposer.upgrade() else { return };
            if last.is_some_and(|(_, leader, _)| leader != now.1) && now.1.is_some() {
                p.counters.leader_changed();
                leader_changed.notify_one();
            }
            let role = p.role();
            tracing::info!(
                node = role.node,
                role = role.kind.name(),
                leader = ?now.1,
                term = now.2,
                "raft role"
            );
            roles.send_replace(role);
            last = Some(now);
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_refuse_bad_lists() {
        let p = parse_peers("1=127.0.0.1:7101, 2=127.0.0.1:7102,3=h:7103").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[&3], "h:7103");
        for bad in ["", "1", "x=h:1", "0=h:1", "1=h", "1=h:1,1=h:2"] {
            assert!(parse_peers(bad).is_err(), "{bad}");
        }
    }
}
