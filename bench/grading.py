"""Benchmark group `grading`: what grading against an answer key costs (worker/grading.py).

    python -m bench grading                  # about a minute
    python -m bench grading --rows 20000

Prints, each measured in a fresh Python process: the import time and memory a worker adds
when a comparison first needs math-verify (SymPy and its LaTeX parser; a worker without a
[check] or a key never loads them); how many pairs of the teacher's table (tests/
test_grading.py) get the teacher's verdict, and the time per pair cold and warm; and how many
rows a second an answers file is graded at, for plain-number keys (read exactly, no SymPy)
and for LaTeX or expression keys (math-verify).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

IMPORTS = r"""
import json, resource, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
t0 = time.perf_counter()
import worker.runtime, worker.check
t1 = time.perf_counter(); before = rss()
loaded = "math_verify" in sys.modules or "sympy" in sys.modules
from worker.grading import grade
grade("2x - y + 1 = 0", "y = 2x + 1")
t2 = time.perf_counter()
print(json.dumps({"worker_s": t1 - t0, "worker_mb": before, "loaded_early": loaded,
                  "first_s": t2 - t1, "after_mb": rss()}))
"""

TABLE = r"""
import json, time
from tests.test_grading import TABLE
from worker.grading import grade, _grade
times, agree = [], 0
for answer, key, verdict in TABLE:
    t = time.perf_counter(); got = grade(answer, key).correct; times.append(time.perf_counter() - t)
    agree += got is verdict
_grade.cache_clear()
t = time.perf_counter()
for answer, key, _ in TABLE:
    grade(answer, key)
warm = (time.perf_counter() - t) / len(TABLE)
times.sort()
print(json.dumps({"pairs": len(TABLE), "agree": agree, "cold_p50": times[len(times) // 2],
                  "cold_max": times[-1], "warm_mean": warm}))
"""

SHEET = r"""
import json, sys, time
from worker.grading import grade
rows, kind = int(sys.argv[1]), sys.argv[2]
grade("x^2", "x^2")  # the import, and SymPy's first call, are not the sheet's
t = time.perf_counter()
right = 0
for i in range(rows):
    if kind == "plain":
        answer, key = f"Step...\nAnswer: x = {i}/7", f"{i // 7} {i % 7}/7" if i % 7 else str(i // 7)
    else:
        answer, key = f"Answer: \\frac{{{i}}}{{7}}x + 1", f"{i}x/7 + 1"
    right += grade(answer, key).correct is True
print(json.dumps({"rows_per_s": rows / (time.perf_counter() - t), "right": right, "rows": rows}))
"""


def _run(code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench grading", description=__doc__)
    parser.add_argument("--rows", type=int, default=5000, help="rows graded per sheet kind")
    args = parser.parse_args(argv)
    imp = _run(IMPORTS)
    print(
        f"a worker's modules: {imp['worker_s']:.2f} s, {imp['worker_mb']:.0f} MB RSS "
        f"(math-verify loaded: {imp['loaded_early']}); the first comparison that needs "
        f"math-verify: +{imp['first_s']:.2f} s, +{imp['after_mb'] - imp['worker_mb']:.0f} MB "
        f"({imp['after_mb']:.0f} MB)"
    )
    table = _run(TABLE)
    print(
        f"teacher's table: {table['agree']} of {table['pairs']} verdicts as the teacher's; "
        f"cold p50 {1000 * table['cold_p50']:.1f} ms, max {1000 * table['cold_max']:.0f} ms; "
        f"warm mean {1000 * table['warm_mean']:.1f} ms a pair"
    )
    for kind in ("plain", "latex"):
        sheet = _run(SHEET, str(args.rows), kind)
        print(
            f"{kind} keys: {sheet['rows_per_s']:,.0f} rows/s graded "
            f"({sheet['right']:,} of {sheet['rows']:,} right)"
        )
