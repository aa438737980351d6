#!/usr/bin/env bash
# Bulk load and bulk read through the Python drivers, Hindsight and PostgreSQL side
# by side in one run (benches/bulk_drivers.py does the timing), plus DuckDB reading
# the same rows from Parquet into Arrow.
#
#   BIN=target/release/hindsight ROWS=2000000 REPS=3 bash benches/bulk_drivers.sh
#
# Needs the Debian postgresql package (started through ../shared/bench/servers.sh
# on PGPORT, default 5499) and pip asyncpg, adbc-driver-postgresql, pyarrow,
# polars, connectorx, duckdb. Prints one JSON line per server and rep, then medians.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BIN:=target/release/hindsight}" "${ROWS:=2000000}" "${REPS:=3}"
: "${HS_PORT:=5544}" "${PGPORT:=5499}" "${WORK:=/tmp/hs-bulk}"
export PGPORT PGBASE="${PGBASE:-/tmp/pgbase-bulk}"
mkdir -p "$WORK"; out="$WORK/results.jsonl"; : >"$out"

bash ../shared/bench/servers.sh start pg >/dev/null
rm -rf "$WORK/data"
"$BIN" --data-dir "$WORK/data" --listen "127.0.0.1:$HS_PORT" --http-listen "127.0.0.1:0" \
  >"$WORK/server.log" 2>&1 &
hs=$!
trap 'kill $hs 2>/dev/null || true; bash ../shared/bench/servers.sh stop pg >/dev/null || true' EXIT
for _ in $(seq 1 100); do psql -X -q -h 127.0.0.1 -p "$HS_PORT" -U bench -d hindsight -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done

drop_all() { # URI
  for t in bulk_text bulk_bytes bulk_binary bulk_adbc; do psql -X -q "$1" -c "DROP TABLE IF EXISTS $t" >/dev/null; done
}
hs_uri="postgresql://bench@127.0.0.1:$HS_PORT/hindsight"
pg_uri="postgresql://postgres@127.0.0.1:$PGPORT/postgres"
for r in $(seq 1 "$REPS"); do
  drop_all "$hs_uri"; drop_all "$pg_uri"
  echo "{\"server\": \"hindsight\", \"rep\": $r, \"result\": $(python3 benches/bulk_drivers.py "$hs_uri" "$ROWS")}" | tee -a "$out"
  echo "{\"server\": \"postgres\", \"rep\": $r, \"result\": $(python3 benches/bulk_drivers.py "$pg_uri" "$ROWS" --pg)}" | tee -a "$out"
  duck=$(python3 - "$ROWS" "$WORK" <<'PY'
import datetime, json, sys, time
import duckdb, pyarrow as pa, pyarrow.parquet as pq
n, work = int(sys.argv[1]), sys.argv[2]
t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
ids = list(range(n))
pq.write_table(pa.table({
    "id": pa.array(ids, pa.int64()),
    "ts": pa.array([t0 + datetime.timedelta(seconds=i % 86400) for i in ids], pa.timestamp("us", tz="UTC")),
    "score": pa.array([i * 0.001 for i in ids], pa.float64()),
    "trips": pa.array([i % 1000 for i in ids], pa.int64()),
    "label": pa.array([f"label-{i % 5000}" for i in ids], pa.string()),
}), f"{work}/bulk.parquet")
started = time.perf_counter()
t = duckdb.sql(f"SELECT * FROM read_parquet('{work}/bulk.parquet')").arrow()
print(json.dumps({"rows": n, "duckdb_parquet_to_arrow": time.perf_counter() - started}))
PY
)
  echo "{\"server\": \"duckdb\", \"rep\": $r, \"result\": $duck}" | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    for k, v in r["result"].items():
        if k != "rows":
            by.setdefault((r["server"], k), []).append(v)
n = rows[0]["result"]["rows"]
print(f"\nmedians over {len(rows) // 3} reps, {n} rows (seconds, rows/s):")
for (server, step), v in sorted(by.items()):
    m = statistics.median(v)
    print(f"  {server:10s} {step:24s} {m:8.2f} s  {n / m:12,.0f} rows/s")
PY
