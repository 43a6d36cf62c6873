#!/usr/bin/env python3
"""The one format every bench section writes (see bench/README.md).

A section is a script under bench/sections/ that leaves DIR/section.json:

  {"section": "null", "title": "...", "setup": "how it was measured",
   "figures": [{"id": "null.randread.4k.qd32.iops_per_cpu_s",
                "label": "null, 4 KiB randread, QD 32: IOPS per target CPU-second",
                "unit": "IOPS/CPU-s", "better": "higher",
                "values": {"siovd": [r1, r2, r3], "qsd": [r1, r2, r3]},
                "ratios": [{"of": "siovd", "to": "qsd", "target": 4.0, "every_round": true}]}],
   "notes": ["..."]}

values holds one number per round for each side (the program measured:
siovd, qsd, fio, spdk...); rounds with the same index ran back to back, so
ratios pair them.  bench/merge.py adds the spread (median, min, max) and the
per-round ratios; sections record raw values only.

Used as a module (Section(...).add(...); .write()) or from shell:
  figures.py add DIR --id ID --side S --value V [--label L --unit U --better higher|lower]
  figures.py ratio DIR --id ID --of siovd --to qsd [--target X] [--every-round]
  figures.py note DIR TEXT...        figures.py meta DIR --title T [--setup S]
"""
import argparse
import json
import os
import sys


class Section:
    """A section's section.json, read back if it exists so calls accumulate."""

    def __init__(self, out_dir, name=None, title=None, setup=None):
        self.path = os.path.join(out_dir, "section.json")
        os.makedirs(out_dir, exist_ok=True)
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.d = json.load(f)
        else:
            self.d = {"section": name or os.path.basename(os.path.normpath(out_dir)),
                      "title": "", "setup": "", "figures": [], "notes": []}
        if name:
            self.d["section"] = name
        if title:
            self.d["title"] = title
        if setup:
            self.d["setup"] = setup

    def figure(self, fid, label=None, unit=None, better=None):
        for f in self.d["figures"]:
            if f["id"] == fid:
                break
        else:
            f = {"id": fid, "label": fid, "unit": "", "better": "higher", "values": {}}
            self.d["figures"].append(f)
        if label:
            f["label"] = label
        if unit:
            f["unit"] = unit
        if better:
            f["better"] = better
        return f

    def add(self, fid, side, value, **meta):
        """Appends one round's value for side; value None records a failed round."""
        f = self.figure(fid, **meta)
        f["values"].setdefault(side, []).append(None if value is None else float(value))
        return f

    def ratio(self, fid, of, to, target=None, every_round=False):
        """Asks merge.py for of/to per round; target: the ratio to reach (or not
        exceed, for better=lower), by the median or in every round."""
        f = self.figure(fid)
        rs = [r for r in f.setdefault("ratios", []) if (r["of"], r["to"]) != (of, to)]
        rs.append({"of": of, "to": to, "target": target, "every_round": bool(every_round)})
        f["ratios"] = rs

    def note(self, text):
        self.d["notes"].append(text)

    def write(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.d, f, indent=1)
        os.replace(tmp, self.path)


def main(argv):
    p = argparse.ArgumentParser(prog="figures.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("add")
    a.add_argument("dir")
    a.add_argument("--id", required=True)
    a.add_argument("--side", required=True)
    a.add_argument("--value", required=True, help="a number, or 'none' for a failed round")
    a.add_argument("--label")
    a.add_argument("--unit")
    a.add_argument("--better", choices=("higher", "lower"))
    r = sub.add_parser("ratio")
    r.add_argument("dir")
    r.add_argument("--id", required=True)
    r.add_argument("--of", required=True)
    r.add_argument("--to", required=True)
    r.add_argument("--target", type=float)
    r.add_argument("--every-round", action="store_true")
    n = sub.add_parser("note")
    n.add_argument("dir")
    n.add_argument("text", nargs="+")
    m = sub.add_parser("meta")
    m.add_argument("dir")
    m.add_argument("--name")
    m.add_argument("--title")
    m.add_argument("--setup")
    args = p.parse_args(argv)
    s = Section(args.dir, name=getattr(args, "name", None), title=getattr(args, "title", None),
                setup=getattr(args, "setup", None))
    if args.cmd == "add":
        v = None if args.value.lower() in ("none", "") else args.value
        s.add(args.id, args.side, v, label=args.label, unit=args.unit, better=args.better)
    elif args.cmd == "ratio":
        s.ratio(args.id, args.of, args.to, args.target, args.every_round)
    elif args.cmd == "note":
        s.note(" ".join(args.text))
    s.write()


if __name__ == "__main__":
    main(sys.argv[1:])
