#!/usr/bin/env bash
# Replication soak (not CI; REPLICATION.md A1/A4, issue 22): the history-checked
# cluster tests with many more faults than CI runs: 100 leader kills and 200
# follower kills (their restarts mostly by snapshot install) under four writers,
# 30 leader pauses (SIGSTOP 3 s), then the partition cases (isolated leader and
# follower, bridge, one-way, flapping). Takes ~15 minutes on
# 2 cores. Every run must end with 0 violations; per-round failover times go to the
# log.
#
#     bash benches/soak.sh            # env: LEADER_KILLS [100] FOLLOWER_KILLS [200] PAUSES [30]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hindsight/target}"
export HINDSIGHT_CLUSTER_KILLS="${LEADER_KILLS:-100}"
export HINDSIGHT_CLUSTER_FOLLOWER_KILLS="${FOLLOWER_KILLS:-200}"
export HINDSIGHT_CLUSTER_PAUSES="${PAUSES:-30}"
LOG="${LOG:-/tmp/hindsight-soak.$(date +%Y%m%d_%H%M%S).log}"
echo "soak: $HINDSIGHT_CLUSTER_KILLS leader kills, $HINDSIGHT_CLUSTER_FOLLOWER_KILLS follower kills, $HINDSIGHT_CLUSTER_PAUSES pauses; log $LOG"
cargo test --locked --test cluster_history -- --nocapture --test-threads 1 2>&1 | tee "$LOG"
grep -E "writes:" "$LOG"
