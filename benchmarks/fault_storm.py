"""Benchmark: a virtual-lab run with --faults instrument faults injected at random shots (dropped
connections, error replies, slow replies, garbage bytes, wrong replies, missing frames); checks that
no shot is lost, duplicated or mislabelled. Usage: python benchmarks/fault_storm.py [--faults 100]
[--shots 600] [--seed 1]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reliability.storm import storm  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faults", type=int, default=100)
    ap.add_argument("--shots", type=int, default=600)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    import logging
    logging.disable(logging.WARNING)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        r = storm(Path(tmp), args.shots, args.faults, args.seed)
    for kind, n in sorted(r.faults.items()):
        print(f"{kind:24s} {n:3d} injected")
    ok = r.final == "completed" and not r.problems and r.ok_shots == args.shots
    print(f"run {r.final}: {r.ok_shots} ok shots, {r.failed_shots} failed attempts recorded, {r.pauses} pauses; "
          f"problems: {r.problems or 'none'}")
    print(json.dumps({"faults_injected": sum(r.faults.values()), "faults_survived": sum(r.faults.values()) if ok else 0,
                      "shots": args.shots, "ok_shots": r.ok_shots, "failed_attempts": r.failed_shots,
                      "pauses": r.pauses, "problems": len(r.problems), "run": r.final,
                      "seconds": round(time.monotonic() - t0, 1), "by_kind": dict(r.faults)}))


if __name__ == "__main__":
    main()
