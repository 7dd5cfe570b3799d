"""Benchmark: a virtual-lab run with both cores busy (two `yes > /dev/null`), through the real
command line. A slow host must not fail shots: the virtual lab's drivers wait for the host's and
the simulation's lateness (drivers/patience.py). Interleaved: idle, loaded, idle, loaded.
Usage: python benchmarks/loaded_run.py [--shots 300] [--repeats 1]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(tmp: Path, shots: int, loaded: bool, k: int) -> dict[str, object]:
    cfg = tmp / "lab.toml"
    cfg.write_text((ROOT / "configs" / "virtual-lab.toml").read_text()
                   .replace('data_dir = "../../runs"', f'data_dir = "{tmp / "runs"}"'))
    load = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(2)] if loaded else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "app.cli", "run", "--config", str(cfg), "--shots",
                               str(shots), "--out", f"r{k}-{'loaded' if loaded else 'idle'}.h5", "--json",
                               "--no-progress"], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=3600)
    finally:
        for p in load:
            p.kill()
            p.wait()
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if loaded:                     # the `yes` processes are children too: count only steerlab's
        cpu = float("nan")
    out = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode in (0, 1) else {}
    lat = (out.get("results") or {}).get("host_lateness", {})
    return {"loaded": loaded, "rc": proc.returncode, "final": out.get("final_state"),
            "failed_shots": out.get("failed_shots"), "wall_s": round(wall, 1),
            "cpu_s": None if cpu != cpu else round(cpu, 1), "extended_waits": lat.get("extended_waits"),
            "max_extension_s": lat.get("max_extension_s")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for k in range(args.repeats):
            for loaded in (False, True):
                r = one_run(Path(d), args.shots, loaded, k)
                rows.append(r)
                print(f"{'loaded' if loaded else 'idle  '}: {r['final']}, {r['failed_shots']} failed of "
                      f"{args.shots}, {r['wall_s']} s wall, cpu {r['cpu_s']} s, host-lateness waits "
                      f"{r['extended_waits']} (max {r['max_extension_s']} s)")
    loaded_rows = [r for r in rows if r["loaded"]]
    idle_rows = [r for r in rows if not r["loaded"]]
    print(json.dumps({"shots": args.shots, "repeats": args.repeats,
                      "failed_shots_loaded": sum(int(r["failed_shots"] or 0) for r in loaded_rows),
                      "failed_shots_idle": sum(int(r["failed_shots"] or 0) for r in idle_rows),
                      "all_completed": all(r["final"] == "completed" for r in rows),
                      "wall_s_loaded": [r["wall_s"] for r in loaded_rows],
                      "wall_s_idle": [r["wall_s"] for r in idle_rows],
                      "cpu_s_idle": [r["cpu_s"] for r in idle_rows],
                      "extended_waits_loaded": [r["extended_waits"] for r in loaded_rows]}))


if __name__ == "__main__":
    main()
