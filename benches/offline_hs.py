#!/usr/bin/env python3
"""Offline workload on Hindsight over pgwire: the point-in-time join of the spine against
the feature history, and the as-of snapshot of every entity, in Hindsight's SQL.

Same queries, same timing and the same output table as ../shared/bench/offline_pg.py
(PostgreSQL LATERAL) and offline_duckdb.py (DuckDB ASOF JOIN), so the three compare:
  asof_ctas    CREATE TABLE train AS spine ASOF JOIN features (all feature columns)
  asof_count   SELECT count(*), count(event_ts), sum(f1) over the same join
  asof_copy    COPY (same join) TO STDOUT, streamed to the client and discarded
  snap_count   count + sum over as_of(features, T)
  snap_copy    COPY (SELECT * FROM as_of(features, T)) TO STDOUT
Peak memory: the server's resident set is sampled every 10 ms during each run; the
table reports the peak above the resident set before the run (and the absolute peak).

env/flags: PGHOST PGPORT PGUSER PGDATABASE REPS SNAP_T SERVER_PID (required for CPU
and memory) HIST_TABLE SPINE_TABLE
"""
import argparse
import os
import statistics as st
import sys
import threading
import time

import psycopg

BENCH = os.environ.get("SHARED_BENCH", os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../shared/bench"))
sys.path.insert(0, BENCH)
from cpuwatch import Watch  # noqa: E402

FCOLS = ["f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "c1", "c2"]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakRss:
    """Samples a process' resident set in a thread; .stop() -> (peak KiB, baseline KiB)."""

    def __init__(self, pid):
        self.pid, self.peak, self.base = pid, 0, rss_kib(pid)
        self.done = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.01)

    def stop(self):
        self.done.set()
        self.t.join()
        self.peak = max(self.peak, rss_kib(self.pid))
        return self.peak, self.base


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=int(os.environ.get("REPS", 3)))
    ap.add_argument("--snap-t", default=os.environ.get("SNAP_T", "2024-01-21 00:00:00"))
    ap.add_argument("--hist", default=os.environ.get("HIST_TABLE", "features"))
    ap.add_argument("--spine", default=os.environ.get("SPINE_TABLE", "spine"))
    a = ap.parse_args()
    con = psycopg.connect("", autocommit=True)
    spid = int(os.environ["SERVER_PID"])
    ns = con.execute(f"SELECT count(*) FROM {a.spine}").fetchone()[0]
    nh = con.execute(f"SELECT count(*) FROM history({a.hist})").fetchone()[0]
    fsel = ", ".join(f"f.{c}" for c in FCOLS)
    join = (f"SELECT s.entity_id, s.ts, f.event_ts, {fsel} FROM {a.spine} s ASOF JOIN {a.hist} f "
            f"MATCH_CONDITION (s.ts >= f.event_ts) ON s.entity_id = f.entity_id")
    T = a.snap_t
    snap = f"SELECT * FROM as_of({a.hist}, TIMESTAMP '{T}')"
    queries = [  # name, sql, kind, table made, spine rows (for rate)
        ("asof_ctas", f"CREATE TABLE train AS {join}", "ctas", "train", ns),
        ("asof_count", f"SELECT count(*), count(event_ts), sum(f1) FROM ({join}) j", "one", None, ns),
        ("asof_copy", f"COPY ({join}) TO STDOUT", "copy", None, ns),
        ("snap_count", f"SELECT count(*), count(event_ts), sum(f1) FROM ({snap}) s", "one", None, None),
        ("snap_copy", f"COPY ({snap}) TO STDOUT", "copy", None, None),
    ]
    results = []
    for name, sql, kind, tbl, per in queries:
        runs, cpus, peaks = [], [], []
        detail = ""
        for _ in range(a.reps):
            if tbl:
                con.execute(f"DROP TABLE IF EXISTS {tbl}")
            w = Watch([spid])
            mem = PeakRss(spid)
            t0 = time.perf_counter()
            nbytes = 0
            if kind == "copy":
                with con.cursor() as cur:
                    with cur.copy(sql) as cp:
                        for chunk in cp:
                            nbytes += len(chunk)
            else:
                r = con.execute(sql)
                if kind == "one":
                    row = r.fetchone()
            runs.append(time.perf_counter() - t0)
            peak, base = mem.stop()
            peaks.append((peak, base))
            d = w.stop()
            cpus.append(d)
            print(f"  {name}: {runs[-1]:.3f}s  peak RSS {peak / 1024:.0f} MiB (before {base / 1024:.0f} MiB)  {d}",
                  flush=True)
        if kind == "ctas":
            c = con.execute(f"SELECT count(*), count(event_ts), sum(f1) FROM {tbl}").fetchone()
            detail = f"{c[0]:,} rows, {c[1]:,} matched, sum_f1={c[2]:.6f}"
            con.execute(f"DROP TABLE IF EXISTS {tbl}")
        elif kind == "one":
            detail = f"{row[0]:,} rows, {row[1]:,} matched, sum_f1={row[2]:.6f}"
        else:
            detail = f"{nbytes / 1e6:.0f} MB text streamed"
        results.append((name, runs, detail, per, cpus, peaks))

    print(f"\n## offline over pgwire: Hindsight at {os.environ.get('PGHOST', '')}:{os.environ.get('PGPORT', '')}; "
          f"history {nh:,} rows, spine {a.spine} {ns:,} rows, snapshot T={T}, median of {a.reps} runs")
    print("| query | median s | min s | max s | spine rows/s | server CPU s | others' CPU % | peak RSS growth MiB "
          "| peak RSS MiB | result / checksum |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, runs, detail, per, cpus, peaks in results:
        m = st.median(runs)
        rate = f"{per / m:,.0f}" if per else ""
        srv = st.median(d["server_cpu_s"] for d in cpus)
        oth = st.median(d["other_pct"] for d in cpus)
        growth = max(p - b for p, b in peaks) / 1024
        peak = max(p for p, _ in peaks) / 1024
        print(f"| {name} | {m:.3f} | {min(runs):.3f} | {max(runs):.3f} | {rate} | {srv:.2f} | {oth:.0f} | "
              f"{growth:.0f} | {peak:.0f} | {detail} |")


if __name__ == "__main__":
    main()
