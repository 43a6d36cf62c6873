#!/usr/bin/env python3
"""Merges bench sections into the one results file set: OUT/results.json and
OUT/results.md (see bench/README.md for the section format, bench/figures.py).

  merge.py OUT MACHINE_JSON SECTION_DIR...

A section already in OUT/results.json and not given again is kept, so
sections run at different times can share one results file; each section
records the siov commit and the time it ran.  For every figure the spread
of each side (median, min, max, rounds) and the per-round ratio are
computed here, and a target is met only if it holds as asked (the median,
or every round)."""
import json
import os
import statistics
import sys
import time


def spread(vals):
    ok = [v for v in vals if v is not None]
    if not ok:
        return {"n": 0, "failed": len(vals)}
    med = statistics.median(ok)
    return {"n": len(ok), "failed": len(vals) - len(ok), "median": med, "min": min(ok),
            "max": max(ok), "spread_pct": (max(ok) - min(ok)) / med * 100 if med else None}


def ratio_stats(f, r):
    a = f["values"].get(r["of"], [])
    b = f["values"].get(r["to"], [])
    per = [x / y for x, y in zip(a, b) if x is not None and y]
    out = dict(r, per_round=per)
    if per:
        out.update(median=statistics.median(per), min=min(per), max=max(per))
    t = r.get("target")
    if t is not None and per:
        if f.get("better", "higher") == "higher":
            got = min(per) if r.get("every_round") else out["median"]
            out["met"] = got >= t
        else:
            got = max(per) if r.get("every_round") else out["median"]
            out["met"] = got <= t
    return out


def finish(section, git, when):
    s = dict(section, siov_git=git, ran_at=when)
    figs = []
    for f in section.get("figures", []):
        f = dict(f)
        f["stats"] = {side: spread(v) for side, v in f.get("values", {}).items()}
        f["ratios"] = [ratio_stats(f, r) for r in f.get("ratios", [])]
        figs.append(f)
    s["figures"] = figs
    return s


def num(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1e6:
        return "%.2fM" % (v / 1e6)
    if a >= 1e4:
        return "%.1fk" % (v / 1e3)
    if a >= 100:
        return "%.0f" % v
    if a >= 1:
        return "%.2f" % v
    return "%.3g" % v


def side_cell(side, st):
    if not st.get("n"):
        return "%s: failed" % side
    txt = "%s %s" % (side, num(st["median"]))
    if st["n"] > 1:
        txt += " (%s–%s, n=%d)" % (num(st["min"]), num(st["max"]), st["n"])
    if st.get("failed"):
        txt += ", %d failed" % st["failed"]
    return txt


def ratio_cells(r):
    if "median" not in r:
        return "-", ""
    cell = "%.2fx" % r["median"]
    if len(r["per_round"]) > 1:
        cell += " (%.2f–%.2fx)" % (r["min"], r["max"])
    cell = "%s/%s %s" % (r["of"], r["to"], cell)
    t = r.get("target")
    if t is None:
        return cell, ""
    op = "≥" if r.get("better", "higher") == "higher" else "≤"
    return cell, "%s %gx%s: %s" % (op, t, " every round" if r.get("every_round") else "",
                                   "met" if r.get("met") else "NOT met")


def section_md(s):
    lines = ["## %s (`%s`)" % (s.get("title") or s["section"], s["section"]), "",
             "Ran %s at siov %s.%s" % (s.get("ran_at", "?"), s.get("siov_git", "?"),
                                       (" " + s["setup"]) if s.get("setup") else ""), "",
             "| figure | unit | measured: median (min–max, rounds) | ratio | target |",
             "|---|---|---|---|---|"]
    for f in s["figures"]:
        sides = "; ".join(side_cell(k, v) for k, v in f["stats"].items())
        cells = [ratio_cells(dict(r, better=f.get("better", "higher"))) for r in f["ratios"]]
        lines.append("| %s | %s | %s | %s | %s |" % (
            f["label"].replace("|", "\\|"), f.get("unit", ""), sides, "<br>".join(c[0] for c in cells),
            "<br>".join(c[1] for c in cells if c[1])))
    for n in s.get("notes", []):
        lines += ["", n]
    return lines + [""]


def machine_md(m):
    return ("Machine: %s, %s CPUs, kernel %s, %s GiB, %s; load average at the start %s. "
            "Versions: %s; fio %s; %s; liburing %s." % (
                m.get("cpu", "?"), m.get("cpus", "?"), m.get("kernel", "?"), m.get("mem_gib", "?"),
                m.get("virtualized") or "bare metal", m.get("loadavg_at_start", "?"),
                m.get("qemu_storage_daemon") or "no qsd", m.get("fio", "?"),
                m.get("compiler", "?"), m.get("liburing", "?")))


def main():
    out, mpath, dirs = sys.argv[1], sys.argv[2], sys.argv[3:]
    res_path = os.path.join(out, "results.json")
    old = {}
    if os.path.exists(res_path):
        with open(res_path) as f:
            old = json.load(f)
    with open(mpath) as f:
        machine = json.load(f)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    sections = {s["section"]: s for s in old.get("sections", [])}
    order = [s["section"] for s in old.get("sections", [])]
    for d in dirs:
        p = os.path.join(d, "section.json")
        if not os.path.exists(p):
            print("merge: %s wrote no section.json" % d, file=sys.stderr)
            continue
        with open(p) as f:
            s = json.load(f)
        sections[s["section"]] = finish(s, machine.get("siov_git", "?"), when)
        if s["section"] not in order:
            order.append(s["section"])
    res = {"format": 1, "machine": machine, "sections": [sections[k] for k in order]}
    with open(res_path + ".tmp", "w") as f:
        json.dump(res, f, indent=1)
    os.replace(res_path + ".tmp", res_path)
    md = ["# siov benchmark results", "", machine_md(machine), "",
          "Each figure once; every side's median with its spread over the rounds, and the "
          "ratio per round (rounds of both sides ran back to back).", ""]
    for s in res["sections"]:
        md += section_md(s)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
