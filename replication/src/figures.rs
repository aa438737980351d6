//! Raft figures for `/metrics`: term, role, leader changes, commit latency and each
//! peer's replication lag, as plain numbers (no openraft types leave the crate).
//!
//! Invariant: counters only grow; the latency histogram's buckets are cumulative
//! when rendered (each observation lands in the first bucket whose bound it fits).

use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::proposer::Proposer;

/// Upper bounds of the commit latency buckets, in seconds (the last is +Inf).
pub const COMMIT_BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 10.0];

/// Counters the proposer and the role watcher update.
#[derive(Default)]
pub(crate) struct Counters {
    leader_changes: AtomicU64,
    commits: AtomicU64,
    commit_micros: AtomicU64,
    buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
}

impl Counters {
    pub(crate) fn leader_changed(&self) {
        self.leader_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// One proposal that was committed and applied here, and how long it took.
    pub(crate) fn committed(&self, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.commit_micros.fetch_add(micros, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let i = COMMIT_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(COMMIT_BUCKETS.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn fill(&self, f: &mut Figures) {
        f.leader_changes = self.leader_changes.load(Ordering::Relaxed);
        f.commits = self.commits.load(Ordering::Relaxed);
        f.commit_seconds_sum = self.commit_micros.load(Ordering::Relaxed) as f64 / 1e6;
        f.commit_buckets = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
    }
}

/// One peer as the leader sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerLag {
    pub node: u64,
    /// Entries the peer's durable log is behind the leader's (None: not yet known).
    pub lag_entries: Option<u64>,
    /// Milliseconds since this node last heard the peer's status.
    pub last_contact_ms: Option<u64>,
}

/// A snapshot of the figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub node: u64,
    pub term: u64,
    pub is_leader: bool,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// The last index the newest snapshot covers.
    pub snapshot_index: Option<u64>,
    /// The last index purged from the Raft log (entries up to it are gone).
    pub purged_index: Option<u64>,
    pub leader_changes: u64,
    pub commits: u64,
    pub commit_seconds_sum: f64,
    /// Per bucket of [`COMMIT_BUCKETS`] and +Inf, not cumulative.
    pub commit_buckets: Vec<u64>,
    /// Only on the leader: every other voter.
    pub peers: Vec<PeerLag>,
}

/// A handle the HTTP endpoint keeps; reads the live member's figures.
#[derive(Clone)]
pub struct FigureSource(pub(crate) Weak<Proposer>);

impl FigureSource {
    /// The figures now; `None` once the member has shut down.
    pub fn read(&self) -> Option<Figures> {
        self.0.upgrade().map(|p| p.figures())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_the_first_bucket_they_fit() {
        let c = Counters::default();
        c.committed(Duration::from_micros(500));
        c.committed(Duration::from_millis(3));
        c.committed(Duration::from_secs(60));
        let mut f = Figures::default();
        c.fill(&mut f);
        assert_eq!(f.commits, 3);
        assert_eq!(f.commit_buckets.len(), COMMIT_BUCKETS.len() + 1);
        assert_eq!((f.commit_buckets[0], f.commit_buckets[2]), (1, 1));
        assert_eq!(f.commit_buckets[COMMIT_BUCKETS.len()], 1);
        assert!((f.commit_seconds_sum - 60.0035).abs() < 1e-6);
    }
}
