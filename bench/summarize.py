#!/usr/bin/env python3
"""Folds bench/run.sh's raw runs into results.json and a markdown table of
medians and ratios (siovd against each peer), with the issue's targets."""
import glob
import json
import os
import statistics
import sys


def load(out):
    runs = []
    for p in sorted(glob.glob(os.path.join(out, "raw", "*.json"))):
        with open(p) as f:
            runs.append(json.load(f))
    return runs


def median_of(runs, key):
    vals = [key(r) for r in runs if key(r) is not None]
    return statistics.median(vals) if vals else None


def group(runs):
    g = {}
    for r in runs:
        g.setdefault((r["backend"], r["side"], r["iodepth"]), []).append(r)
    rows = {}
    for k, rs in g.items():
        rows[k] = {
            "runs": len(rs),
            "iops": median_of(rs, lambda r: r["iops"]),
            "lat_mean_us": median_of(rs, lambda r: r["lat_ns"]["mean"] / 1e3),
            "lat_p99_us": median_of(rs, lambda r: r["lat_ns"].get("p99", 0) / 1e3 or None),
            "iops_per_cpu_s": median_of(rs, lambda r: r.get("iops_per_target_cpu_s")),
            "target_cpu_util": median_of(
                rs, lambda r: r["target_cpu_s"] / r["runtime_s"] if "target_cpu_s" in r else None),
            "bench_empty_reap_pct": median_of(rs, lambda r: r.get("bench_empty_reap_pct")),
        }
    return rows


def fmt(v, f="%.0f"):
    return "-" if v is None else f % v


def ratio(a, b):
    return a / b if a is not None and b else None


def table(rows):
    lines = ["| backend | side | QD | IOPS | mean lat (us) | p99 (us) | IOPS per target CPU-s |"
             " target CPU util | bench empty reaps % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (be, side, qd), r in sorted(rows.items()):
        lines.append("| %s | %s | %d | %s | %s | %s | %s | %s | %s |" % (
            be, side, qd, fmt(r["iops"]), fmt(r["lat_mean_us"], "%.2f"),
            fmt(r["lat_p99_us"], "%.2f"), fmt(r["iops_per_cpu_s"]),
            fmt(r["target_cpu_util"], "%.2f"), fmt(r["bench_empty_reap_pct"], "%.1f")))
    return lines


def ratios(rows):
    out, lines = [], ["| comparison | QD | IOPS ratio | mean latency ratio | IOPS/CPU-s ratio | target |",
                      "|---|---|---|---|---|---|"]
    for (be, side, qd), r in sorted(rows.items()):
        if side != "siovd":
            continue
        for peer in ("qsd", "fio", "fio-cpu1"):
            p = rows.get((be, peer, qd))
            if not p:
                continue
            item = {"backend": be, "peer": peer, "iodepth": qd,
                    "iops": ratio(r["iops"], p["iops"]),
                    "lat_mean": ratio(r["lat_mean_us"], p["lat_mean_us"]),
                    "iops_per_cpu_s": ratio(r["iops_per_cpu_s"], p["iops_per_cpu_s"])}
            if be == "null" and qd >= 32:
                target = "IOPS/CPU-s >= 3.5x"
            elif be == "null" and qd == 1:
                target = "mean latency <= 0.25x"
            elif be == "file" and peer == "fio":
                target = "IOPS >= 0.9x (fio issuing I/O from the target's CPU, like siovd)"
            else:
                target = ""
            item["target"] = target
            out.append(item)
            lines.append("| siovd %s vs %s | %d | %s | %s | %s | %s |" % (
                be, peer, qd, fmt(item["iops"], "%.2fx"), fmt(item["lat_mean"], "%.2fx"),
                fmt(item["iops_per_cpu_s"], "%.2fx"), target))
    return out, lines


def main():
    out = sys.argv[1]
    runs = load(out)
    rows = group(runs)
    rat, rat_lines = ratios(rows)
    machine = {}
    mpath = os.path.join(out, "machine.json")
    if os.path.exists(mpath):
        with open(mpath) as f:
            machine = json.load(f)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"machine": machine,
                   "rows": [dict(backend=k[0], side=k[1], iodepth=k[2], **v)
                            for k, v in sorted(rows.items())],
                   "ratios": rat}, f, indent=1)
    md = ["# siov benchmark results", "",
          "Machine: %s, %s CPUs, kernel %s, %s GiB, %s; %s; fio %s; siov %s." % (
              machine.get("cpu", "?"), machine.get("cpus", "?"), machine.get("kernel", "?"),
              machine.get("mem_gib", "?"), machine.get("virtualized", "?") or "bare metal?",
              machine.get("qemu_storage_daemon", "?"), machine.get("fio", "?"),
              machine.get("siov_git", "?")),
          "", "Target pinned to CPU 0, load generator to CPU 1; 4 KiB random reads; "
          "medians of alternating runs (A B A B).", ""]
    md += table(rows) + [""]
    md += (rat_lines if rat else ["No siovd runs: ratios need siovd (not built at run time)."])
    md.append("")
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
