//! Three members in one process over real loopback TCP, each with its own engine
//! and Raft log: the cluster forms by itself, a write through the leader is on
//! every replica, followers refuse writes naming the leader, a new leader takes
//! over when the old one stops, and the old one catches up after a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hindsight_replication::{Cluster, ClusterConfig};
use hindsight_storage::{
    ColumnDef, DataType, Db, Error, Options, ReadAt, RoleKind, ScalarType, TableDef, TableOptions,
    Value, WriteBatch,
};

struct Node {
    id: u64,
    dir: PathBuf,
    db: Db,
    cluster: Cluster,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(id: u64, dir: &Path, peers: &BTreeMap<u64, String>) -> Node {
    let db = Db::open_replicated(dir, Options::default()).unwrap();
    let mut cfg = ClusterConfig::new(id, peers.clone(), format!("127.0.0.1:{}", 5440 + id));
    cfg.election_timeout_min = Duration::from_millis(300);
    cfg.election_timeout_max = Duration::from_millis(600);
    cfg.heartbeat = Duration::from_millis(50);
    let cluster = Cluster::start(db.clone(), cfg, Duration::from_secs(10))
        .await
        .unwrap();
    Node {
        id,
        dir: dir.to_path_buf(),
        db,
        cluster,
    }
}

async fn leader(nodes: &[&Node]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leaders: Vec<u64> = nodes
            .iter()
            .filter(|n| n.cluster.role().kind == RoleKind::Leader)
            .map(|n| n.id)
            .collect();
        if let [one] = leaders[..] {
            return one;
        }
        assert!(Instant::now() < deadline, "no single leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn table() -> TableDef {
    TableDef::new(
        "f",
        vec![
            ColumnDef::new("id", DataType::Scalar(ScalarType::Int64)).not_null(),
            ColumnDef::new("v", DataType::Scalar(ScalarType::Int64)),
        ],
        vec![0],
        None,
        TableOptions::default(),
    )
}

async fn put(db: &Db, id: i64, v: i64) -> Result<(), Error> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        let t = db.table("f")?;
        let mut b = WriteBatch::new();
        b.put(&t, &[Value::Int64(id), Value::Int64(v)])?;
        db.write(b).map(|_| ())
    })
    .await
    .unwrap()
}

async fn value(db: &Db, id: i64) -> Option<i64> {
    let t = db.table("f").ok()?;
    let row = db
        .get(&t, &[Value::Int64(id)], &ReadAt::latest(i64::MAX))
        .unwrap()?;
    match row.values.get(1) {
        Some(Value::Int64(v)) => Some(*v),
        _ => None,
    }
}

async fn eventually_equal(db: &Db, id: i64, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while value(db, id).await != Some(want) {
        assert!(Instant::now() < deadline, "row {id} never became {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_members_replicate_fail_over_and_catch_up() {
    let root = tempfile::tempdir().unwrap();
    let peers: BTreeMap<u64, String> = (1..=3)
        .map(|i| (i, format!("127.0.0.1:{}", free_port())))
        .collect();
    let mut nodes = Vec::new();
    for i in 1..=3 {
        nodes.push(start(i, &root.path().join(format!("n{i}")), &peers).await);
    }
    let first = leader(&nodes.iter().collect::<Vec<_>>()).await;
    let lead = nodes.iter().find(|n| n.id == first).unwrap();
    let db = lead.db.clone();
    tokio::task::spawn_blocking(move || db.create_table(table()))
        .await
        .unwrap()
        .unwrap();
    for i in 0..20 {
        put(&lead.db, i, i * 10).await.unwrap();
    }
    for n in &nodes {
        eventually_equal(&n.db, 19, 190).await;
    }

    // A follower refuses writes and names the leader.
    let follower = nodes.iter().find(|n| n.id != first).unwrap();
    let err = put(&follower.db, 1, 1).await.unwrap_err();
    assert!(matches!(err, Error::ReadOnlyReplica(_)), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("the leader is node {first}")),
        "{err}"
    );

    // Stop the leader: the other two elect a new one and take writes.
    let pos = nodes.iter().position(|n| n.id == first).unwrap();
    let old = nodes.remove(pos);
    let old_dir = old.dir.clone();
    old.cluster.shutdown().await;
    drop(old.db);
    let second = leader(&nodes.iter().collect::<Vec<_>>()).await;
    assert_ne!(second, first);
    let lead = nodes.iter().find(|n| n.id == second).unwrap();
    put(&lead.db, 100, 1000).await.unwrap();
    put(&lead.db, 19, 191).await.unwrap();

    // The old leader restarts as a follower and catches up from the log.
    let back = start(first, &old_dir, &peers).await;
    eventually_equal(&back.db, 100, 1000).await;
    eventually_equal(&back.db, 19, 191).await;
    assert_eq!(value(&back.db, 7).await, Some(70));
    nodes.push(back);
    assert_eq!(leader(&nodes.iter().collect::<Vec<_>>()).await, second);
    let seqs: Vec<u64> = nodes.iter().map(|n| n.db.visible_seq()).collect();
    assert!(seqs.iter().all(|s| *s == seqs[0]), "{seqs:?}");
    for n in nodes {
        n.cluster.shutdown().await;
    }
}
