"""Benchmark: soak. A long virtual-lab run (224 x 64 frames) sampled every --every shots: resident
memory, open file descriptors, threads and time per shot; reports their linear slopes per 1000
shots (after the first sample: masks centred, caches warm).
Usage: python benchmarks/soak.py [--shots 10000] [--every 500]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reliability.soak import soak  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=500)
    args = ap.parse_args()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        s, final, path = soak(Path(tmp), args.shots, args.every)
        size_mb = path.stat().st_size / 2**20
    for i, n in enumerate(s.shots):
        print(f"{n:6d} shots: RSS {s.rss_mb[i]:7.1f} MB (simulator cache {s.sim_cache_mb[i]:5.1f} MB), {s.fds[i]:3d} fds, {s.threads[i]:2d} threads, "
              f"{s.ms_per_shot[i]:6.1f} ms/shot")
    figures = {"shots": args.shots, "final_state": final.value, "seconds": round(time.monotonic() - t0, 1),
               "file_MB": round(size_mb, 1),
               "rss_MB_per_1000_shots": round(s.slope("rss_mb"), 3),
               "app_MB_per_1000_shots": round(s.slope("app_mb"), 3),
               "fds_per_1000_shots": round(s.slope("fds"), 3),
               "threads_per_1000_shots": round(s.slope("threads"), 3),
               "ms_per_shot_per_1000_shots": round(s.slope("ms_per_shot"), 3),
               "ms_per_shot_mean": round(sum(s.ms_per_shot[1:]) / max(1, len(s.ms_per_shot) - 1), 2),
               "rss_MB_first_last": [round(s.rss_mb[1], 1), round(s.rss_mb[-1], 1)]}
    print(f"{final.value}: slopes per 1000 shots: RSS {figures['rss_MB_per_1000_shots']} MB "
          f"({figures['app_MB_per_1000_shots']} MB without the simulator's cache), fds "
          f"{figures['fds_per_1000_shots']}, threads {figures['threads_per_1000_shots']}, time/shot "
          f"{figures['ms_per_shot_per_1000_shots']} ms")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
