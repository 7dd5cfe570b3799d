"""Benchmark: offline analysis of virtual-lab runs, this process vs local Dask workers (1, 2).

Writes N runs of S shots (224 x 128 frames), then times the full splitting-ratio scan of all runs
(two passes over the frames) with the chunks run in this process, and on a distributed.LocalCluster
of 1 and 2 worker processes. Checks that every path gives identical numbers.
Usage: python benchmarks/analyze_dask.py [--runs 2] [--shots 600]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.offline import open_analysis  # noqa: E402
from tests.offline.runs import write_virtual_run  # noqa: E402


def scan_all(paths: list[Path], executor: object) -> tuple[float, list[np.ndarray]]:
    t0 = time.perf_counter()
    out = [open_analysis(p, executor=executor, chunk=50).ratio_scan("x", 1.0).best["E_Ent"].value
           for p in paths]
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--shots", type=int, default=600)
    args = ap.parse_args()
    from distributed import Client, LocalCluster
    with tempfile.TemporaryDirectory() as tmp:
        paths = [write_virtual_run(Path(tmp) / f"run{i}.h5", "squeezed", args.shots, 100 + i)
                 for i in range(args.runs)]
        print(f"{args.runs} runs of {args.shots} shots written")
        t_local, ref = scan_all(paths, None)
        print(f"this process:      {t_local:6.2f} s")
        figures = {"runs": args.runs, "shots": args.shots, "local_s": round(t_local, 3)}
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                scan_all(paths[:1], client)          # warm the workers (imports)
                t, res = scan_all(paths, client)
            same = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(ref, res))
            print(f"dask, {workers} worker(s): {t:6.2f} s  identical: {same}")
            figures[f"dask_{workers}_s"] = round(t, 3)
            figures[f"dask_{workers}_identical"] = same
        figures["speedup_2_vs_1"] = round(figures["dask_1_s"] / figures["dask_2_s"], 2)
        print(f"speed-up 2 workers vs 1: {figures['speedup_2_vs_1']}x (2 cores)")
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
