#!/usr/bin/env python3
"""Summarise a benches/compare.sh run into BENCHMARKS.md: the machine, the commands,
and per workload the medians of Hindsight and its peers with the ratio Hindsight / peer.

usage: compare_report.py RUN_DIR [--out BENCHMARKS.md]
Reads RUN_DIR/results.env (key=value figures), the peers' logs (markdown tables the
shared scripts print) and the pgbench results.tsv files the online logs point to.
Sections of an existing --out file after the generated ones (hand-written notes) are
kept.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics as st
import subprocess


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def read_env(path):
    out = {}
    if os.path.exists(path):
        for line in open(path):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                out[k] = v
    return out


def log(run, name):
    p = os.path.join(run, name)
    return open(p).read() if os.path.exists(p) else ""


def md_rows(text, header_start):
    """Rows (lists of cells) of the markdown table whose header starts with header_start."""
    rows, on = [], False
    for line in text.splitlines():
        if line.startswith(header_start):
            on, rows = True, []
            continue
        if on:
            if line.startswith("|---"):
                continue
            if not line.startswith("|"):
                on = False
                continue
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def num(s):
    try:
        return float(str(s).replace(",", "").split()[0])
    except (ValueError, IndexError):
        return None


def online(text):
    """{(workload, clients): {tps, avg, p99, srv_us}} from the results.tsv a log points to."""
    m = re.search(r"^raw: (\S+)", text, re.M)
    if not m or not os.path.exists(os.path.join(m.group(1), "results.tsv")):
        return {}
    runs = {}
    for line in open(os.path.join(m.group(1), "results.tsv")):
        f = line.rstrip("\n").split("\t")
        if len(f) < 8:
            continue
        _, w, c, tps, _, lat, cpu, ntx = f[:8]
        lat, cpu = json.loads(lat), json.loads(cpu)
        runs.setdefault((w, int(c)), []).append(
            (float(tps), lat.get("avg_ms"), lat.get("p99_ms"), 1e6 * cpu["server_cpu_s"] / max(1, int(ntx))))
    return {k: {"tps": st.median(x[0] for x in v), "avg": st.median(x[1] for x in v),
                "p99": st.median(x[2] for x in v), "srv_us": st.median(x[3] for x in v), "n": len(v)}
            for k, v in runs.items()}


def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


def latencies(g):
    return f"{g['avg']:.3f} / {g['p99']:.3f}" if g else "n/a"


def fmt(v, spec=",.0f"):
    return format(v, spec) if v is not None else "n/a"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--out", default="BENCHMARKS.md")
    a = ap.parse_args()
    run = a.run
    env = read_env(os.path.join(run, "results.env"))
    data_dir = os.path.dirname(os.path.abspath(run))
    meta = json.load(open(os.path.join(data_dir, "meta.json"))) if os.path.exists(
        os.path.join(data_dir, "meta.json")) else {}
    rows = meta.get("feature_rows")
    L = []
    p = L.append

    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = sh("free -g | awk '/Mem:/ {print $2}'")
    p("# Benchmarks: Hindsight next to PostgreSQL, DuckDB and Redis")
    p("")
    p(f"Run {os.path.basename(run)} ({datetime.date.today()}), written by `benches/compare_report.py`. "
      f"Machine: {os.cpu_count()} vCPU ({cpu}), {mem} GiB RAM, {platform.system()} {platform.release()}; "
      "every server and client on the same box, loopback TCP. The machine is shared: medians, ratios and "
      "server CPU per operation (the noise-robust figure) are what to read.")
    p("")
    rev = env.get("hs_rev") or sh(f"git -C {os.path.dirname(os.path.abspath(__file__))} rev-parse --short HEAD")
    duck = sh("python3 -c 'import duckdb; print(duckdb.__version__)'")
    redis = sh("redis-server --version").split(" sha")[0]
    p(f"Versions: Hindsight {rev} (release build); {sh('pgbench --version')}; {redis}; DuckDB {duck}.")
    p(f"Data: `../shared/bench/gen.py`, {meta.get('entities', '?'):,} entities x {meta.get('versions', '?')} versions "
      f"= {rows or 0:,} rows (8 float8 + 2 int8 features, event times over 30 days), spine "
      f"{meta.get('spine_rows', 0):,} rows." if meta else "Data: see the run directory.")
    p("")
    p("Reproduce: `bash benches/compare.sh` (defaults E=1000000 V=10 S=1000000 REPS=3 DURATION=20 "
      "CLIENTS=\"1 4 16\"; this run: " + f"{env.get('run_params', 'see the run directory')}). Peer setup: PostgreSQL 15 from Debian, started by "
      "`../shared/bench/servers.sh` (shared_buffers 4GB, work_mem 256MB, jit off, fsync and "
      "synchronous_commit on), history table with an (entity_id, event_ts) index, latest table with a "
      "primary key, pgbench `-M prepared` (prepared statements), warmed by a warm-up run; DuckDB in "
      "process with all threads; Redis without persistence, one hash per entity. Hindsight: default "
      "settings (fsync on every commit), one table holding every version with `PRIMARY KEY (entity_id)` "
      "and `event_time = 'event_ts'`.")
    p("")

    # --- ingest ---
    hs_copy = [float(x) for x in env.get("hs_copy_s", "").split()]
    hs_cpu = [float(x) for x in env.get("hs_copy_cpu_s", "").split()]
    pg_ing = {r[0]: num(r[1]) for r in md_rows(log(run, "pg_ingest.log"), "| step |")}
    pg_idx = next((v for k, v in pg_ing.items() if k.startswith("COPY into table with")), None)
    pg_unidx = pg_ing.get("COPY into unindexed table")
    if hs_copy and rows:
        hs_s = st.median(hs_copy)
        p("## Ingest: COPY of the history over pgwire (psql `\\copy`, CSV, durable)")
        p("")
        p("| system | median s | rows/s | server CPU us/row | Hindsight / peer (rows/s) |")
        p("|---|---:|---:|---:|---:|")
        p(f"| Hindsight | {hs_s:.2f} | {rows / hs_s:,.0f} | {1e6 * st.median(hs_cpu) / rows:.2f} | |")
        if pg_idx:
            p(f"| PostgreSQL, table with (entity_id, event_ts) index | {pg_idx:.2f} | {rows / pg_idx:,.0f} | | "
              f"{ratio(pg_idx, hs_s)} |")
        if pg_unidx:
            p(f"| PostgreSQL, unindexed table | {pg_unidx:.2f} | {rows / pg_unidx:,.0f} | | {ratio(pg_unidx, hs_s)} |")
        p("")
        b = {k: num(env.get(k)) for k in ("hs_bytes_after_ingest", "hs_bytes_after_compaction", "hs_sst_bytes",
                                          "pg_bytes", "pg_heap_bytes", "parquet_bytes", "csv_bytes")}
        pq = b["parquet_bytes"]
        p("| bytes on disk | MB | / Parquet zstd |")
        p("|---|---:|---:|")
        for label, k in (("Hindsight data dir after ingest (WAL + tables)", "hs_bytes_after_ingest"),
                         (f"Hindsight data dir after VACUUM (compaction, {env.get('hs_vacuum_s', '?')} s)",
                          "hs_bytes_after_compaction"),
                         ("PostgreSQL history table + (entity_id, event_ts) index", "pg_bytes"),
                         ("PostgreSQL history heap alone", "pg_heap_bytes"),
                         ("Parquet, zstd (gen.py)", "parquet_bytes"), ("CSV", "csv_bytes")):
            if b[k]:
                p(f"| {label} | {b[k] / 1e6:,.0f} | {ratio(b[k], pq)} |")
        p("")

    # --- online ---
    hs, pg = online(log(run, "hs_online.log")), online(log(run, "pg_online.log"))
    if hs:
        p("## Online: pgbench -M prepared, random keys")
        p("")
        p("Hindsight reads its versioned table (`WHERE entity_id = $1`, `as_of(features, T)`, `= ANY(ARRAY[...])`); "
          "PostgreSQL reads its latest table by primary key, and its history table with "
          "`event_ts <= T ORDER BY event_ts DESC LIMIT 1` for as-of. batch100: TPS x 100 = keys/s.")
        p("")
        p("| workload | clients | Hindsight TPS | PostgreSQL TPS | ratio | Hindsight avg / p99 ms | "
          "PostgreSQL avg / p99 ms | server CPU us/tx Hindsight / PostgreSQL |")
        p("|---|---:|---:|---:|---:|---:|---:|---:|")
        for k in sorted(hs, key=lambda k: (["select1", "latest", "asof", "batch100"].index(k[0])
                                            if k[0] in ["select1", "latest", "asof", "batch100"] else 9, k[1])):
            h, g = hs[k], pg.get(k)
            p(f"| {k[0]} | {k[1]} | {h['tps']:,.0f} | {fmt(g and g['tps'])} | {ratio(h['tps'], g and g['tps'])} | "
              f"{latencies(h)} | {latencies(g)} | "
              f"{h['srv_us']:.1f} / {fmt(g and g['srv_us'], '.1f')} |")
        p("")
        red = md_rows(log(run, "redis_online.log"), "| command |")
        if red:
            p("Redis, for orientation (redis-benchmark, one hash per entity):")
            p("")
            p("| command | connections | pipeline | ops/s | avg ms | p99 ms | server CPU us/op |")
            p("|---|---:|---:|---:|---:|---:|---:|")
            for r in red:
                p(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[6]} | {r[7]} |")
            p("")

    # --- offline ---
    hso = {r[0]: r for r in md_rows(log(run, "hs_offline.log"), "| query |")}
    ddb = {r[0].split()[0]: r for r in md_rows(log(run, "duckdb_offline.log"), "| query |")}
    pgo = {r[0]: r for r in md_rows(log(run, "pg_offline.log"), "| query |")}
    if hso:
        p("## Offline: point-in-time join and as-of snapshot")
        p("")
        p("| query | Hindsight s | peer | peer s | Hindsight / peer (time) | Hindsight peak RSS growth MiB | checksum |")
        p("|---|---:|---|---:|---:|---:|---|")
        pairs = [("asof_ctas", "DuckDB asof_ctas", ddb.get("asof_ctas")),
                 ("asof_count", "DuckDB asof_count", ddb.get("asof_count")),
                 ("asof_copy", "DuckDB asof_arrow (to client Arrow)", ddb.get("asof_arrow")),
                 ("snap_count", "DuckDB snap_qualify", ddb.get("snap_qualify")),
                 ("snap_copy", "DuckDB snap_qualify", ddb.get("snap_qualify"))]
        for name, peer, pr in pairs:
            r = hso.get(name)
            if not r:
                continue
            hs_s, peer_s = num(r[1]), pr and num(pr[1])
            p(f"| {name} | {hs_s:.3f} | {peer} | {fmt(peer_s, '.3f')} | {ratio(hs_s, peer_s)} | {r[7]} | {r[9]} |")
        p("")
        lat = pgo.get("lateral_count")
        if lat and hso.get("asof_count"):
            hs_rate, pg_rate = num(hso["asof_count"][4]), num(lat[4])
            p(f"PostgreSQL `LATERAL ... LIMIT 1` on a {os.environ.get('OFFLINE_PG_SPINE', '100000')}-row spine: "
              f"{lat[1]} s = {lat[4]} spine rows/s; Hindsight's ASOF JOIN count on the full spine: "
              f"{hso['asof_count'][4]} spine rows/s ({ratio(hs_rate, pg_rate)} the rate).")
            p("")

    # --- growth ---
    gp = os.path.join(run, "growth.paths")
    if os.path.exists(gp) and hs.get(("latest", 1)):
        p("## Growth: latest-by-key latency, 1 client (pgbench -M prepared)")
        p("")
        p("| versions in the table | TPS | avg ms | p99 ms | server CPU us/tx |")
        p("|---:|---:|---:|---:|---:|")
        for line in open(gp):
            n, path = line.split()
            g = online(f"raw: {path}\n").get(("latest", 1))
            if g:
                p(f"| {int(n):,} | {g['tps']:,.0f} | {g['avg']:.3f} | {g['p99']:.3f} | {g['srv_us']:.1f} |")
        h = hs[("latest", 1)]
        p(f"| {rows or 0:,} | {h['tps']:,.0f} | {h['avg']:.3f} | {h['p99']:.3f} | {h['srv_us']:.1f} |")
        p("")

    text = "\n".join(L) + "\n"
    kept = hand_written(a.out)
    open(a.out, "w").write(text.rstrip("\n") + "\n\n" + kept if kept else text)
    print(text)


GENERATED = ("## Ingest", "## Online", "## Offline", "## Growth")


def hand_written(path):
    """The part of an existing report after the generated sections: every line from
    the first `## ` heading this script does not write (notes on fixes, the targets
    table) to the end, kept as is across regenerations."""
    if not os.path.exists(path):
        return ""
    lines = open(path).read().splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith("## ") and not line.startswith(GENERATED):
            return "".join(lines[i:])
    return ""


if __name__ == "__main__":
    main()
