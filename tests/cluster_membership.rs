//! Changing a running cluster's members: a node started with `--join` is added
//! as a learner (it catches up by snapshot, the leader's log being purged, then by
//! the log), serves reads as a standby, is promoted to voter, and then counts in
//! the majority: with one original voter removed and another killed, writes
//! still commit because the new voter acknowledges them. The leader refuses to
//! remove itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, insert_facts};

const WAIT: Duration = Duration::from_secs(60);

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

async fn one(c: &tokio_postgres::Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    let row = c.query_one(sql, &[]).await?;
    Ok(row.get::<_, String>(0))
}

async fn count_on(c: &Cluster, node: u64) -> i64 {
    let s = c.member(node).connect().await;
    match s.query_one("SELECT count(*) FROM facts", &[]).await {
        Ok(r) => r.get(0),
        Err(_) => -1, // the table has not arrived yet
    }
}

async fn wait_count(c: &Cluster, node: u64, want: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let n = count_on(c, node).await;
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {node} has {n} rows, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_node_catches_up_is_promoted_and_counts_in_the_majority() {
    let mut c = Cluster::start_with(3, &["--raft-log-keep", "0"]);
    let (leader, lead) = c.with_facts(200).await;
    lead.batch_execute("VACUUM").await.unwrap();
    let deadline = Instant::now() + WAIT;
    while c
        .member(leader)
        .metric("hindsight_raft_purged_index")
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline, "the leader never purged its log");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let new = c.start_joining();
    let addr = format!("127.0.0.1:{}", c.member(new).raft);
    // Only the leader changes members.
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let f = c.member(follower).connect().await;
    let err = one(
        &f,
        &format!("SELECT hindsight_add_learner({new}, '{addr}')"),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "25006", "{err}");
    let said = one(
        &lead,
        &format!("SELECT hindsight_add_learner({new}, '{addr}')"),
    )
    .await
    .unwrap();
    assert!(said.contains("learner"), "{said}");
    wait_count(&c, new, 200).await;
    // A learner is a hot standby.
    let s = c.member(new).connect().await;
    let ro = s.simple_query("SHOW transaction_read_only").await.unwrap();
    let ro = ro.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(ro.as_deref(), Some("on"));
    let err = s
        .batch_execute("INSERT INTO facts (id, v) VALUES (-1, 0)")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "25006", "{err}");

    // Promote once caught up (the leader refuses while it is behind).
    let deadline = Instant::now() + WAIT;
    let said = loop {
        match one(&lead, &format!("SELECT hindsight_promote({new})")).await {
            Ok(s) => break s,
            Err(e) => {
                assert_eq!(code(&e), "55000", "{e}");
                assert!(Instant::now() < deadline, "never promoted: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(said.contains(&format!("{new} is a voter")), "{said}");

    // The leader will not remove itself; a follower goes, then another is killed:
    // the remaining majority is the leader and the new voter.
    let err = one(&lead, &format!("SELECT hindsight_remove_node({leader})"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "55000", "{err}");
    let others: Vec<u64> = (1..=3).filter(|&n| n != leader).collect();
    let said = one(
        &lead,
        &format!("SELECT hindsight_remove_node({})", others[0]),
    )
    .await
    .unwrap();
    assert!(said.contains("no longer a member"), "{said}");
    c.kill(others[0]);
    c.kill(others[1]);
    insert_facts(&lead, 200..300).await;
    wait_count(&c, new, 300).await;
    let rows = lead
        .query(
            "SELECT node_id, role FROM hindsight_cluster ORDER BY node_id",
            &[],
        )
        .await
        .unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert!(ids.contains(&(new as i64)), "{ids:?}");
    assert!(!ids.contains(&(others[0] as i64)), "{ids:?}");
}
