//! Raft snapshots on a real three-node cluster: the leader snapshots its flushed
//! files and purges its log (here keeping no log behind the snapshot), so a member
//! that was down past the purge point catches up by receiving the snapshot
//! (checkpoint files over the Raft transport), then by the log; it keeps the
//! installed state across a restart, and every replica ends equal. A leader
//! stopped with SIGTERM hands leadership over first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, insert_facts};

const WAIT: Duration = Duration::from_secs(60);

/// The rows `node` serves (empty while it does not know the table yet).
async fn rows_on(c: &Cluster, node: u64) -> BTreeSet<(i64, i64)> {
    let client = c.member(node).connect().await;
    match client.query("SELECT id, v FROM facts", &[]).await {
        Ok(rows) => rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        Err(e) => {
            assert_eq!(
                e.as_db_error().map(|d| d.code().code()),
                Some("42P01"),
                "{e}"
            );
            BTreeSet::new()
        }
    }
}

/// Wait until `node` holds exactly `want`.
async fn wait_rows(c: &Cluster, node: u64, want: &BTreeSet<(i64, i64)>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let have = rows_on(c, node).await;
        if &have == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {node} holds {} rows, not the {} expected",
            have.len(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn wait_metric(c: &Cluster, node: u64, name: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = c.member(node).metric(name).unwrap_or(0);
        if v >= at_least {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "node {node}: {name} = {v}, waited for {at_least}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_behind_the_purged_log_catches_up_by_snapshot() {
    let mut c = Cluster::start_with(3, &["--raft-log-keep", "0"]);
    let (leader, lead) = c.with_facts(100).await;
    let lagging = (1..=3).find(|&n| n != leader).unwrap();
    let behind = c
        .member(lagging)
        .metric("hindsight_raft_applied_index")
        .unwrap();
    c.kill(lagging);

    // While it is down: more rows, one UPDATE-style overwrite, a flush on the leader.
    for k in 1..5 {
        insert_facts(&lead, k * 100..(k + 1) * 100).await;
    }
    lead.batch_execute("INSERT INTO facts (id, v) VALUES (7, -7)")
        .await
        .unwrap();
    lead.batch_execute("VACUUM").await.unwrap();
    // The leader snapshots the flushed files and purges its log past the point the
    // stopped member has.
    let purged = wait_metric(&c, leader, "hindsight_raft_purged_index", behind + 2);
    let snap = c
        .member(leader)
        .metric("hindsight_raft_snapshot_index")
        .unwrap();
    assert!(purged <= snap, "purged {purged} past the snapshot {snap}");
    let snapshots = c.member(leader).dir.join("snapshots");
    let names: Vec<String> = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        1,
        "only the newest snapshot is kept: {names:?}"
    );

    // Back up: the log it needs is gone, so it gets the snapshot, then the log.
    c.restart(lagging);
    insert_facts(&lead, 500..600).await;
    let want = rows_on(&c, leader).await;
    assert_eq!(want.len(), 600);
    assert!(want.contains(&(7, -7)));
    wait_rows(&c, lagging, &want).await;
    let installed = wait_metric(&c, lagging, "hindsight_raft_snapshot_index", purged);
    assert!(installed >= purged);
    let staged: Vec<String> = std::fs::read_dir(c.member(lagging).dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("recv-"))
        .collect();
    assert!(staged.is_empty(), "staging left behind: {staged:?}");

    // The installed state is durable: a restart keeps it and the log continues.
    c.kill(lagging);
    insert_facts(&lead, 600..650).await;
    c.restart(lagging);
    let want = rows_on(&c, leader).await;
    for n in 1..=3 {
        wait_rows(&c, n, &want).await;
    }
    // And the member serves the table the snapshot brought (catalog included).
    let s = c.member(lagging).connect().await;
    let n: i64 = s
        .query_one("SELECT count(*) FROM facts WHERE v = id * 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 649);

    // SIGTERM on the leader hands leadership over before it stops; it exits 0
    // and the others take writes at once.
    let leader = c.leader(WAIT);
    assert_eq!(c.stop(leader), Some(0));
    let said = c.member(leader).leadership_log.lock().unwrap().join("\n");
    assert!(
        said.contains("leadership handed over before stopping"),
        "{said}"
    );
    let next = c.leader(WAIT);
    assert_ne!(next, leader);
    insert_facts(&c.member(next).connect().await, 650..660).await;
}
