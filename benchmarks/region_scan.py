"""Benchmark: counts for every region geometry of a full scan, for 1000 shots, in one pass.

Geometries: a splitting-ratio scan along x and one along y (every gap position across the cloud,
1 px steps, 3 px gap) plus a gap-width scan (0..10 px) at the cloud centre, fractional masks.
Frames: virtual-lab shots (default 256 x 256 camera), a pool of distinct shots cycled to 1000.

Measured in one run, per chunk of shots and summed:
* floor: computing the atom-number images once (dark subtraction, Reinaudi OD, both states);
* scan: counting every geometry from those images (RegionCounter: projections + cumulative sums);
* loop: the straightforward (img * mask).sum() per mask, per state and region, per shot.
Figures: (floor + scan) / floor (target <= 1.5) and loop / scan (target >= 30).
Usage: python benchmarks/region_scan.py [--shots 1000] [--pool 24] [--loop-shots 1000]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.geometries import gap_width_scan, splitting_ratio_scan  # noqa: E402
from analysis.imaging import shot_atom_images  # noqa: E402
from analysis.regions import RegionCounter, cloud_shape, default_roi_half_px  # noqa: E402
from drivers.simulated.atoms import (SimulatedAtoms, SimulationConfig,  # noqa: E402
                                     paper_measurement_pulses)
from tests.analysis.virtual_lab_data import lab_calibration  # noqa: E402

CHUNK = 50


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=1000)
    ap.add_argument("--pool", type=int, default=24, help="distinct simulated shots, cycled")
    ap.add_argument("--loop-shots", type=int, default=1000,
                    help="shots counted by the mask loop (its time is scaled to --shots)")
    args = ap.parse_args()

    config = SimulationConfig()
    cal = lab_calibration(config)
    sim = SimulatedAtoms(config, seed=1)
    t0 = time.perf_counter()
    pool = np.stack([sim.shot(i, pulses=paper_measurement_pulses("xyz"[i % 3])).frames
                     for i in range(args.pool)])
    print(f"simulated {args.pool} distinct shots of {pool.shape[2:]} px in "
          f"{time.perf_counter() - t0:.1f} s (cycled to {args.shots} shots)")

    first = [shot_atom_images(f, cal) for f in pool]
    m1 = np.mean([im.n1.atoms for im in first], axis=0)
    m2 = np.mean([im.n2.atoms for im in first], axis=0)
    clouds = {1: cloud_shape(m1), 2: cloud_shape(m2)}
    hx, hy = default_roi_half_px(clouds[2])
    geoms = (splitting_ratio_scan("x", hx, 3.0) + splitting_ratio_scan("y", hy, 3.0)
             + gap_width_scan("x", 0.0, np.arange(11.0)))
    counter = RegionCounter(geoms, clouds, m1.shape, roi_half_px=(hx, hy))
    g = counter.n_geometries
    masks = {s: [counter.weights(i, s) for i in range(g)] for s in (1, 2)}
    print(f"{g} geometries (x scan, y scan, gap widths 0..10 px), ROI {2 * hx:.0f} x "
          f"{2 * hy:.0f} px")

    t_floor = t_scan = t_loop = 0.0
    loop_done = 0
    max_dev = 0.0
    for start in range(0, args.shots, CHUNK):
        idx = [(start + k) % args.pool for k in range(min(CHUNK, args.shots - start))]
        t = time.perf_counter()
        imgs = [shot_atom_images(pool[i], cal) for i in idx]
        n1 = np.stack([im.n1.atoms for im in imgs])
        n2 = np.stack([im.n2.atoms for im in imgs])
        t_floor += time.perf_counter() - t

        t = time.perf_counter()
        counts = counter.count(n1, n2)
        t_scan += time.perf_counter() - t

        if loop_done < args.loop_shots:
            n_loop = min(len(idx), args.loop_shots - loop_done)
            ref = np.empty((4, n_loop, g))
            t = time.perf_counter()
            for s in range(n_loop):
                for j in range(g):
                    a1, b1 = masks[1][j]
                    a2, b2 = masks[2][j]
                    ref[0, s, j] = (n1[s] * a1).sum()
                    ref[1, s, j] = (n2[s] * a2).sum()
                    ref[2, s, j] = (n1[s] * b1).sum()
                    ref[3, s, j] = (n2[s] * b2).sum()
            t_loop += time.perf_counter() - t
            loop_done += n_loop
            fast = np.stack([counts.n1a, counts.n2a, counts.n1b, counts.n2b])[:, :n_loop]
            max_dev = max(max_dev, float(np.abs(fast - ref).max()))

    t_loop_scaled = t_loop * args.shots / loop_done
    floor_ratio = (t_floor + t_scan) / t_floor
    speedup = t_loop_scaled / t_scan
    print(f"floor (atom-number images once): {t_floor:7.2f} s for {args.shots} shots "
          f"({t_floor / args.shots * 1e3:.2f} ms/shot)")
    print(f"scan counts, {g} geometries:      {t_scan:7.3f} s ({t_scan / args.shots * 1e3:.3f} "
          f"ms/shot); (floor + scan)/floor = {floor_ratio:.3f} (target <= 1.5)")
    print(f"mask loop ((img*mask).sum()):   {t_loop_scaled:7.2f} s"
          + (f" (measured on {loop_done} shots)" if loop_done < args.shots else "")
          + f"; loop/scan = {speedup:.0f}x (target >= 30); max |difference| "
          f"{max_dev:.2e} atoms")
    print(json.dumps({"shots": args.shots, "geometries": g,
                      "frame_shape": list(pool.shape[2:]),
                      "floor_s": round(t_floor, 3), "scan_s": round(t_scan, 4),
                      "loop_s": round(t_loop_scaled, 3), "loop_shots_measured": loop_done,
                      "floor_ratio": round(floor_ratio, 4), "loop_over_scan": round(speedup, 1),
                      "max_abs_difference_atoms": max_dev}))


if __name__ == "__main__":
    main()
