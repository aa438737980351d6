#!/usr/bin/env bash
# The point-in-time join and as-of snapshot, Hindsight and DuckDB side by side on the
# same data set in one run. Needs python3 with numpy, pyarrow and duckdb (installed
# here when missing). Environment: E, V, S (sizes, default 1M x 10 and 1M), REPS.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${SHARED:-../shared/bench}"
DATA_DIR="${DATA_DIR:-/tmp/fsbench}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hindsight/target}"
python3 -c "import numpy, pyarrow, duckdb" 2>/dev/null ||
  python3 -m pip install -q numpy pyarrow duckdb
if [ ! -f "$DATA_DIR/meta.json" ]; then
  (cd "$SHARED" && python3 gen.py)
fi
echo "== Hindsight (cargo bench -p hindsight-sql --bench asof)"
cargo bench -p hindsight-sql --bench asof
echo "== DuckDB (offline_duckdb.py)"
(cd "$SHARED" && python3 offline_duckdb.py)
