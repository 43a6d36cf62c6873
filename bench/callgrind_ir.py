#!/usr/bin/env python3
"""Instructions per request from a callgrind profile (bench/sections/packed.sh).

usage: callgrind_ir.py CALLGRIND_OUT REQUESTS FUNCTION...
Prints one line per FUNCTION: its inclusive instruction count (all its
callers, every clone such as .constprop.0) divided by REQUESTS, or "none" if
the profile has no such function.  Instruction counts do not depend on how
loaded the machine is, which is why the section records them.
"""
import re
import subprocess
import sys


def inclusive(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", "--auto=no", path],
                         capture_output=True, text=True, check=True).stdout
    tot = {}
    for line in out.splitlines():
        # "  1,234 (12.3%)  path/file.c:func.constprop.0 [/path/to/object]": callgrind_annotate
        # lists a function under each spelling of its file (absolute, build-relative); the
        # largest is the whole function, the others parts of it.  Clones of one function add up.
        m = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S+?):([A-Za-z_]\w*)((?:\.\w+\.\d+)*)(\s|$)", line)
        if m and not line.lstrip().startswith("=>"):
            key = (m.group(3), m.group(4))
            tot[key] = max(tot.get(key, 0), int(m.group(1).replace(",", "")))
    sums = {}
    for (fn, _clone), n in tot.items():
        sums[fn] = sums.get(fn, 0) + n
    return sums


def main():
    path, requests, funcs = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    tot = inclusive(path)
    for f in funcs:
        print("%.1f" % (tot[f] / requests) if f in tot and requests > 0 else "none")


if __name__ == "__main__":
    main()
