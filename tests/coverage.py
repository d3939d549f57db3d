#!/usr/bin/env python3
"""Line and branch coverage of keyway's code, per folder, from what a
build configured with --enable-coverage wrote while its tests ran
(`make coverage` runs it; gcovr reads the .gcda files).

    coverage.py SRCDIR BUILDDIR [FLOORS]

Prints one line per folder and writes BUILDDIR/coverage.json (gcovr's
summary per file).  With FLOORS (tests/coverage.floor), fails when a
folder's line coverage is below the floor given for it there.
"""
import json
import os
import re
import subprocess
import sys

FOLDERS = ["lib", "backends/env", "backends/file", "backends/sqlite",
           "backends/vault", "plugins/redis", "daemon", "cli",
           "conformance"]


def folder_of(path):
    for f in FOLDERS:
        if path.startswith(f + "/"):
            return f
    return None


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: coverage.py SRCDIR BUILDDIR [FLOORS]")
    src, build = (os.path.abspath(a) for a in sys.argv[1:3])
    out = os.path.join(build, "coverage.json")
    # A child of fork() writes the counters it had when its parent's other
    # threads were half-way through a block: gcov can then derive a
    # negative count for a branch ("branch 1 taken -4"), which gcovr takes
    # for a parse error.  Such a line says nothing of the lines run.
    subprocess.run(["gcovr", "--root", src, "--object-directory", build,
                    "--exclude-unreachable-branches",
                    "--gcov-ignore-parse-errors",
                    "--filter", re.escape(src) + "/(" + "|".join(FOLDERS) + ")/",
                    "--json-summary-pretty", "--output", out, build],
                   check=True)
    with open(out) as f:
        files = json.load(f)["files"]
    sums = {f: [0, 0, 0, 0] for f in FOLDERS}
    for f in files:
        d = folder_of(f["filename"])
        if d is None:
            continue
        s = sums[d]
        s[0] += f["line_covered"]
        s[1] += f["line_total"]
        s[2] += f["branch_covered"]
        s[3] += f["branch_total"]
    floors = {}
    if len(sys.argv) > 3:
        with open(sys.argv[3]) as f:
            for line in f:
                line = line.split("#", 1)[0].split()
                if len(line) == 2:
                    floors[line[0]] = float(line[1])
    low = []
    print("coverage: folder            lines              branches")
    for d in FOLDERS:
        lc, lt, bc, bt = sums[d]
        if lt == 0:
            print("coverage: %-16s  (nothing ran)" % d)
            low.append("%s: nothing ran" % d)
            continue
        lp = 100.0 * lc / lt
        bp = 100.0 * bc / bt if bt else 100.0
        print("coverage: %-16s %5.1f %% %6d/%-6d %5.1f %% %6d/%-6d"
              % (d, lp, lc, lt, bp, bc, bt))
        if d in floors and lp < floors[d]:
            low.append("%s: lines %.1f %% is below its floor of %.1f %% "
                       "(tests/coverage.floor)" % (d, lp, floors[d]))
    for m in low:
        print("coverage: " + m, file=sys.stderr)
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
