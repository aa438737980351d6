//! DDL interleaved with leader kills (REPLICATION.md A7): one client creates,
//! fills, alters and drops tables through a multi-host read-write connection while
//! the leader is SIGKILLed and restarted. Afterwards every replica has the same
//! catalog (tables and columns), every acknowledged CREATE / ADD COLUMN is there,
//! and every acknowledged DROP is gone everywhere with its rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::Cluster;

const WAIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// 25006: refused before anything was appended.
    Failed,
    /// Timeout, lost connection, 40003, 57P01: applied or not.
    Unknown,
}

/// The steps run for table `d{i}`, in order; DROP only for even `i`.
const STEPS: [&str; 4] = ["create", "insert", "add column", "drop"];

fn step_sql(i: usize, step: &str) -> String {
    match step {
        "create" => format!("CREATE TABLE d{i} (id BIGINT NOT NULL, v BIGINT, PRIMARY KEY (id))"),
        "insert" => format!("INSERT INTO d{i} (id, v) VALUES (1, {i})"),
        "add column" => format!("ALTER TABLE d{i} ADD COLUMN w BIGINT"),
        _ => format!("DROP TABLE d{i}"),
    }
}

type Log = Arc<Mutex<BTreeMap<(usize, &'static str), Outcome>>>;

async fn ddl_client(url: String, log: Log, stop: Arc<AtomicBool>) {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        for step in STEPS.iter().filter(|s| **s != "drop" || i % 2 == 0) {
            if client.is_none() {
                let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
                if let Ok(Ok((cl, conn))) =
                    tokio::time::timeout(Duration::from_secs(3), connect).await
                {
                    tokio::spawn(conn);
                    client = Some(cl);
                }
            }
            let outcome = match &client {
                None => Outcome::Failed,
                Some(cl) => {
                    let r = tokio::time::timeout(
                        Duration::from_secs(5),
                        cl.batch_execute(&step_sql(i, step)),
                    )
                    .await;
                    match r {
                        Ok(Ok(())) => Outcome::Ok,
                        Ok(Err(e)) if e.as_db_error().map(|d| d.code().code()) == Some("25006") => {
                            Outcome::Failed
                        }
                        _ => Outcome::Unknown,
                    }
                }
            };
            log.lock().unwrap().insert((i, step), outcome);
            if outcome != Outcome::Ok {
                client = None;
                break; // the next table starts afresh
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Table -> sorted columns, as `node` serves them.
async fn catalog_on(c: &Cluster, node: u64) -> BTreeMap<String, Vec<String>> {
    let s = c.member(node).connect().await;
    let rows = s
        .query(
            "SELECT table_name, column_name FROM information_schema.columns \
             WHERE table_schema = 'public' ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows {
        out.entry(r.get(0)).or_default().push(r.get(1));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_interleaved_with_leader_kills_leaves_equal_catalogs() {
    let mut c = Cluster::start(3);
    let url = format!("{}&load_balance_hosts=random", c.multi_host("read-write"));
    let log: Log = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let worker = tokio::spawn(ddl_client(url, log.clone(), stop.clone()));
    let kills: usize = std::env::var("HINDSIGHT_CLUSTER_DDL_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let leader = tokio::task::block_in_place(|| c.leader(WAIT));
        c.kill(leader);
        tokio::time::sleep(Duration::from_millis(500)).await;
        tokio::task::block_in_place(|| c.restart(leader));
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::SeqCst);
    worker.await.unwrap();

    // Every replica converges on one catalog.
    let deadline = Instant::now() + WAIT;
    let catalog = loop {
        let mut all = Vec::new();
        for n in 1..=3 {
            all.push(catalog_on(&c, n).await);
        }
        if all.windows(2).all(|w| w[0] == w[1]) {
            break all.remove(0);
        }
        assert!(Instant::now() < deadline, "catalogs differ: {all:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let log = log.lock().unwrap().clone();
    let ok = |i: usize, step: &str| log.get(&(i, step)) == Some(&Outcome::Ok);
    let tables = log.keys().map(|(i, _)| *i).max().unwrap_or(0) + 1;
    let mut dropped = 0;
    for i in 0..tables {
        let name = format!("d{i}");
        let dropped_ok = ok(i, "drop");
        let drop_unknown = log.get(&(i, "drop")) == Some(&Outcome::Unknown);
        if dropped_ok {
            dropped += 1;
            assert!(
                !catalog.contains_key(&name),
                "{name} was dropped: {catalog:?}"
            );
            continue;
        }
        if ok(i, "create") && !drop_unknown {
            let cols = catalog.get(&name).unwrap_or_else(|| panic!("{name} lost"));
            if ok(i, "add column") {
                assert!(cols.contains(&"w".to_string()), "{name}: {cols:?}");
            }
        }
    }
    let acked = log.values().filter(|o| **o == Outcome::Ok).count();
    eprintln!(
        "ddl: {} statements, {acked} acknowledged, {dropped} tables dropped, {} tables left",
        log.len(),
        catalog.len()
    );
    assert!(acked > 20, "too few DDL statements to mean anything");
    // Rows of the tables that remain are the same everywhere.
    for name in catalog.keys() {
        loop {
            let mut counts = Vec::new();
            for n in 1..=3 {
                let s = c.member(n).connect().await;
                let q = format!("SELECT count(*) FROM {name}");
                counts.push(s.query_one(&q, &[]).await.unwrap().get::<_, i64>(0));
            }
            if counts.windows(2).all(|w| w[0] == w[1]) {
                break;
            }
            assert!(Instant::now() < deadline, "{name}: {counts:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
