#!/usr/bin/env bash
# Replicated commit vs single node, side by side on this machine (REPLICATION.md §10,
# issue 22): the same binary once as a single node and once as a three-node cluster
# on loopback (three processes, one disk), interleaved per repetition. Workloads over
# the Postgres protocol with pgbench: one-row INSERT commits and 100-row INSERT
# commits at $CLIENTS clients, and a COPY of $COPY_ROWS rows (psql \copy, CSV).
# Against the cluster every client connects to the leader. Also: point lookups on a
# follower vs the leader (pgbench -S style script on the written table).
#
#     BIN=target/release/hindsight bash benches/replicated.sh
#
# Prints per-workload medians (TPS, p50/p99 latency in ms from pgbench's per-
# transaction log) and the ratio replicated / single; raw logs stay in $RUN.
#
# env (defaults): BIN [target/release/hindsight] CLIENTS ["1 16"] DURATION [15]
#   REPS [3] COPY_ROWS [1000000] BASE_PORT [6600] DATA_DIR [/tmp/fsbench-repl]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
: "${BIN:=$ROOT/target/release/hindsight}"; : "${CLIENTS:=1 16}"; : "${DURATION:=15}"
: "${REPS:=3}"; : "${COPY_ROWS:=1000000}"; : "${BASE_PORT:=6600}"; : "${DATA_DIR:=/tmp/fsbench-repl}"
RUN="$DATA_DIR/run.$(date +%Y%m%d_%H%M%S)"; mkdir -p "$RUN"
RES="$RUN/results.tsv"; : >"$RES"
PIDS=()

pg_port() { echo $((BASE_PORT + $1)); }        # node 0 = single, 1..3 = cluster
raft_port() { echo $((BASE_PORT + 10 + $1)); }
http_port() { echo $((BASE_PORT + 20 + $1)); }

stop_all() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  PIDS=()
}
trap stop_all EXIT

wait_ready() {  # wait_ready PORT
  for _ in $(seq 1 900); do
    pg_isready -q -h 127.0.0.1 -p "$1" && return 0
    sleep 0.1
  done
  echo "server on $1 did not become ready"; exit 1
}

start_single() {
  rm -rf "$DATA_DIR/n0"
  "$BIN" --listen "127.0.0.1:$(pg_port 0)" --http-listen off --data-dir "$DATA_DIR/n0" \
    >>"$RUN/n0.log" 2>&1 &
  PIDS+=($!)
  wait_ready "$(pg_port 0)"
  LEADER_PORT=$(pg_port 0); FOLLOWER_PORT=""
}

start_cluster() {
  local peers="1=127.0.0.1:$(raft_port 1),2=127.0.0.1:$(raft_port 2),3=127.0.0.1:$(raft_port 3)"
  for n in 1 2 3; do
    rm -rf "$DATA_DIR/n$n"
    "$BIN" --node-id "$n" --peers "$peers" --listen "127.0.0.1:$(pg_port "$n")" \
      --http-listen "127.0.0.1:$(http_port "$n")" --data-dir "$DATA_DIR/n$n" \
      >>"$RUN/n$n.log" 2>&1 &
    PIDS+=($!)
  done
  for n in 1 2 3; do wait_ready "$(pg_port "$n")"; done
  find_roles
}

# find_roles: LEADER_PORT and FOLLOWER_PORT of the cluster, once a leader stays.
find_roles() {
  LEADER_PORT=""; FOLLOWER_PORT=""
  for _ in $(seq 1 300); do
    for n in 1 2 3; do
      if curl -fs "http://127.0.0.1:$(http_port "$n")/primary" >/dev/null; then
        LEADER_PORT=$(pg_port "$n")
      elif curl -fs "http://127.0.0.1:$(http_port "$n")/replica" >/dev/null; then
        FOLLOWER_PORT=$(pg_port "$n")
      fi
    done
    if [ -n "$LEADER_PORT" ] && [ -n "$FOLLOWER_PORT" ]; then
      # A leader that still leads two seconds later (not one of a first election's).
      sleep 2
      curl -fs "http://127.0.0.1:$((LEADER_PORT + 20))/primary" >/dev/null && return 0
      LEADER_PORT=""; FOLLOWER_PORT=""
    fi
    sleep 0.1
  done
  echo "no leader"; exit 1
}

sql() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U bench -d hindsight -c "$2"; }
put() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RES"; echo "$1 $2 $3"; }

# pgbench_run LABEL NAME PORT CLIENTS SCRIPT [MODE]: TPS and latency p50/p99 (ms).
pgbench_run() {
  local label=$1 name=$2 port=$3 c=$4 script=$5 mode=${6:-prepared} dir
  dir=$(mktemp -d "$RUN/pgbench.XXXX")
  (cd "$dir" && pgbench -n -M "$mode" -h 127.0.0.1 -p "$port" -U bench -c "$c" -j "$(( c < 2 ? 1 : 2 ))" \
    -T "$DURATION" -l -f "$script" hindsight >"$dir/out.txt" 2>&1) || { cat "$dir/out.txt"; exit 1; }
  local tps; tps=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' "$dir/out.txt" | head -1)
  put "$label" "${name}_c${c}_tps" "$tps"
  read -r p50 p99 < <(cat "$dir"/pgbench_log.* | awk '{print $3}' | sort -n | awk '
    {v[NR]=$1} END {i50=int(NR*0.50); i99=int(NR*0.99); if(i50<1)i50=1; if(i99<1)i99=1;
    printf "%.3f %.3f\n", v[i50]/1000, v[i99]/1000}')
  put "$label" "${name}_c${c}_p50_ms" "$p50"
  put "$label" "${name}_c${c}_p99_ms" "$p99"
  rm -f "$dir"/pgbench_log.*
}

ONE="$RUN/one_row.sql"; BATCH="$RUN/batch100.sql"; LOOKUP="$RUN/lookup.sql"
printf '\\set id random(1, 2000000000)\nINSERT INTO w (id, v) VALUES (:id, 1);\n' >"$ONE"
{
  printf '\\set id random(1, 20000000)\nINSERT INTO w (id, v) VALUES '
  for k in $(seq 0 99); do printf '(:id * 100 + %d, %d)' "$k" "$k"; [ "$k" -lt 99 ] && printf ', '; done
  printf ';\n'
} >"$BATCH"
printf '\\set id random(1, %d)\nSELECT v FROM c WHERE id = :id;\n' "$COPY_ROWS" >"$LOOKUP"
python3 -c "
import sys
with open('$RUN/copy.csv', 'w') as f:
    for i in range(1, $COPY_ROWS + 1):
        f.write(f'{i},{i % 1000}\n')
"

one() {  # one repetition against a fresh deployment: LABEL single|cluster
  local label=$1 t0 t1
  stop_all
  if [ "$label" = single ]; then start_single; else start_cluster; fi
  sql "$LEADER_PORT" "CREATE TABLE w (id BIGINT NOT NULL, v BIGINT, PRIMARY KEY (id))"
  sql "$LEADER_PORT" "CREATE TABLE c (id BIGINT NOT NULL, v BIGINT, PRIMARY KEY (id))"
  for c in $CLIENTS; do
    pgbench_run "$label" insert1 "$LEADER_PORT" "$c" "$ONE"
    pgbench_run "$label" insert100 "$LEADER_PORT" "$c" "$BATCH" simple
  done
  t0=$(date +%s.%N)
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$LEADER_PORT" -U bench -d hindsight \
    -c "\\copy c FROM '$RUN/copy.csv' WITH (FORMAT csv)"
  t1=$(date +%s.%N)
  put "$label" copy_rows_per_s "$(python3 -c "print(round($COPY_ROWS/($t1-$t0)))")"
  # Three servers applying one 1M-row entry on two cores can miss heartbeats long
  # enough for an election: read from whoever leads afterwards.
  if [ "$label" = cluster ]; then find_roles; fi
  for c in $CLIENTS; do
    pgbench_run "$label" lookup_leader "$LEADER_PORT" "$c" "$LOOKUP"
    if [ -n "$FOLLOWER_PORT" ]; then
      # The follower has applied the COPY once it answers the last row.
      until [ "$(psql -X -At -h 127.0.0.1 -p "$FOLLOWER_PORT" -U bench -d hindsight \
        -c "SELECT count(*) FROM c WHERE id = $COPY_ROWS")" = 1 ]; do sleep 0.1; done
      pgbench_run "$label" lookup_follower "$FOLLOWER_PORT" "$c" "$LOOKUP"
    fi
  done
}

echo "binary $BIN; clients $CLIENTS; $DURATION s per run; $REPS repetitions; $(nproc) CPUs"
for r in $(seq 1 "$REPS"); do
  echo "=== rep $r $(date -Is) loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
  one single
  one cluster
done
stop_all
python3 - "$RES" <<'EOF'
import collections, statistics, sys
vals = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    label, metric, v = line.rstrip("\n").split("\t")
    vals[metric][label].append(float(v))
print("| metric | single median | cluster median | cluster / single | single runs | cluster runs |")
print("|---|---:|---:|---:|---|---|")
for m, d in vals.items():
    runs = lambda xs: " ".join(f"{x:g}" for x in xs)
    s = statistics.median(d["single"]) if d["single"] else float("nan")
    c = statistics.median(d["cluster"]) if d["cluster"] else float("nan")
    ratio = c / s if d["single"] and d["cluster"] and s else float("nan")
    print(f"| {m} | {s:,.3f} | {c:,.3f} | {ratio:.3f} | {runs(d['single'])} | {runs(d['cluster'])} |")
EOF
echo "raw: $RUN"
