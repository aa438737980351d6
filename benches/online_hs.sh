#!/usr/bin/env bash
# Online point lookups on Hindsight with pgbench -M prepared: the workloads of
# ../shared/bench/online_pg.sh (same \set lines, same random keys and times, same
# pgbench flags, same results.tsv and summary), in Hindsight's SQL:
#   select1   SELECT 1                                           (protocol floor)
#   latest    SELECT cols FROM features WHERE entity_id = $1      (the versioned table itself)
#   asof      SELECT cols FROM as_of(features, TIMESTAMP '2024-01-01' + $2 * INTERVAL '1 second')
#             WHERE entity_id = $1
#   batch100  SELECT cols FROM features WHERE entity_id = ANY(ARRAY[$1..$100]::bigint[])
#   env: PGHOST PGPORT PGUSER PGDATABASE E HIST_TABLE SERVER_PID CLIENTS DURATION REPS WARMUP
#        WORKLOADS BATCH LOG_SAMPLE (as online_pg.sh)   SHARED_BENCH (../shared/bench)
set -euo pipefail
SHARED_BENCH="${SHARED_BENCH:-$(cd "$(dirname "$0")/../../shared/bench" && pwd)}"
. "$SHARED_BENCH/env.sh"
: "${CLIENTS:=1 4 16}"; : "${DURATION:=20}"; : "${WARMUP:=5}"; : "${BATCH:=100}"
: "${WORKLOADS:=select1 latest asof batch100}"; : "${LOG_SAMPLE:=1.0}"
OUT="$DATA_DIR/online_hs.$(date +%Y%m%d_%H%M%S)"; SQL="$OUT/sql"; mkdir -p "$SQL"
COLS="entity_id, event_ts, f1, f2, f3, f4, f5, f6, f7, f8, c1, c2"

cat >"$SQL/select1.sql" <<EOF
\set id random(1, :E)
SELECT 1;
EOF
cat >"$SQL/latest.sql" <<EOF
\set id random(1, :E)
SELECT $COLS FROM $HIST_TABLE WHERE entity_id = :id;
EOF
cat >"$SQL/asof.sql" <<EOF
\set id random(1, :E)
\set t random(-259200, 2591999)
SELECT $COLS FROM as_of($HIST_TABLE, TIMESTAMP '2024-01-01 00:00:00' + :t * INTERVAL '1 second') WHERE entity_id = :id;
EOF
{
  for i in $(seq 1 "$BATCH"); do echo "\\set id$i random(1, :E)"; done
  printf 'SELECT %s FROM %s WHERE entity_id = ANY(ARRAY[' "$COLS" "$HIST_TABLE"
  for i in $(seq 1 "$BATCH"); do printf ':id%d' "$i"; [ "$i" -lt "$BATCH" ] && printf ','; done
  printf ']::bigint[]);\n'
} >"$SQL/batch$BATCH.sql"
WORKLOADS="${WORKLOADS//batch100/batch$BATCH}"

PGB=(pgbench -n -M prepared -D "E=$E")
threads() { [ "$1" -lt "$NPROC" ] && echo "$1" || echo "$NPROC"; }
for w in $WORKLOADS; do   # warmup (page cache, block cache), also validates each script
  "${PGB[@]}" -c 2 -j "$(threads 2)" -T "$WARMUP" -f "$SQL/$w.sql" >"$OUT/warmup_$w.txt" 2>&1 \
    || { cat "$OUT/warmup_$w.txt"; exit 1; }
done

RES="$OUT/results.tsv"; : >"$RES"
for r in $(seq 1 "$REPS"); do
  for w in $WORKLOADS; do
    for c in $CLIENTS; do
      d="$OUT/r${r}_${w}_c${c}"; mkdir -p "$d"
      python3 "$SHARED_BENCH/cpuwatch.py" ${SERVER_PID:+--pid "$SERVER_PID"} --json "$d/cpu.json" -- \
        "${PGB[@]}" -c "$c" -j "$(threads "$c")" -T "$DURATION" -f "$SQL/$w.sql" \
        --log --log-prefix="$d/tx" --sampling-rate="$LOG_SAMPLE" >"$d/pgbench.txt" 2>&1 \
        || { cat "$d/pgbench.txt"; exit 1; }
      tps=$(sed -nE 's/^tps = ([0-9.]+) .*/\1/p' "$d/pgbench.txt" | head -1)
      fail=$(sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' "$d/pgbench.txt" | head -1)
      lat=$(python3 "$SHARED_BENCH/pgbench_lat.py" "$d"/tx*)
      rm -f "$d"/tx*
      ntx=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$d/pgbench.txt" | head -1)
      cpu=$(cat "$d/cpu.json")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$w" "$c" "$tps" "${fail:-0}" "$lat" "$cpu" "$ntx" >>"$RES"
      echo "rep $r $w c=$c tps=$tps $lat $cpu"
    done
  done
done

python3 "$SHARED_BENCH/online_pg_summary.py" --batch "$BATCH" --server "$PGHOST:$PGPORT" --duration "$DURATION" "$RES"
echo "raw: $OUT"
