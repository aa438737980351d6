#!/usr/bin/env bash
# Two Hindsight binaries side by side on the same data and machine, interleaved
# (A, B, A, B, ...) so that drift on a shared machine hits both alike. For changes
# that must not move performance (refactors, dependency changes):
#
#     A=/path/to/old/hindsight B=/path/to/new/hindsight bash benches/ab.sh
#
# Per repetition and binary: a fresh data dir, COPY of the E x V history (psql \copy,
# CSV, durable), VACUUM, pgbench -M prepared latest and as-of lookups at $CLIENTS
# clients, and the offline point-in-time join and snapshot (benches/offline_hs.py).
# Prints per-workload medians of A and B and the ratio B / A; raw logs stay in
# $DATA_DIR/ab.<timestamp>/.
#
# env (defaults): A, B (required), E [300000] V [10] S [300000] REPS [3] DURATION [10]
#   CLIENTS ["1 16"], DATA_DIR [/tmp/fsbench-ab], HS_PORT [6544]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export SHARED_BENCH="${SHARED_BENCH:-$(cd "$ROOT/../shared/bench" && pwd)}"
: "${A:?path of binary A}"; : "${B:?path of binary B}"
: "${E:=300000}"; : "${V:=10}"; : "${S:=300000}"; : "${REPS:=3}"; : "${DURATION:=10}"
: "${CLIENTS:=1 16}"; : "${DATA_DIR:=/tmp/fsbench-ab}"; : "${HS_PORT:=6544}"
export E V S DATA_DIR
. "$SHARED_BENCH/env.sh"
RUN="$DATA_DIR/ab.$(date +%Y%m%d_%H%M%S)"; mkdir -p "$RUN"
RES="$RUN/results.tsv"; : >"$RES"
HS_DATA="$DATA_DIR/hindsight-data"
COLS_DDL="entity_id BIGINT NOT NULL, event_ts TIMESTAMP NOT NULL,
 f1 DOUBLE PRECISION, f2 DOUBLE PRECISION, f3 DOUBLE PRECISION, f4 DOUBLE PRECISION,
 f5 DOUBLE PRECISION, f6 DOUBLE PRECISION, f7 DOUBLE PRECISION, f8 DOUBLE PRECISION,
 c1 BIGINT, c2 BIGINT"

python3 -c "import numpy, pyarrow, psycopg" 2>/dev/null \
  || python3 -m pip install -q numpy pyarrow "psycopg[binary]"
[ -f "$DATA_DIR/meta.json" ] || python3 "$SHARED_BENCH/gen.py" --out "$DATA_DIR" -E "$E" -V "$V" -S "$S" --format csv

now() { date +%s.%N; }
hs_psql() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$HS_PORT" -U bench -d hindsight "$@"; }
PID=""
start() {
  "$1" --listen "127.0.0.1:$HS_PORT" --data-dir "$HS_DATA" --metrics-listen 127.0.0.1:0 >>"$RUN/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do
    pg_isready -q -h 127.0.0.1 -p "$HS_PORT" && return 0
    kill -0 "$PID" 2>/dev/null || { tail -20 "$RUN/server.log"; exit 1; }
    sleep 0.1
  done
  echo "server did not become ready"; exit 1
}
stop() {
  if [ -n "$PID" ]; then
    kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""
  fi
}
trap stop EXIT
put() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RES"; echo "$1 $2 $3"; }

one() {  # one repetition of every workload on binary $2 (label $1)
  local label=$1 bin=$2 t0 t1
  stop; rm -rf "$HS_DATA"; start "$bin"
  hs_psql -c "CREATE TABLE features ($COLS_DDL, PRIMARY KEY (entity_id)) WITH (event_time = 'event_ts')"
  t0=$(now)
  hs_psql -c "\\copy features FROM '$DATA_DIR/features.csv' WITH (FORMAT csv, HEADER true)"
  t1=$(now)
  put "$label" copy_rows_per_s "$(python3 -c "print(round($E*$V/($t1-$t0)))")"
  hs_psql -c "VACUUM" \
    -c "CREATE TABLE spine (entity_id BIGINT NOT NULL, ts TIMESTAMP NOT NULL)" \
    -c "\\copy spine FROM '$DATA_DIR/spine.csv' WITH (FORMAT csv, HEADER true)"
  local out
  out=$(WORKLOADS="latest asof" CLIENTS="$CLIENTS" DURATION="$DURATION" REPS=1 WARMUP=3 \
    PGHOST=127.0.0.1 PGPORT="$HS_PORT" PGUSER=bench PGDATABASE=hindsight SERVER_PID="$PID" \
    "$ROOT/benches/online_hs.sh" 2>&1) || { echo "$out"; exit 1; }
  echo "$out" >>"$RUN/online_$label.log"
  while read -r w c tps; do put "$label" "${w}_c${c}_tps" "$tps"; done < <(
    echo "$out" | sed -nE 's/^rep 1 ([a-z0-9]+) c=([0-9]+) tps=([0-9.]+).*/\1 \2 \3/p')
  stop; start "$bin"
  out=$(PGHOST=127.0.0.1 PGPORT="$HS_PORT" PGUSER=bench PGDATABASE=hindsight SERVER_PID="$PID" \
    python3 "$ROOT/benches/offline_hs.py" --reps 1 2>&1) || { echo "$out"; exit 1; }
  echo "$out" >>"$RUN/offline_$label.log"
  while read -r q s; do put "$label" "${q}_s" "$s"; done < <(
    echo "$out" | sed -nE 's/^\| (asof_[a-z]+|snap_[a-z]+) \| ([0-9.]+) .*/\1 \2/p')
}

for r in $(seq 1 "$REPS"); do
  echo "=== rep $r $(date -Is) loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
  one A "$A"
  one B "$B"
done
stop
python3 - "$RES" <<'EOF'
import collections, statistics, sys
vals = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    label, metric, v = line.rstrip("\n").split("\t")
    vals[metric][label].append(float(v))
print(f"| metric | A median | B median | B / A | A runs | B runs |")
print("|---|---:|---:|---:|---|---|")
for m, d in vals.items():
    a, b = statistics.median(d["A"]), statistics.median(d["B"])
    runs = lambda xs: " ".join(f"{x:g}" for x in xs)
    print(f"| {m} | {a:,.3f} | {b:,.3f} | {b / a:.3f} | {runs(d['A'])} | {runs(d['B'])} |")
EOF
echo "raw: $RUN"
