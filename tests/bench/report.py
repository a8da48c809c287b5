#!/usr/bin/python3
"""report.py — the figures and the table of `make bench` (standard library only).

    report.py machine COMMIT DIRTY_FILES SIZE   machine description as one JSON object
    report.py loadavg                           the 1-minute load average
    report.py pgbench-log LABEL FILE...         p50/p99 of a pgbench per-transaction log
                                                (-l) as one JSON line, like loadgen's
    report.py table RAW OUT                     RAW: the JSON lines bench.sh collected;
                                                prints the table, writes OUT.md, OUT.json

Each row is one figure of issue 7: cmdbd's figure, the baseline measured in the same run,
the ratio cmdbd ÷ baseline, the issue's target and whether this run meets it.
"""

import datetime
import json
import os
import platform
import statistics
import sys


def machine(commit, dirty, size):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for ln in f:
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1])
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count(), "memory_gib": round(mem_kb / 1048576, 1), "cpu": cpu,
            "kernel": platform.release(), "commit": commit, "dirty_files": int(dirty),
            "size": size, "loadavg_at_start": loadavg()}


def loadavg():
    """The 1-minute load average: anything else running on the machine shows here."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def pct(sorted_vals, q):
    return sorted_vals[min(len(sorted_vals) - 1, int(q * (len(sorted_vals) - 1) + 0.5))]


def pgbench_log(label, files):
    """pgbench -l lines: client_id transaction_no time_us script_no epoch epoch_us."""
    lat = []
    for name in files:
        with open(name) as f:
            lat += [int(ln.split()[2]) / 1000.0 for ln in f if ln.strip()]
    lat.sort()
    return {"label": label, "count": len(lat), "errors": 0,
            "p50_ms": round(pct(lat, 0.5), 3), "p90_ms": round(pct(lat, 0.9), 3),
            "p99_ms": round(pct(lat, 0.99), 3), "max_ms": round(lat[-1], 3),
            "mean_ms": round(statistics.mean(lat), 3)}


# --- the table -----------------------------------------------------------------------------

def fmt(x, unit=""):
    if x is None:
        return "—"
    if isinstance(x, float) and x >= 100:
        s = "{:,.0f}".format(x)
    elif isinstance(x, float):
        s = "{:.3g}".format(x) if x < 10 else "{:.1f}".format(x)
    else:
        s = "{:,}".format(x)
    return s + unit


def ratio(a, b):
    if a is None or not b:
        return "—"
    return ("%.2f×" if a / b >= 0.1 else "%.2g×") % (a / b)


def met(ok):
    return "—" if ok is None else ("yes" if ok else "**no**")


def lat(r):
    return "p50 %s / p99 %s ms" % (fmt(r["p50_ms"]), fmt(r["p99_ms"])) if r else "—"


def rows(R):
    """(what, cmdbd, baseline, ratio, target, met) for every figure that was measured."""
    v = lambda k: R.get(k, {}).get("value")  # noqa: E731
    out = []
    pgn = v("pgbench_simple_update")
    for key, what, target in (("first_apply", "first apply, 8 clients (manifests/s)", 400),
                              ("next_generation", "next generation: new version, one "
                               "dependency swapped (manifests/s)", 1000),
                              ("identical_repost", "identical re-post (manifests/s)", 5000)):
        r = R.get(key)
        if not r:
            continue
        cm = "%s/s (p50 %s ms, p99 %s ms; %d errors)" % (fmt(r["rate"]), fmt(r["p50_ms"]),
                                                          fmt(r["p99_ms"]), r["errors"])
        out.append((what, cm, "pgbench -N: %s tps" % fmt(pgn), ratio(r["rate"], pgn),
                    "≥ {:,}/s, 0 errors".format(target),
                    met(r["rate"] >= target and r["errors"] == 0)))
    c, b = R.get("catalog_per_deploy"), R.get("catalog_bulk")
    if c:
        out.append(("Backstage-like catalog, %s manifests per deploy, 8 clients, into an "
                    "empty map: all visible after (s)" % fmt(c["count"]),
                    "%s s (%d errors)" % (fmt(c["elapsed_s"]), c["errors"]),
                    "same catalog as one bulk manifest: %s s" % fmt(b["elapsed_s"]) if b else "—",
                    ratio(c["elapsed_s"], b["elapsed_s"] if b else None), "< 1 s",
                    met(c["elapsed_s"] < 1 and c["errors"] == 0)))
    m = R.get("get_minimal")
    for key, what, target in (("get_node", "GET /v1/nodes/{kind}/{name}, 8 connections (req/s)", 0.5),
                              ("get_owners", "GET …/owners, 8 connections (req/s)", None)):
        r = R.get(key)
        if not r:
            continue
        out.append((what, "%s/s (%d errors)" % (fmt(r["rate"]), r["errors"]),
                    "minimal evhttp server: %s/s" % fmt(m["rate"]) if m else "—",
                    ratio(r["rate"], m["rate"] if m else None),
                    "≥ %.1f× minimal" % target if target else "—",
                    met(r["rate"] >= target * m["rate"] and r["errors"] == 0)
                    if target and m else "—"))
    for key, what in (("dependents", "dependents of the biggest hubs, limit 1000, 1 client"),
                      ("dependencies", "dependencies of the widest services, limit 1000, 1 client")):
        r, s = R.get(key), R.get("sql_" + key)
        if not r:
            continue
        out.append((what + " (ms)", lat(r) + ("" if not r["errors"] else "; %d errors" % r["errors"]),
                    "WITH RECURSIVE in PostgreSQL: " + lat(s) if s else "—",
                    ratio(r["p99_ms"], s["p99_ms"] if s else None) + " (p99)",
                    "p99 ≤ 3 ms (100k map)", met(r["p99_ms"] <= 3 and r["errors"] == 0)))
    r, now, b, nm = (R.get("as_of_day_back"), R.get("as_of_now"), v("as_of_build"),
                     R.get("as_of_new_moment"))
    if r:
        out.append(("as_of one day back on %s change rows: dependents of the hubs, owners, "
                    "node GET, 1 client, one moment (ms; its one build: %s)"
                    % (fmt(v("change_rows")), "%s of %s rows, %s ms" % (
                        b["how"], fmt(b["rows"]), fmt(b["ms"])) if b else "—"),
                    lat(r) + ("" if not r["errors"] else "; %d errors" % r["errors"]),
                    "the same questions now: " + lat(now) if now else "—",
                    ratio(r["p99_ms"], now["p99_ms"] if now else None) + " (p99)",
                    "p99 ≤ 50 ms (100k map, ~1M changes)",
                    met(r["p99_ms"] <= 50 and r["errors"] == 0)))
    if nm:
        out.append(("as_of, a new moment within the last day each request: dependents of "
                    "the biggest hub (ms; every request builds)",
                    lat(nm) + ("" if not nm["errors"] else "; %d errors" % nm["errors"]),
                    "—", "—", "—", "—"))
    if v("start_to_ready_s") is not None:
        gl = v("graph_loaded_ms")
        out.append(("start to ready on the loaded map: exec to /readyz 200 (s)",
                    fmt(v("start_to_ready_s"), " s"),
                    "graph load alone (server log): %s ms" % fmt(gl) if gl is not None else "—",
                    "—", "≤ 2 s", met(v("start_to_ready_s") <= 2)))
    r = R.get("standby_lag")
    if r:
        out.append(("cmdbd reading a hot standby: a write's reply to its seq applied there, "
                    "%d writes (ms)" % r["count"],
                    "p50 %s / p99 %s / max %s ms" % (fmt(r["p50_ms"]), fmt(r["p99_ms"]),
                                                    fmt(r["max_ms"])),
                    "start to ready from the standby: %s s" % fmt(r["start_to_ready_s"]),
                    "—", "—", "—"))
    for key, what in (("rss_after_load_kb", "RSS after the ingest phases (MiB)"),
                      ("rss_after_queries_kb", "RSS after the query phases (MiB)"),
                      ("rss_after_restart_kb", "RSS after a restart on the loaded map (MiB)"),
                      ("rss_after_as_of_kb", "RSS with as-of graphs cached (MiB)")):
        if v(key) is not None:
            mib = v(key) / 1024.0
            out.append((what, fmt(mib, " MiB"), "—", "—", "≤ 256 MiB", met(mib <= 256)))
    for key, what, unit in (("pgbench_select_only", "PostgreSQL alone: pgbench -S, 8 clients, 2 threads", " tps"),
                            ("pgbench_simple_update", "PostgreSQL alone: pgbench -N (simple update), 8 clients, 2 threads", " tps"),
                            ("fdatasync_per_s", "disk: one 8 kB write + fdatasync, per second", "/s")):
        if v(key) is not None:
            out.append((what, "—", fmt(float(v(key)), unit), "—", "—", "—"))
    return out


def span(roots, key):
    vals = [r[key] for r in roots or []]
    return "%s–%s" % (fmt(min(vals)), fmt(max(vals))) if vals else "?"


def header(R):
    m, est = R["machine"]["value"], R.get("estate", {}).get("value", {})
    pg = R.get("pg_settings", {}).get("value", {})
    db = R.get("map_in_db", {}).get("value", {})
    lines = [
        "`make bench SIZE=%s` — %s, commit %s%s, took %s s" % (
            m["size"], m["date"], m["commit"],
            " + %d uncommitted files" % m["dirty_files"] if m["dirty_files"] else "",
            R.get("bench_seconds", {}).get("value", "?")),
        "",
        "Machine: %d CPUs (%s), %.1f GiB memory, Linux %s; PostgreSQL %s on the same machine "
        "(fsync=%s, synchronous_commit=%s, shared_buffers=%s MiB); cmdbd, PostgreSQL and the "
        "load tool share the CPUs. Load average (1 min) before the run %s, at its end %s: "
        "more than ~0.5 before means something else was running." % (
            m["nproc"], m["cpu"], m["memory_gib"], m["kernel"], pg.get("server_version", "?"),
            pg.get("fsync", "?"), pg.get("synchronous_commit", "?"),
            int(pg.get("shared_buffers", 0)) * 8 // 1024, m.get("loadavg_at_start", "?"),
            R.get("loadavg_at_end", {}).get("value", "?")),
        "",
        "Estate: %s manifests (mean %s nodes+edges, max %s), %s nodes and %s edges after the "
        "next generation (in the database: %s nodes, %s edges); the top hubs' direct "
        "dependents %s; the %d dependents roots reach %s nodes, the %d dependencies roots %s; "
        "catalog %s manifests (%s nodes, %s edges)." % (
            fmt(est.get("manifests")), est.get("items_per_manifest_mean"),
            est.get("items_per_manifest_max"), fmt(est.get("nodes")), fmt(est.get("edges")),
            fmt(db.get("nodes")), fmt(db.get("edges")),
            ", ".join(fmt(x) for x in est.get("direct_dependents_top5", [])),
            len(est.get("dependents_roots", [])), span(est.get("dependents_roots"), "dependents"),
            len(est.get("dependencies_roots", [])),
            span(est.get("dependencies_roots"), "dependencies"),
            fmt(est.get("catalog_manifests")),
            *(fmt(x) for x in est.get("catalog_nodes_edges", [0, 0]))),
        "",
    ]
    return lines


def table(raw, out):
    R = {}
    with open(raw) as f:
        for ln in f:
            if ln.strip():
                rec = json.loads(ln)
                R[rec["label"]] = rec
    body = ["| what | cmdbd | baseline (same run) | ratio cmdbd ÷ baseline | target (issue 7) | met |",
            "|---|---|---|---|---|---|"]
    table_rows = rows(R)
    body += ["| " + " | ".join(r) + " |" for r in table_rows]
    text = "\n".join(header(R) + body) + "\n"
    print(text)
    with open(out + ".md", "w") as f:
        f.write(text)
    keys = ["what", "cmdbd", "baseline", "ratio", "target", "met"]
    with open(out + ".json", "w") as f:
        json.dump({"machine": R["machine"]["value"],
                   "rows": [dict(zip(keys, r)) for r in table_rows], "raw": R}, f, indent=1)
    print("written: %s.md, %s.json" % (out, out))


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "loadavg":
        print(loadavg())
    elif len(sys.argv) >= 5 and sys.argv[1] == "machine":
        print(json.dumps(machine(*sys.argv[2:5])))
    elif len(sys.argv) >= 4 and sys.argv[1] == "pgbench-log":
        print(json.dumps(pgbench_log(sys.argv[2], sys.argv[3:])))
    elif len(sys.argv) == 4 and sys.argv[1] == "table":
        table(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
