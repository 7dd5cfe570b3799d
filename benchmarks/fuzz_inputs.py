"""Benchmark: the bad-input fuzz properties of tests/reliability/test_fuzz_inputs.py with many more
cases (plans, lab configurations, calibration records, counts CSV, corrupted run files, instrument
replies). Usage: python benchmarks/fuzz_inputs.py [--cases 3000]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=3000, help="cases per text-input property")
    args = ap.parse_args()
    env = dict(os.environ, STEERLAB_FUZZ_CASES=str(args.cases), PYTHONPATH=str(ROOT))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/reliability/test_fuzz_inputs.py", "--hypothesis-show-statistics"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    out = proc.stdout
    cases = {m.group(1): int(m.group(2)) for m in
             re.finditer(r"test_fuzz_inputs\.py::(\w+):\s*\n\s*-\s*during generate phase.*?(\d+) passing", out, re.S)}
    for name, n in cases.items():
        print(f"{name:40s} {n:6d} passing cases")
    summary = out.strip().splitlines()[-1] if out.strip() else proc.stderr[-300:]
    print(summary)
    print(json.dumps({"cases_per_text_property": args.cases, "passing_cases": cases,
                      "total_cases": sum(cases.values()), "failed": proc.returncode != 0,
                      "seconds": round(time.monotonic() - t0, 1)}))


if __name__ == "__main__":
    main()
