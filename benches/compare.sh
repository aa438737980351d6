#!/usr/bin/env bash
# Hindsight side by side with PostgreSQL, DuckDB and Redis: same data, same machine,
# same clients, one run. The one command (fresh machine included):
#
#     bash benches/compare.sh
#
# It installs what is missing (Debian postgresql, redis; pip numpy pyarrow duckdb
# psycopg), builds the release binary, generates the data with ../shared/bench/gen.py,
# starts PostgreSQL (../shared/bench/servers.sh: loopback, its own data dir, port 5433),
# Redis (port 6380) and Hindsight (port $HS_PORT, data in $HS_DATA), runs the workloads,
# stops the servers, and writes BENCHMARKS.md (a markdown table of medians and ratios,
# the machine, the commands). Raw logs: $DATA_DIR/compare.<timestamp>/.
#
# Workloads (each as median over REPS and as a ratio Hindsight / peer):
#   ingest   COPY of the E x V versions over pgwire (psql \copy, durable: fsync on commit
#            in both), bytes on disk after ingest and after compaction (VACUUM) vs
#            PostgreSQL's table + index and the Parquet (zstd) file
#   online   pgbench -M prepared at $CLIENTS clients: SELECT 1, latest by key, as-of
#            (key, T), batch of 100 keys = ANY(...); Redis HGETALL for orientation
#   offline  point-in-time join of the spine (Hindsight ASOF JOIN, DuckDB ASOF JOIN,
#            PostgreSQL LATERAL ... LIMIT 1 on a scaled-down spine) and the as-of
#            snapshot; wall time, server CPU, peak memory
#   growth   latest-by-key latency (1 client) on tables of 1M and 10M versions
#            (GROWTH_LONG=1 adds 100M: ~30 GB of CSV, hours)
#
# Environment (defaults in brackets): E [1000000] V [10] S [1000000] REPS [3]
#   DURATION [20] s per pgbench run, CLIENTS ["1 4 16"], HS_PORT [6543],
#   STEPS ["setup build gen servers ingest online offline growth report"],
#   OFFLINE_PG_SPINE [100000] spine rows for PostgreSQL's LATERAL join,
#   DATA_DIR [/tmp/fsbench], SHARED_BENCH [../shared/bench], KEEP_SERVERS=1 leaves them up.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export SHARED_BENCH="${SHARED_BENCH:-$(cd "$ROOT/../shared/bench" && pwd)}"
. "$SHARED_BENCH/env.sh"
export E V S REPS DATA_DIR
: "${STEPS:=setup build gen servers ingest online offline growth report}"
: "${HS_PORT:=6543}"; : "${HS_DATA:=$DATA_DIR/hindsight-data}"
: "${DURATION:=20}"; : "${CLIENTS:=1 4 16}"; : "${OFFLINE_PG_SPINE:=100000}"
: "${GROWTH_LONG:=0}"
export DURATION CLIENTS
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hindsight/target}"
HS_BIN="${HS_BIN:-$CARGO_TARGET_DIR/release/hindsight}"
RUN="${RUN:-$DATA_DIR/compare.$(date +%Y%m%d_%H%M%S)}"; mkdir -p "$RUN"
echo "run directory: $RUN"
record() { echo "$1=$2" >>"$RUN/results.env"; }   # key=value figures for the report
record run_params "E=$E V=$V S=$S REPS=$REPS DURATION=$DURATION CLIENTS=\"$CLIENTS\""
record hs_rev "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
COLS_DDL="entity_id BIGINT NOT NULL, event_ts TIMESTAMP NOT NULL,
 f1 DOUBLE PRECISION, f2 DOUBLE PRECISION, f3 DOUBLE PRECISION, f4 DOUBLE PRECISION,
 f5 DOUBLE PRECISION, f6 DOUBLE PRECISION, f7 DOUBLE PRECISION, f8 DOUBLE PRECISION,
 c1 BIGINT, c2 BIGINT"

now() { date +%s.%N; }
hs_psql() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$HS_PORT" -U bench -d hindsight "$@"; }

# --- setup: what a fresh Debian machine lacks ---------------------------------------
setup() {
  local pkgs=()
  command -v pgbench >/dev/null || pkgs+=(postgresql postgresql-contrib)
  [ -x "$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)/initdb" ] || pkgs+=(postgresql)
  command -v redis-server >/dev/null || pkgs+=(redis-server)
  command -v redis-benchmark >/dev/null || pkgs+=(redis-tools)
  if [ ${#pkgs[@]} -gt 0 ]; then
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
    # The Debian packages start their own servers; the suite runs its own instances.
    $sudo systemctl stop redis-server postgresql >/dev/null 2>&1 \
      || { $sudo service redis-server stop; $sudo service postgresql stop; } >/dev/null 2>&1 || true
  fi
  python3 -c "import numpy, pyarrow, duckdb, psycopg" 2>/dev/null \
    || python3 -m pip install -q numpy pyarrow duckdb "psycopg[binary]"
}

# --- Hindsight server ------------------------------------------------------------------
HS_PID=""
hs_start() {
  "$HS_BIN" --listen "127.0.0.1:$HS_PORT" --data-dir "$HS_DATA" --metrics-listen 127.0.0.1:0 \
    >>"$RUN/hindsight.log" 2>&1 &
  HS_PID=$!
  for _ in $(seq 1 600); do
    pg_isready -q -h 127.0.0.1 -p "$HS_PORT" && return 0
    kill -0 "$HS_PID" 2>/dev/null || { tail -20 "$RUN/hindsight.log"; echo "hindsight exited"; exit 1; }
    sleep 0.1
  done
  echo "hindsight did not become ready"; exit 1
}
hs_stop() {
  [ -n "$HS_PID" ] || return 0
  kill -TERM "$HS_PID" 2>/dev/null || true
  wait "$HS_PID" 2>/dev/null || true
  HS_PID=""
}
cleanup() {
  hs_stop
  [ "${KEEP_SERVERS:-0}" = 1 ] || "$SHARED_BENCH/servers.sh" stop all >/dev/null 2>&1 || true
}
trap cleanup EXIT

# --- ingest ------------------------------------------------------------------------------
hs_ingest() {
  local csv="$DATA_DIR/features.csv" secs=() cpus=() t0 t1
  for r in $(seq 1 "$REPS"); do
    hs_stop; rm -rf "$HS_DATA"; hs_start
    hs_psql -c "CREATE TABLE $HIST_TABLE ($COLS_DDL, PRIMARY KEY (entity_id)) WITH (event_time = 'event_ts')"
    t0=$(now)
    python3 "$SHARED_BENCH/cpuwatch.py" --pid "$HS_PID" --json "$RUN/ingest_cpu.json" -- \
      psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$HS_PORT" -U bench -d hindsight \
      -c "\\copy $HIST_TABLE FROM '$csv' WITH (FORMAT csv, HEADER true)"
    t1=$(now)
    secs+=("$(python3 -c "print(f'{$t1-$t0:.3f}')")")
    cpus+=("$(python3 -c "import json;print(json.load(open('$RUN/ingest_cpu.json'))['server_cpu_s'])")")
    echo "hindsight rep $r: COPY ${secs[-1]}s, server CPU ${cpus[-1]}s"
  done
  record hs_copy_s "${secs[*]}"; record hs_copy_cpu_s "${cpus[*]}"
  record hs_bytes_after_ingest "$(du -sb "$HS_DATA" | cut -f1)"
  t0=$(now); hs_psql -c "VACUUM"; t1=$(now)
  record hs_vacuum_s "$(python3 -c "print(f'{$t1-$t0:.3f}')")"
  record hs_bytes_after_compaction "$(du -sb "$HS_DATA" | cut -f1)"
  record hs_sst_bytes "$(find "$HS_DATA" -name '*.sst' -printf '%s\n' | awk '{s+=$1} END {print s+0}')"
  hs_psql -c "CREATE TABLE $SPINE_TABLE (entity_id BIGINT NOT NULL, ts TIMESTAMP NOT NULL)" \
    -c "\\copy $SPINE_TABLE FROM '$DATA_DIR/spine.csv' WITH (FORMAT csv, HEADER true)"
}
pg_ingest() {
  INDEXED_REPS="$REPS" "$SHARED_BENCH/ingest.sh" | tee "$RUN/pg_ingest.log"
  record pg_bytes "$(psql -X -At -c "SELECT pg_table_size('$HIST_TABLE') + pg_indexes_size('$HIST_TABLE')")"
  record pg_heap_bytes "$(psql -X -At -c "SELECT pg_table_size('$HIST_TABLE')")"
  record parquet_bytes "$(stat -c %s "$DATA_DIR/features.parquet")"
  record csv_bytes "$(stat -c %s "$DATA_DIR/features.csv")"
}

# COPY a CSV (with header) in chunks of $COPY_CHUNK_ROWS rows, one COPY (one atomic
# batch) each: a single COPY is one write batch, and a batch is at most 1 GiB (about
# 9M rows of this width), so the 100M-version table is loaded in pieces.
: "${COPY_CHUNK_ROWS:=5000000}"
hs_copy_chunks() {
  tail -n +2 "$2" | split -l "$COPY_CHUNK_ROWS" --filter \
    "psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p $HS_PORT -U bench -d hindsight -c '\\copy $1 FROM pstdin WITH (FORMAT csv)'"
}

# --- growth: latest-by-key latency vs table size -------------------------------------------
growth() {
  local sizes="1000000" n e dir tbl
  [ "$GROWTH_LONG" = 1 ] && sizes="$sizes 100000000"
  for n in $sizes; do
    e=$((n / V)); dir="$DATA_DIR/growth_$n"; tbl="features_$n"
    [ -f "$dir/meta.json" ] || python3 "$SHARED_BENCH/gen.py" --out "$dir" -E "$e" -V "$V" -S 1000 --format csv
    hs_psql -c "DROP TABLE IF EXISTS $tbl" \
      -c "CREATE TABLE $tbl ($COLS_DDL, PRIMARY KEY (entity_id)) WITH (event_time = 'event_ts')"
    hs_copy_chunks "$tbl" "$dir/features.csv"
    hs_psql -c "VACUUM"
    E="$e" HIST_TABLE="$tbl" WORKLOADS="latest" CLIENTS=1 PGPORT="$HS_PORT" PGUSER=bench \
      PGDATABASE=hindsight SERVER_PID="$HS_PID" "$ROOT/benches/online_hs.sh" | tee "$RUN/growth_$n.log"
    echo "$n $(grep -o 'raw: .*' "$RUN/growth_$n.log" | cut -d' ' -f2)" >>"$RUN/growth.paths"
  done
}

for step in $STEPS; do
  echo "=== $step  $(date -Is)  loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
  case $step in
    setup) setup ;;
    build) (cd "$ROOT" && cargo build --release --locked --bin hindsight) ;;
    gen) [ -f "$DATA_DIR/meta.json" ] && echo "data exists in $DATA_DIR (rm meta.json to regenerate)" \
           || python3 "$SHARED_BENCH/gen.py" --out "$DATA_DIR" -E "$E" -V "$V" -S "$S" ;;
    servers) "$SHARED_BENCH/servers.sh" start all; hs_start ;;
    ingest)
      # (process substitution, not a pipe: hs_ingest restarts the server in this shell)
      hs_ingest > >(tee "$RUN/hs_ingest.log") 2>&1
      pg_ingest ;;
    online)
      WORKLOADS="select1 latest asof batch100" SERVER_PID="" "$SHARED_BENCH/online_pg.sh" \
        | tee "$RUN/pg_online.log"
      WORKLOADS="select1 latest asof batch100" PGPORT="$HS_PORT" PGUSER=bench PGDATABASE=hindsight \
        SERVER_PID="$HS_PID" "$ROOT/benches/online_hs.sh" | tee "$RUN/hs_online.log"
      "$SHARED_BENCH/online_redis.sh" | tee "$RUN/redis_online.log" ;;
    offline)
      python3 "$SHARED_BENCH/offline_duckdb.py" --data "$DATA_DIR" --reps "$REPS" --threads "$NPROC" \
        | tee "$RUN/duckdb_offline.log"
      hs_stop; hs_start   # a fresh process: peak memory is the offline work's own
      PGPORT="$HS_PORT" PGUSER=bench PGDATABASE=hindsight SERVER_PID="$HS_PID" \
        python3 "$ROOT/benches/offline_hs.py" --reps "$REPS" | tee "$RUN/hs_offline.log"
      # offline_pg.py keeps spine_<N> across runs (CREATE IF NOT EXISTS): rebuild it
      # from this run's spine.
      psql -X -q -c "DROP TABLE IF EXISTS ${SPINE_TABLE}_$OFFLINE_PG_SPINE"
      SPINE_ROWS="$OFFLINE_PG_SPINE" ALT_PLANS=0 EXPLAIN=0 ONLY=lateral_count,lateral_copy,snap_copy \
        python3 "$SHARED_BENCH/offline_pg.py" --reps "$REPS" | tee "$RUN/pg_offline.log" ;;
    growth) growth ;;
    report) python3 "$ROOT/benches/compare_report.py" "$RUN" --out "$ROOT/BENCHMARKS.md" ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac
done
