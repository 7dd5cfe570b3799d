"""Benchmark: CPU per shot of `steerlab analyze`'s numbers, four passes over the frames vs one.

``four passes`` (before): the mean images, then the splitting-ratio scan, the patterns and the
gap-width scan each in their own pass, every pass computing both whole atom-number images of every
shot (the full-frame counting pass kept in tests/offline/test_one_pass.py), every chunk opening and
checking the run file again. ``one pass`` (current): the mean images, then all three sets in one
pass (``RunAnalysis.analyse_sets``) that computes the atom numbers only on the boxes the masks
read, the file opened once per thread. Both in this process (no workers), interleaved
A B A B on one virtual-lab run (224 x 128 frames, tests/offline/runs.py), each from a freshly
opened run (mean images recomputed). CPU: time.process_time; wall beside it. The export rows of
both are compared (largest relative difference reported; the test requires <= 1e-12).
Usage: python benchmarks/analyze_passes.py [--shots 300] [--rounds 3]. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.geometries import gap_width_scan  # noqa: E402
from app.commands.analyze import DEFAULT_WIDTHS, patterns  # noqa: E402
from app.offline import analysis as offline  # noqa: E402
from app.offline import open_analysis  # noqa: E402
from app.runfile import open_run  # noqa: E402
from tests.offline.runs import write_virtual_run  # noqa: E402
from tests.offline.test_one_pass import full_frame_count_chunk  # noqa: E402

ONE_PASS_COUNT_CHUNK = offline.count_chunk
RUN_FILE_KEPT_OPEN = offline._run_file


def analyze_numbers(path: Path, one_pass: bool) -> tuple[list[list[dict[str, Any]]], int]:
    """The three tables of `steerlab analyze` (ratio scan, patterns, gap scan) and the ok shots."""
    offline.count_chunk = ONE_PASS_COUNT_CHUNK if one_pass else full_frame_count_chunk  # type: ignore[assignment]
    # before, every chunk opened (and checked) the run file again
    offline._run_file = RUN_FILE_KEPT_OPEN if one_pass else open_run  # type: ignore[assignment]
    try:
        r = open_analysis(path, chunk=64)
        r.mean_images()
        pos = r.position_for_ratio(0.77, "x", 1.0)
        sets = [r.ratio_scan_geometries("x", 1.0), patterns("x", 1.0), gap_width_scan("x", pos, DEFAULT_WIDTHS)]
        results = r.analyse_sets(sets) if one_pass else [r.analyse(g) for g in sets]
        return [a.table() for a in results], int(r.ok.sum())
    finally:
        offline.count_chunk = ONE_PASS_COUNT_CHUNK  # type: ignore[assignment]
        offline._run_file = RUN_FILE_KEPT_OPEN  # type: ignore[assignment]


def max_relative_difference(a: list[list[dict[str, Any]]], b: list[list[dict[str, Any]]]) -> float:
    worst = 0.0
    for ta, tb in zip(a, b):
        for ra, rb in zip(ta, tb):
            for key, x in ra.items():
                y = rb[key]
                if isinstance(x, float) and isinstance(y, float):
                    worst = max(worst, abs(x - y) / max(abs(y), 1e-300) if x != y else 0.0)
                elif x != y:
                    return float("inf")
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_virtual_run(Path(tmp) / "run.h5", "squeezed", args.shots, 11)
        analyze_numbers(path, True)                   # warm-up: imports, file cache
        cpu: dict[str, list[float]] = {"four_passes": [], "one_pass": []}
        wall: dict[str, list[float]] = {"four_passes": [], "one_pass": []}
        tables: dict[str, Any] = {}
        for r in range(args.rounds):
            for name in ("four_passes", "one_pass"):     # A B A B ...
                t, c = time.perf_counter(), time.process_time()
                tables[name], n_ok = analyze_numbers(path, name == "one_pass")
                cpu[name].append((time.process_time() - c) / n_ok)
                wall[name].append((time.perf_counter() - t) / n_ok)
                print(f"round {r + 1} {name:11s}: {1e3 * cpu[name][-1]:6.2f} ms CPU/shot, "
                      f"{1e3 * wall[name][-1]:6.2f} ms wall/shot", flush=True)
    diff = max_relative_difference(tables["one_pass"], tables["four_passes"])
    figures: dict[str, Any] = {"shots": args.shots, "rounds": args.rounds, "frame_shape": [224, 128]}
    for name in cpu:
        figures[f"{name}_cpu_ms_per_shot"] = round(1e3 * statistics.fmean(cpu[name]), 3)
        figures[f"{name}_wall_ms_per_shot"] = round(1e3 * statistics.fmean(wall[name]), 3)
    figures["cpu_four_over_one"] = round(figures["four_passes_cpu_ms_per_shot"] / figures["one_pass_cpu_ms_per_shot"], 2)
    figures["wall_four_over_one"] = round(figures["four_passes_wall_ms_per_shot"]
                                          / figures["one_pass_wall_ms_per_shot"], 2)
    figures["max_relative_difference"] = diff
    print(f"four passes {figures['four_passes_cpu_ms_per_shot']} ms CPU/shot, one pass "
          f"{figures['one_pass_cpu_ms_per_shot']} ms CPU/shot: {figures['cpu_four_over_one']}x fewer "
          f"(target >= 3); largest relative difference of the exported numbers {diff:.2g}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
