//! The history checker of the replication tests (REPLICATION.md §9): writers record
//! each operation (unique ids, invoke and completion times, an outcome), and after
//! the faults heal every replica's `history(t, with_seq => true)` is read back. The
//! order of the writes is read from `_seq`, not searched for, so the check is
//! near-linear in the history's size.
//!
//! Checked: (1) every acknowledged write is on every replica; (2) no phantom (an id
//! never written, or written by a definitely failed operation) and no duplicate;
//! (3) an operation's rows are all there under one `_seq`, or none is;
//! (4) acknowledged before invoked means a smaller `_seq`; (7) `_system_time` does
//! not decrease as `_seq` grows; (8) every replica holds the same rows.

use std::collections::{BTreeMap, BTreeSet};

/// How an operation ended, as its client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged: it must be on every replica.
    Ok,
    /// A definite failure (25006, or refused before it was sent): it must be nowhere.
    Failed,
    /// 40003, 57P01, a lost connection or a timeout: either way, but whole.
    Unknown,
}

/// One write: a batch of unique ids in one statement.
#[derive(Clone, Debug)]
pub struct Op {
    pub ids: Vec<i64>,
    /// Microseconds on the test's clock.
    pub invoked: u64,
    pub completed: u64,
    pub outcome: Outcome,
}

/// One version read back from a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub seq: i64,
    pub id: i64,
    /// `_system_time` in microseconds.
    pub system_time: i64,
}

/// What the checker found; empty means the history is correct.
pub fn check(ops: &[Op], replicas: &BTreeMap<u64, Vec<Row>>) -> Vec<String> {
    let mut bad = Vec::new();
    let owner: BTreeMap<i64, usize> = ops
        .iter()
        .enumerate()
        .flat_map(|(i, op)| op.ids.iter().map(move |id| (*id, i)))
        .collect();
    let mut op_seqs: Vec<BTreeMap<u64, i64>> = vec![BTreeMap::new(); ops.len()];
    for (&node, rows) in replicas {
        let mut seen: BTreeMap<i64, i64> = BTreeMap::new();
        for r in rows {
            if seen.insert(r.id, r.seq).is_some() {
                bad.push(format!("node {node}: id {} is there twice", r.id));
            }
            match owner.get(&r.id) {
                None => bad.push(format!("node {node}: phantom id {} (never written)", r.id)),
                Some(&i) if ops[i].outcome == Outcome::Failed => bad.push(format!(
                    "node {node}: id {} of a write that failed definitely",
                    r.id
                )),
                Some(_) => {}
            }
        }
        for (i, op) in ops.iter().enumerate() {
            let present: BTreeSet<i64> = op
                .ids
                .iter()
                .filter_map(|id| seen.get(id))
                .copied()
                .collect();
            let count = op.ids.iter().filter(|id| seen.contains_key(id)).count();
            if op.outcome == Outcome::Ok && count < op.ids.len() {
                bad.push(format!(
                    "node {node}: acknowledged write {:?} is lost",
                    op.ids
                ));
            }
            if count > 0 && count < op.ids.len() {
                bad.push(format!("node {node}: write {:?} is there in part", op.ids));
            }
            if present.len() > 1 {
                bad.push(format!(
                    "node {node}: write {:?} split across seqs {present:?}",
                    op.ids
                ));
            }
            if let Some(&seq) = present.iter().next() {
                op_seqs[i].insert(node, seq);
            }
        }
        check_system_time(node, rows, &mut bad);
    }
    check_real_time_order(ops, &op_seqs, &mut bad);
    check_replicas_equal(replicas, &mut bad);
    bad
}

/// (7) `_system_time` never goes back as `_seq` grows.
fn check_system_time(node: u64, rows: &[Row], bad: &mut Vec<String>) {
    let mut sorted = rows.to_vec();
    sorted.sort();
    for w in sorted.windows(2) {
        if w[1].system_time < w[0].system_time {
            bad.push(format!(
                "node {node}: seq {} has an earlier _system_time than seq {}",
                w[1].seq, w[0].seq
            ));
        }
    }
}

/// (4) An operation acknowledged before another was invoked has a smaller `_seq`:
/// a sweep over invocations in time order, keeping the largest seq acknowledged so
/// far.
fn check_real_time_order(ops: &[Op], op_seqs: &[BTreeMap<u64, i64>], bad: &mut Vec<String>) {
    let nodes: BTreeSet<u64> = op_seqs.iter().flat_map(|m| m.keys().copied()).collect();
    for node in nodes {
        let mut acks: Vec<(u64, i64, usize)> = ops
            .iter()
            .enumerate()
            .filter(|(_, op)| op.outcome == Outcome::Ok)
            .filter_map(|(i, op)| op_seqs[i].get(&node).map(|s| (op.completed, *s, i)))
            .collect();
        acks.sort();
        let mut invokes: Vec<(u64, i64, usize)> = ops
            .iter()
            .enumerate()
            .filter_map(|(i, op)| op_seqs[i].get(&node).map(|s| (op.invoked, *s, i)))
            .collect();
        invokes.sort();
        let (mut a, mut max_acked): (usize, Option<(i64, usize)>) = (0, None);
        for (invoked, seq, i) in invokes {
            while a < acks.len() && acks[a].0 < invoked {
                if max_acked.is_none_or(|(s, _)| acks[a].1 > s) {
                    max_acked = Some((acks[a].1, acks[a].2));
                }
                a += 1;
            }
            if let Some((s, j)) = max_acked
                && s >= seq
            {
                bad.push(format!(
                    "node {node}: write {:?} (seq {seq}) was invoked after write {:?} (seq {s}) was acknowledged",
                    ops[i].ids, ops[j].ids
                ));
            }
        }
    }
}

/// (8) Every replica holds the same versions.
fn check_replicas_equal(replicas: &BTreeMap<u64, Vec<Row>>, bad: &mut Vec<String>) {
    let sets: Vec<(u64, BTreeSet<Row>)> = replicas
        .iter()
        .map(|(n, rows)| (*n, rows.iter().copied().collect()))
        .collect();
    for w in sets.windows(2) {
        let ((a, x), (b, y)) = (&w[0], &w[1]);
        if x != y {
            let only_a: Vec<_> = x.difference(y).take(3).collect();
            let only_b: Vec<_> = y.difference(x).take(3).collect();
            bad.push(format!(
                "nodes {a} and {b} differ: only on {a}: {only_a:?}; only on {b}: {only_b:?}"
            ));
        }
    }
}
