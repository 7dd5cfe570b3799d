"""Benchmark: power cuts. `steerlab run` on the virtual lab (224 x 64 frames) is killed with SIGKILL
(its whole process group) at random moments, --kills times; every file must open through steerlab's
reader holding every shot the run reported committed, and `repair` must give a copy any plain h5py
opens. Usage: python benchmarks/power_cut.py [--kills 50] [--seed 1]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reliability.harness import check_crashed_file, kill_group, small_config, start_run, wait_for_lines  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    survived, reported, lost, early = 0, 0, 0, 0
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = small_config(Path(tmp))
        for k in range(args.kills):
            log = Path(tmp) / f"w{k}.log"
            proc = start_run(cfg, f"cut{k}.h5", log)
            # a random moment: sometimes during start-up, mostly mid-run
            if rng.random() < 0.2:
                time.sleep(rng.uniform(0.2, 2.0))
            else:
                wait_for_lines(log, rng.randint(1, 60), 60)
                time.sleep(rng.uniform(0, 0.05))
            kill_group(proc)
            path = Path(tmp) / f"cut{k}.h5"
            if not path.exists():
                early += 1                                # killed before the file was created
                survived += 1
                print(f"kill {k + 1:2d}: before the run file existed")
                continue
            c = check_crashed_file(path, log, Path(tmp) / f"clean{k}.h5")
            ok = not c.missing and c.repaired == c.in_file
            survived += ok
            reported += c.reported
            lost += len(c.missing)
            print(f"kill {k + 1:2d}: {c.reported:3d} shots reported committed, {c.in_file:3d} in the file, "
                  f"{len(c.missing)} missing, repaired copy {c.repaired} shots: {'ok' if ok else 'FAILED'}")
    figures = {"kills": args.kills, "files_ok": survived, "killed_before_file": early,
               "shots_reported": reported, "shots_lost": lost, "seconds": round(time.monotonic() - t0, 1)}
    print(f"{survived}/{args.kills} kills survived, {lost} of {reported} reported shots lost")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
