"""Benchmark (robustness): `steerlab analyze --workers 2` interrupted at random moments.

A 150-shot virtual run is analysed six times over by a real `steerlab analyze --workers 2 --chunk 5`
subprocess; after a uniform 1-6 s (seeded) it gets SIGTERM or SIGINT. Every trial must end within
30 s with exit 130 and one line, no traceback, no "damaged file" verdict, no worker left and no
worker killed. Prints one line per trial that is not clean, a summary, and the JSON line.
A hang is reported with the process's Python stacks when py-spy is installed.

Usage: python benchmarks/interrupt_analyze.py [--trials 40] [--seed 1]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    counts = {"clean": 0, "during_imports": 0, "hang": 0, "traceback": 0, "damaged": 0, "killed": 0,
              "other_exit": 0, "orphans": 0}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "lab.toml"
        cfg.write_text((ROOT / "configs" / "virtual-lab.toml").read_text()
                       .replace('data_dir = "../../runs"', f'data_dir = "{Path(tmp) / "runs"}"'))
        subprocess.run([sys.executable, "-m", "app.cli", "run", "--config", str(cfg), "--shots", "150",
                        "--out", "a.h5", "--no-progress"], env=env, check=True, capture_output=True)
        run = Path(tmp) / "runs" / "a.h5"
        t0 = time.monotonic()
        for i in range(args.trials):
            sig = rng.choice([signal.SIGTERM, signal.SIGINT])
            delay = rng.uniform(1.0, 6.0)
            p = subprocess.Popen([sys.executable, "-m", "app.cli", "analyze", *[str(run)] * 6, "--out",
                                  str(Path(tmp) / "out"), "--workers", "2", "--chunk", "5", "--no-progress"],
                                 env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(delay)
            kids = children(p.pid)
            p.send_signal(sig)
            try:
                _, err = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                counts["hang"] += 1
                print(f"trial {i}: {sig.name} after {delay:.1f} s: HANG", flush=True)
                if shutil.which("py-spy"):
                    os.system(f"py-spy dump --pid {p.pid}")
                p.kill()
                p.communicate()
                continue
            time.sleep(0.5)
            left = [k for k in kids if os.path.exists(f"/proc/{k}") and
                    "zombie" not in Path(f"/proc/{k}/status").read_text().lower()]
            counts["orphans"] += bool(left)
            last = err.strip().splitlines()[-1] if err.strip() else ""
            if "Traceback" in err or "Exception ignored" in err:
                kind = "traceback"
            elif "damaged" in err:
                kind = "damaged"
            elif "was killed" in err:
                kind = "killed"
            elif p.returncode == 130 and last == "steerlab: interrupted":
                kind = "during_imports"
            elif p.returncode == 130 and last == "steerlab analyze: interrupted":
                kind = "clean"
            else:
                kind = "other_exit"
            counts[kind] += 1
            if kind not in ("clean", "during_imports") or left:
                print(f"trial {i}: {sig.name} after {delay:.1f} s: exit {p.returncode}, {kind}, "
                      f"{len(left)} workers left: {err.strip()[-300:]}", flush=True)
    bad = sum(counts[k] for k in ("hang", "traceback", "damaged", "killed", "other_exit", "orphans"))
    print(f"{args.trials} trials in {time.monotonic() - t0:.0f} s: {counts['clean']} clean, "
          f"{counts['during_imports']} interrupted during imports, {bad} not clean")
    print(json.dumps({"trials": args.trials, "seed": args.seed, **counts, "not_clean": bad}))


if __name__ == "__main__":
    main()
