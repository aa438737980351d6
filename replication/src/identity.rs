//! Who a node is on the Raft network: its id, its cluster's id, and the Raft
//! address of every member it knows.
//!
//! Addresses come from `--peers` first (they always win: a node may reach a peer
//! through its own route, e.g. a test proxy), then from the membership (a node
//! added with `hindsight_add_learner` is recorded there with its address).
//!
//! The cluster id is a hash of the initial voter ids, kept in `raft/CLUSTER` and
//! checked on every connection, so a misaddressed `--peers` entry cannot join
//! another group. A node started with `--join` has none until the first peer that
//! calls it is accepted: it then adopts that peer's cluster id and records it.
//!
//! Invariant: once known, a node's cluster id never changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{ReplError, ReplResult};
use crate::types::{NodeId, NodeInfo};

/// This node on the Raft network.
#[derive(Debug)]
pub struct Identity {
    pub me: NodeId,
    /// 0 while a joining node has not yet been called by its cluster.
    cluster: AtomicU64,
    raft_dir: PathBuf,
    /// `--peers`: these addresses are never replaced.
    configured: BTreeMap<NodeId, String>,
    /// Addresses learned from the membership.
    learned: RwLock<BTreeMap<NodeId, String>>,
}

impl Identity {
    pub fn new(
        me: NodeId,
        cluster: Option<u64>,
        raft_dir: &Path,
        configured: BTreeMap<NodeId, String>,
    ) -> Identity {
        Identity {
            me,
            cluster: AtomicU64::new(cluster.unwrap_or(0)),
            raft_dir: raft_dir.to_path_buf(),
            configured,
            learned: RwLock::new(BTreeMap::new()),
        }
    }

    /// The cluster id (0 until a joining node is adopted).
    pub fn cluster(&self) -> u64 {
        self.cluster.load(Ordering::Acquire)
    }

    /// Check a caller's cluster id; a joining node adopts the first one.
    pub fn accept_cluster(&self, cluster: u64) -> Result<(), String> {
        let mine = self.cluster();
        if mine == cluster {
            return Ok(());
        }
        if mine == 0
            && self
                .cluster
                .compare_exchange(0, cluster, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            tracing::info!(node = self.me, cluster = %format!("{cluster:016x}"), "joined a cluster");
            return write_cluster_file(&self.raft_dir, self.me, cluster).map_err(|e| e.to_string());
        }
        Err(format!(
            "node {} belongs to cluster {:016x}, not {cluster:016x}",
            self.me,
            self.cluster()
        ))
    }

    /// The Raft address of `node`, if known.
    pub fn addr(&self, node: NodeId) -> Option<String> {
        self.configured.get(&node).cloned().or_else(|| {
            let g = self.learned.read().unwrap_or_else(|e| e.into_inner());
            g.get(&node).cloned()
        })
    }

    /// The `--peers` address of `node` (what the leader records for voters the
    /// membership has no address of).
    pub fn configured(&self, node: NodeId) -> Option<&String> {
        self.configured.get(&node)
    }

    /// Remember the addresses the membership records.
    pub fn learn<'a>(&self, nodes: impl Iterator<Item = (&'a NodeId, &'a NodeInfo)>) {
        let mut g = self.learned.write().unwrap_or_else(|e| e.into_inner());
        for (id, info) in nodes {
            if let Some(addr) = &info.raft_addr {
                g.insert(*id, addr.clone());
            }
        }
    }

    /// Every node with a known address, this one included.
    pub fn known(&self) -> Vec<NodeId> {
        let g = self.learned.read().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<NodeId> = self.configured.keys().chain(g.keys()).copied().collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// The cluster id: a hash of the initial voter ids.
pub fn cluster_id(voters: &BTreeMap<NodeId, String>) -> u64 {
    let ids: Vec<String> = voters.keys().map(u64::to_string).collect();
    let text = format!("hindsight-cluster:{}", ids.join(","));
    let a = u64::from(crc32fast::hash(text.as_bytes()));
    let b = u64::from(crc32fast::hash(format!("{text}#").as_bytes()));
    (a << 32) | b
}

/// `raft/CLUSTER`: this data dir's node id and cluster id. Returns the stored
/// cluster id, `None` if the file does not exist yet; refuses another node id.
pub fn read_cluster_file(raft_dir: &Path, me: NodeId) -> ReplResult<Option<u64>> {
    let path = raft_dir.join("CLUSTER");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReplError::io(format!("reading {}", path.display()), e)),
    };
    let field = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
            .ok_or_else(|| ReplError::Corrupt(format!("{} has no {name}", path.display())))
    };
    let node: NodeId = field("node_id")?
        .parse()
        .map_err(|_| ReplError::Corrupt(format!("{}: bad node_id", path.display())))?;
    let stored = u64::from_str_radix(&field("cluster_id")?, 16)
        .map_err(|_| ReplError::Corrupt(format!("{}: bad cluster_id", path.display())))?;
    if node != me {
        return Err(ReplError::Config(format!(
            "{} belongs to node {node}, not node {me}: a data directory keeps its node id",
            raft_dir.display()
        )));
    }
    Ok(Some(stored))
}

/// Write `raft/CLUSTER` (temporary, fsync, rename, fsync of the directory).
pub fn write_cluster_file(raft_dir: &Path, me: NodeId, cluster: u64) -> ReplResult<()> {
    let path = raft_dir.join("CLUSTER");
    let tmp = raft_dir.join("CLUSTER.tmp");
    let text = format!("node_id = {me}\ncluster_id = {cluster:016x}\n");
    let io = |e| ReplError::io(format!("writing {}", path.display()), e);
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(raft_dir)
        .and_then(|f| f.sync_all())
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_file_keeps_the_node_id() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_cluster_file(dir.path(), 2).unwrap(), None);
        write_cluster_file(dir.path(), 2, 77).unwrap();
        assert_eq!(read_cluster_file(dir.path(), 2).unwrap(), Some(77));
        let err = read_cluster_file(dir.path(), 3).unwrap_err();
        assert!(err.to_string().contains("belongs to node 2"), "{err}");
    }

    #[test]
    fn cluster_id_depends_on_voter_ids_only() {
        let a = crate::parse_peers("1=a:1,2=b:2").unwrap();
        let b = crate::parse_peers("1=c:3,2=d:4").unwrap();
        let c = crate::parse_peers("1=a:1,3=b:2").unwrap();
        assert_eq!(cluster_id(&a), cluster_id(&b));
        assert_ne!(cluster_id(&a), cluster_id(&c));
    }

    #[test]
    fn a_joining_node_adopts_its_first_cluster_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::new(4, None, dir.path(), BTreeMap::new());
        assert_eq!(id.cluster(), 0);
        id.accept_cluster(99).unwrap();
        assert!(id.accept_cluster(98).is_err());
        assert_eq!(read_cluster_file(dir.path(), 4).unwrap(), Some(99));
    }

    #[test]
    fn configured_addresses_win_over_learned_ones() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::new(
            1,
            Some(5),
            dir.path(),
            BTreeMap::from([(1, "a:1".to_string()), (2, "proxy:2".to_string())]),
        );
        let info = |a: &str| NodeInfo {
            raft_addr: Some(a.into()),
        };
        let nodes = BTreeMap::from([(2, info("b:2")), (4, info("d:4")), (3, NodeInfo::default())]);
        id.learn(nodes.iter());
        assert_eq!(id.addr(2).as_deref(), Some("proxy:2"));
        assert_eq!(id.addr(4).as_deref(), Some("d:4"));
        assert_eq!(id.addr(3), None);
        assert_eq!(id.known(), vec![1, 2, 4]);
    }
}
