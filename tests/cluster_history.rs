//! Jepsen-style check of a three-server cluster under leader kills: writers record
//! every write (invoked, acknowledged, failed, unknown), the leader is SIGKILLed
//! and restarted again and again, and afterwards every replica's
//! `history(t, with_seq => true)` goes through the history checker
//! (`common::history`): no acknowledged write lost, no phantom, batches whole,
//! real-time order in `_seq`, identical replicas. The checker itself is tested first
//! on mutated histories: each kind of fault must be flagged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::cluster::Cluster;
use common::history::{Op, Outcome, Row, check};

/// Kills in one run from `var`, else `default` (REPLICATION.md A1/A4: 20 leader
/// kills in CI, 100 and 200 follower kills in the soak, `benches/soak.sh`).
fn kills(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const WRITERS: usize = 4;
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// How long a writer waits for one write before calling it unknown and moving on
/// (a paused leader never answers; its socket stays open).
const OP_TIMEOUT: Duration = Duration::from_secs(5);

// ---- the checker on known histories ---------------------------------------------

fn op(ids: &[i64], invoked: u64, completed: u64, outcome: Outcome) -> Op {
    Op {
        ids: ids.to_vec(),
        invoked,
        completed,
        outcome,
    }
}

fn row(seq: i64, id: i64) -> Row {
    Row {
        seq,
        id,
        system_time: seq * 10,
    }
}

/// A correct history: three writes, the second a two-row batch, the third unknown
/// and applied, a fourth failed and absent.
fn good() -> (Vec<Op>, BTreeMap<u64, Vec<Row>>) {
    let ops = vec![
        op(&[1], 0, 10, Outcome::Ok),
        op(&[2, 3], 20, 30, Outcome::Ok),
        op(&[4], 25, 40, Outcome::Unknown),
        op(&[5], 26, 41, Outcome::Failed),
    ];
    let rows = vec![row(7, 1), row(8, 2), row(8, 3), row(9, 4)];
    let replicas = (1..=3).map(|n| (n, rows.clone())).collect();
    (ops, replicas)
}

#[test]
fn the_checker_passes_a_correct_history() {
    let (ops, replicas) = good();
    assert_eq!(check(&ops, &replicas), Vec::<String>::new());
}

#[test]
fn the_checker_flags_every_kind_of_fault() {
    type Mutation = (&'static str, fn(&mut Vec<Op>, &mut BTreeMap<u64, Vec<Row>>));
    let mutations: [Mutation; 8] = [
        ("lost", |_, r| {
            r.get_mut(&2).unwrap().retain(|x| x.id != 1);
        }),
        ("phantom", |_, r| {
            for rows in r.values_mut() {
                rows.push(row(10, 99));
            }
        }),
        ("failed definitely", |_, r| {
            for rows in r.values_mut() {
                rows.push(row(10, 5));
            }
        }),
        ("twice", |_, r| {
            for rows in r.values_mut() {
                rows.push(row(10, 1));
            }
        }),
        ("split", |_, r| {
            for rows in r.values_mut() {
                rows.iter_mut()
                    .filter(|x| x.id == 3)
                    .for_each(|x| x.seq = 9);
            }
        }),
        ("in part", |_, r| {
            for rows in r.values_mut() {
                rows.retain(|x| x.id != 3);
            }
        }),
        ("invoked after", |_, r| {
            // Write 1 was acknowledged before write [2, 3] was invoked: swap them.
            for rows in r.values_mut() {
                for x in rows.iter_mut() {
                    x.seq = match x.id {
                        1 => 8,
                        2 | 3 => 7,
                        _ => x.seq,
                    };
                }
            }
        }),
        ("differ", |_, r| {
            r.get_mut(&3).unwrap().push(row(10, 4));
        }),
    ];
    for (what, mutate) in mutations {
        let (mut ops, mut replicas) = good();
        mutate(&mut ops, &mut replicas);
        let found = check(&ops, &replicas);
        assert!(
            found.iter().any(|f| f.contains(what)),
            "{what} not flagged: {found:?}"
        );
    }
    // Time going back along _seq.
    let (ops, mut replicas) = good();
    replicas.get_mut(&1).unwrap()[3].system_time = 0;
    let found = check(&ops, &replicas);
    assert!(
        found.iter().any(|f| f.contains("earlier _system_time")),
        "{found:?}"
    );
}

// ---- the cluster ------------------------------------------------------------------

/// The writers' shared record.
struct Record {
    started: Instant,
    next_id: AtomicI64,
    ops: Mutex<Vec<Op>>,
    stop: AtomicBool,
}

impl Record {
    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }
}

fn classify(e: &tokio_postgres::Error) -> Outcome {
    match e.as_db_error().map(|d| d.code().code()) {
        Some("25006") => Outcome::Failed,
        _ => Outcome::Unknown,
    }
}

/// One writer: multi-host read-write connections, batches of 1–3 fresh ids.
async fn writer(c: Arc<String>, rec: Arc<Record>, w: usize) {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut n = w;
    while !rec.stop.load(Ordering::SeqCst) {
        let Some(cl) = &client else {
            // A paused server accepts the TCP connection but never answers the
            // startup (libpq's connect_timeout covers only the socket): bound it,
            // and try the hosts in random order so a paused first host is skipped.
            let connect = tokio_postgres::connect(&c, tokio_postgres::NoTls);
            match tokio::time::timeout(Duration::from_secs(3), connect).await {
                Ok(Ok((cl, conn))) => {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    client = Some(cl);
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
            continue;
        };
        n += 1;
        let k = 1 + (n % 3) as i64;
        let first = rec.next_id.fetch_add(k, Ordering::SeqCst);
        let ids: Vec<i64> = (first..first + k).collect();
        let values: Vec<String> = ids.iter().map(|id| format!("({id}, {w})")).collect();
        let sql = format!("INSERT INTO reg (id, w) VALUES {}", values.join(", "));
        let invoked = rec.now();
        let result = tokio::time::timeout(OP_TIMEOUT, cl.execute(&sql, &[])).await;
        let outcome = match &result {
            Ok(Ok(_)) => Outcome::Ok,
            Ok(Err(e)) => classify(e),
            Err(_) => Outcome::Unknown,
        };
        let completed = rec.now();
        if outcome != Outcome::Ok {
            client = None;
        }
        rec.ops.lock().unwrap().push(Op {
            ids,
            invoked,
            completed,
            outcome,
        });
    }
}

async fn rows_on(c: &Cluster, node: u64) -> Vec<Row> {
    let client = c.member(node).connect().await;
    client
        .query(
            "SELECT id, _seq, _system_time FROM history(reg, with_seq => true)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| Row {
            id: r.get(0),
            seq: r.get(1),
            system_time: r
                .get::<_, SystemTime>(2)
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_micros() as i64,
        })
        .collect()
}

fn median_and_max(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], *v.last().unwrap())
}

/// Writers running against a cluster, recording every write.
struct Workload {
    rec: Arc<Record>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    /// Create the table on the leader and start the writers.
    async fn start(c: &Cluster) -> Workload {
        let leader = tokio::task::block_in_place(|| c.leader(LEADER_WAIT));
        c.member(leader)
            .connect()
            .await
            .batch_execute("CREATE TABLE reg (id BIGINT NOT NULL, w BIGINT, PRIMARY KEY (id))")
            .await
            .unwrap();
        let rec = Arc::new(Record {
            started: Instant::now(),
            next_id: AtomicI64::new(1),
            ops: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let url = Arc::new(format!(
            "{}&load_balance_hosts=random",
            c.multi_host("read-write")
        ));
        let writers = (0..WRITERS)
            .map(|w| tokio::spawn(writer(url.clone(), rec.clone(), w)))
            .collect();
        Workload { rec, writers }
    }

    fn now(&self) -> u64 {
        self.rec.now()
    }

    /// How long after `since` the first write invoked after it was acknowledged
    /// (one already in flight may still be answered by a dying leader's socket).
    async fn next_ack_after(&self, since: u64, what: &str) -> Duration {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let first = (self.rec.ops.lock().unwrap().iter())
                .filter(|op| op.outcome == Outcome::Ok && op.invoked > since)
                .map(|op| op.completed)
                .min();
            if let Some(at) = first {
                return Duration::from_micros(at - since);
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no write acknowledged since"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop the writers, wait until the replicas agree, and run the checker.
    async fn finish(self, c: &Cluster, label: &str, waits: Vec<Duration>) {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        self.rec.stop.store(true, Ordering::SeqCst);
        for w in self.writers {
            w.await.unwrap();
        }
        let ops = self.rec.ops.lock().unwrap().clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        let replicas = loop {
            let mut replicas = BTreeMap::new();
            for n in 1..=3 {
                let mut rows = rows_on(c, n).await;
                rows.sort();
                replicas.insert(n, rows);
            }
            let first = replicas.values().next().cloned();
            if replicas.values().all(|r| Some(r) == first.as_ref()) || Instant::now() > deadline {
                break replicas;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let count = |o: Outcome| ops.iter().filter(|op| op.outcome == o).count();
        let (p50, max) = median_and_max(waits);
        eprintln!(
            "{label}: {} writes: {} acknowledged, {} failed, {} unknown; {} rows per replica; fault -> next ack: median {p50:?}, max {max:?}",
            ops.len(),
            count(Outcome::Ok),
            count(Outcome::Failed),
            count(Outcome::Unknown),
            replicas.values().next().map_or(0, Vec::len),
        );
        assert!(count(Outcome::Ok) > 100, "too few writes to mean anything");
        let violations = check(&ops, &replicas);
        assert!(violations.is_empty(), "{violations:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_across_leader_kills() {
    let mut c = Cluster::start(3);
    let work = Workload::start(&c).await;
    let mut failovers = Vec::new();
    for round in 0..kills("HINDSIGHT_CLUSTER_KILLS", 20) {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let leader = tokio::task::block_in_place(|| c.leader(LEADER_WAIT));
        let killed = work.now();
        c.kill(leader);
        let what = format!("round {round}: leader {leader} killed");
        let took = work.next_ack_after(killed, &what).await;
        eprintln!("{what}; next acknowledged write after {took:?}");
        failovers.push(took);
        tokio::task::block_in_place(|| c.restart(leader));
    }
    work.finish(&c, "leader kills", failovers).await;
}

/// Followers killed and restarted under load (REPLICATION.md A4): writes go on at
/// the leader, and each follower catches up when it is back. The leader flushes
/// every second and keeps no log behind its snapshot, so a follower that was
/// down usually comes back by installing a snapshot under load, not by the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_across_follower_kills() {
    let mut c = Cluster::start_with(3, &["--raft-log-keep", "0"]);
    let work = Workload::start(&c).await;
    let flusher = tokio::spawn(vacuum_every_second(c.multi_host("read-write")));
    let mut waits = Vec::new();
    for round in 0..kills("HINDSIGHT_CLUSTER_FOLLOWER_KILLS", 10) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let leader = tokio::task::block_in_place(|| c.leader(LEADER_WAIT));
        let follower = (1..=3).filter(|&n| n != leader).nth(round % 2).unwrap();
        let at = work.now();
        c.kill(follower);
        let what = format!("round {round}: follower {follower} killed");
        waits.push(work.next_ack_after(at, &what).await);
        if round % 2 == 1 {
            // Down past a snapshot and purge: it comes back by snapshot install.
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
        tokio::task::block_in_place(|| c.restart(follower));
    }
    flusher.abort();
    work.finish(&c, "follower kills", waits).await;
}

/// VACUUM (flush and compact) on the leader once a second: snapshots follow.
async fn vacuum_every_second(url: String) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            let _ = client.batch_execute("VACUUM").await;
        }
    }
}

/// A leader paused with SIGSTOP (REPLICATION.md A2: 3-8 s; here 3 s): the
/// majority elects another and goes on; when the old one wakes it steps down and
/// nothing it had in flight is acknowledged unless committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_across_leader_pauses() {
    let c = Cluster::start(3);
    let work = Workload::start(&c).await;
    let mut waits = Vec::new();
    for round in 0..kills("HINDSIGHT_CLUSTER_PAUSES", 3) {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let leader = tokio::task::block_in_place(|| c.leader(LEADER_WAIT));
        let at = work.now();
        c.signal(leader, "-STOP");
        let what = format!("round {round}: leader {leader} paused");
        let took = work.next_ack_after(at, &what).await;
        eprintln!("{what}; next acknowledged write after {took:?}");
        waits.push(took);
        tokio::time::sleep(Duration::from_millis(3000).saturating_sub(took)).await;
        c.signal(leader, "-CONT");
    }
    work.finish(&c, "leader pauses", waits).await;
}

/// The partition cases of REPLICATION.md A2 through per-link proxies: an isolated
/// leader (the majority elects another and goes on; the old one acknowledges
/// nothing it cannot commit), an isolated follower, a bridge (the leader and one
/// follower cannot talk; the third node sees both), a one-way cut, and flapping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_across_partitions() {
    let c = Cluster::start_partitionable(3);
    let work = Workload::start(&c).await;
    let leader_now = || tokio::task::block_in_place(|| c.leader(LEADER_WAIT));
    let mut waits = Vec::new();
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let leader = leader_now();
        let at = work.now();
        c.isolate(leader);
        let what = format!("round {round}: leader {leader} isolated");
        let took = work.next_ack_after(at, &what).await;
        eprintln!("{what}; next acknowledged write after {took:?}");
        waits.push(took);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        c.heal();

        tokio::time::sleep(Duration::from_millis(1000)).await;
        let leader = leader_now();
        let follower = (1..=3).find(|&n| n != leader).unwrap();
        c.isolate(follower);
        let at = work.now();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let what = format!("round {round}: follower {follower} isolated");
        let took = work.next_ack_after(at, &what).await;
        eprintln!("{what}; next acknowledged write after {took:?}");
        c.heal();

        tokio::time::sleep(Duration::from_millis(1000)).await;
        let leader = leader_now();
        let far = (1..=3).rev().find(|&n| n != leader).unwrap();
        c.set_cut(leader, far, true);
        let at = work.now();
        tokio::time::sleep(Duration::from_millis(3000)).await;
        let what = format!("round {round}: bridge, {leader} and {far} cut apart");
        let took = work.next_ack_after(at, &what).await;
        eprintln!("{what}; next acknowledged write after {took:?}");
        c.heal();

        // One way: the leader's calls to a follower fail, the follower's calls to
        // the leader go through (it campaigns; the cluster must settle).
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let leader = leader_now();
        let follower = (1..=3).find(|&n| n != leader).unwrap();
        c.cut_one_way(leader, follower);
        let at = work.now();
        tokio::time::sleep(Duration::from_millis(3000)).await;
        let what = format!("round {round}: {leader} cannot reach {follower}");
        waits.push(work.next_ack_after(at, &what).await);
        c.heal();

        // Flapping: the leader isolated and healed every 300 ms for 3 s.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let leader = leader_now();
        for flip in 0..10 {
            match flip % 2 {
                0 => c.isolate(leader),
                _ => c.heal(),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        c.heal();
        let at = work.now();
        let what = format!("round {round}: after flapping around {leader}");
        waits.push(work.next_ack_after(at, &what).await);
    }
    work.finish(&c, "partitions", waits).await;
}
