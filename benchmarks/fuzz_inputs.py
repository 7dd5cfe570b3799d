"""Benchmark: bad input, full size. Two parts:
1. through the real command lines (tests/reliability/cli_fuzz.py): every input issue 15 listed, each
   in a new interpreter (`python -m app.cli`), and --cli-cases mutated configurations, plans, counts
   and options in forked children of a process that imported steerlab once (two at a time);
2. the in-process properties of tests/reliability/test_fuzz_inputs.py with --cases cases each.
Reports tracebacks, hangs (> 60 s), deaths by signal and rejections that do not name the file or
option. Usage: python benchmarks/fuzz_inputs.py [--cli-cases 2000] [--cases 1500] [--skip-properties]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli_part(n: int) -> dict[str, object]:
    """The command-line fuzz: listed inputs in new interpreters, ``n`` mutated ones forked."""
    sys.path.insert(0, str(ROOT))
    from concurrent.futures import ThreadPoolExecutor

    from tests.reliability.cli_fuzz import ForkRunner, listed_cases, random_cases, run_subprocess
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        where = Path(d)
        with ThreadPoolExecutor(2) as pool:
            listed = list(pool.map(lambda c: run_subprocess(c, where / "listed"), listed_cases()))
        t1 = time.monotonic()
        mutated = ForkRunner().run_many(random_cases(n, seed=2026), where / "mutated", jobs=2)
    t2 = time.monotonic()
    every = listed + mutated
    problems = [(o.case.name, p) for o in every for p in o.problems]
    for name, p in problems[:20]:
        print(f"PROBLEM {name}: {p[:300]}")
    rcs: dict[str, int] = {}
    for o in every:
        rcs[str(o.rc)] = rcs.get(str(o.rc), 0) + 1
    kinds: dict[str, int] = {}
    for o in mutated:
        k = o.case.name.split()[0]
        kinds[k] = kinds.get(k, 0) + 1
    out = {"listed_cases": len(listed), "mutated_cases": len(mutated), "by_kind": kinds,
           "exit_statuses": rcs,
           "tracebacks": sum(any(p.startswith("traceback") for p in o.problems) for o in every),
           "hangs": sum(o.rc is None for o in every),
           "unnamed_rejections": sum(any(p.startswith("rejection") for p in o.problems) for o in every),
           "problems": len(problems), "max_case_s": round(max(o.seconds for o in every), 1),
           "listed_s": round(t1 - t0, 1), "mutated_s": round(t2 - t1, 1)}
    print(f"command lines: {len(listed)} listed (new interpreters, {t1 - t0:.0f} s) + {len(mutated)} mutated "
          f"(forked, {t2 - t1:.0f} s); exit statuses {rcs}; {out['tracebacks']} tracebacks, {out['hangs']} "
          f"hangs, {out['unnamed_rejections']} rejections without a name")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1500, help="cases per text-input property")
    ap.add_argument("--cli-cases", type=int, default=2000, help="mutated command-line cases")
    ap.add_argument("--skip-properties", action="store_true", help="only the command-line part")
    args = ap.parse_args()
    cli = cli_part(args.cli_cases)
    if args.skip_properties:
        print(json.dumps({"cli": cli}))
        return
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
    print(json.dumps({"cli": cli, "cases_per_text_property": args.cases, "passing_cases": cases,
                      "total_cases": sum(cases.values()), "failed": proc.returncode != 0,
                      "seconds": round(time.monotonic() - t0, 1)}))


if __name__ == "__main__":
    main()
