"""Benchmark: counts for every region geometry of a full scan, per shot, against fair alternatives.

Geometries: a splitting-ratio scan along x and one along y (every gap position across the cloud,
1 px steps, 3 px gap) plus a gap-width scan (0..10 px) at the cloud centre, fractional masks.
Frames: virtual-lab shots (default 256 x 256 camera), a pool of distinct shots cycled to --shots.

Measured in one run, per chunk of shots (every method on the same chunk, one after the other), in
CPU time (time.process_time; wall time beside it):
* floor: the atom-number images of both states computed only on the ROI boxes the scan reads
  (RegionCounter.roi_bbox: dark subtraction, Reinaudi OD, bad-pixel repair); the full-frame images
  are timed too, for reference;
* scan: counting every geometry from those images (RegionCounter: projections + cumulative sums),
  the chunk's shots at once, and once per shot (``scan_single``: as ``steerlab analyze`` counts);
* crop loop: (crop * mask_crop).sum() per geometry, state and region on the ROI crop (the
  straightforward code a user would write, without the 256 x 256 masks' zeros);
* matrix: one matrix product of the flattened ROI crops with all masks stacked (P x 2G per state).
Figures: (floor + scan) / floor (target <= 1.5), crop loop / scan (target >= 30), matrix / scan,
each also with scan_single. Multi-threaded BLAS spends more CPU than one thread on these small
products on a busy machine: run with OPENBLAS_NUM_THREADS=1 to see the matrix product at its best.
Usage: python benchmarks/region_scan.py [--shots 1000] [--pool 24] [--loop-shots 200]
Last line: one JSON object.
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
from analysis.imaging import atom_number_image, shot_atom_images, split_frames  # noqa: E402
from analysis.regions import RegionCounter, cloud_shape, default_roi_half_px  # noqa: E402
from drivers.simulated.atoms import (SimulatedAtoms, SimulationConfig,  # noqa: E402
                                     paper_measurement_pulses)
from tests.analysis.virtual_lab_data import lab_calibration  # noqa: E402

CHUNK = 50


class Clock:
    """Summed CPU and wall seconds of the spans timed with ``with clock:``."""

    def __init__(self) -> None:
        self.cpu = self.wall = 0.0

    def __enter__(self) -> "Clock":
        self._c, self._w = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu += time.process_time() - self._c
        self.wall += time.perf_counter() - self._w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=1000)
    ap.add_argument("--pool", type=int, default=24, help="distinct simulated shots, cycled")
    ap.add_argument("--loop-shots", type=int, default=200,
                    help="shots counted by the crop loop (its time is scaled to --shots)")
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
    box = {s: counter.roi_bbox(s) for s in (1, 2)}
    crops = {s: [tuple(w[box[s]] for w in counter.weights(i, s)) for i in range(g)] for s in (1, 2)}
    # all masks of a state as one matrix: columns A of every geometry, then B
    matrix = {s: np.stack([a.ravel() for a, _ in crops[s]] + [b.ravel() for _, b in crops[s]], axis=1)
              for s in (1, 2)}
    roi_px = {s: crops[s][0][0].size for s in (1, 2)}
    print(f"{g} geometries (x scan, y scan, gap widths 0..10 px); ROI boxes "
          f"{crops[1][0][0].shape} px (|1>) and {crops[2][0][0].shape} px (|2>) of {m1.shape}")

    floor, floor_full, scan, single, loop, mat = Clock(), Clock(), Clock(), Clock(), Clock(), Clock()
    loop_done = 0
    max_dev = max_dev_matrix = max_dev_single = 0.0
    images = {s: np.zeros((CHUNK,) + m1.shape) for s in (1, 2)}
    for start in range(0, args.shots, CHUNK):
        idx = [(start + k) % args.pool for k in range(min(CHUNK, args.shots - start))]
        frames = [split_frames(pool[i]) for i in idx]
        with floor_full:
            for f in frames:
                shot_atom_images(f, cal)
        with floor:
            for k, f in enumerate(frames):
                for s in (1, 2):
                    r, c = box[s]
                    images[s][k, r, c] = atom_number_image(f[f"atoms{s}"][r, c], f[f"ref{s}"][r, c],
                                                           f["dark"][r, c], cal, s).atoms
        n1, n2 = images[1][:len(idx)], images[2][:len(idx)]
        with scan:
            counts = counter.count(n1, n2)
        fast = np.stack([counts.n1a, counts.n2a, counts.n1b, counts.n2b])
        with single:
            one = [counter.count(n1[k], n2[k]) for k in range(len(idx))]
        max_dev_single = max(max_dev_single, float(np.abs(np.stack([c.n1a for c in one]) - counts.n1a).max()))
        with mat:
            prod = {s: images[s][:len(idx)][:, box[s][0], box[s][1]].reshape(len(idx), -1) @ matrix[s]
                    for s in (1, 2)}
        by_matrix = np.stack([prod[1][:, :g], prod[2][:, :g], prod[1][:, g:], prod[2][:, g:]])
        max_dev_matrix = max(max_dev_matrix, float(np.abs(fast - by_matrix).max()))
        if loop_done < args.loop_shots:
            n_loop = min(len(idx), args.loop_shots - loop_done)
            ref = np.empty((4, n_loop, g))
            with loop:
                for k in range(n_loop):
                    c1 = n1[k][box[1]]
                    c2 = n2[k][box[2]]
                    for j in range(g):
                        a1, b1 = crops[1][j]
                        a2, b2 = crops[2][j]
                        ref[0, k, j] = (c1 * a1).sum()
                        ref[1, k, j] = (c2 * a2).sum()
                        ref[2, k, j] = (c1 * b1).sum()
                        ref[3, k, j] = (c2 * b2).sum()
            loop_done += n_loop
            max_dev = max(max_dev, float(np.abs(fast[:, :n_loop] - ref).max()))

    scale = args.shots / loop_done
    n = args.shots
    fig = {"shots": n, "geometries": g, "frame_shape": list(pool.shape[2:]),
           "roi_box_px": {f"state{s}": list(crops[s][0][0].shape) for s in (1, 2)},
           "floor_roi_cpu_ms_per_shot": round(1e3 * floor.cpu / n, 4),
           "floor_full_frame_cpu_ms_per_shot": round(1e3 * floor_full.cpu / n, 4),
           "scan_cpu_ms_per_shot": round(1e3 * scan.cpu / n, 4),
           "scan_single_cpu_ms_per_shot": round(1e3 * single.cpu / n, 4),
           "matrix_cpu_ms_per_shot": round(1e3 * mat.cpu / n, 4),
           "crop_loop_cpu_ms_per_shot": round(1e3 * loop.cpu * scale / n, 4),
           "loop_shots_measured": loop_done,
           "floor_roi_wall_ms_per_shot": round(1e3 * floor.wall / n, 4),
           "scan_wall_ms_per_shot": round(1e3 * scan.wall / n, 4),
           "scan_single_wall_ms_per_shot": round(1e3 * single.wall / n, 4),
           "matrix_wall_ms_per_shot": round(1e3 * mat.wall / n, 4),
           "crop_loop_wall_ms_per_shot": round(1e3 * loop.wall * scale / n, 4)}
    fig["floor_ratio_roi"] = round((floor.cpu + scan.cpu) / floor.cpu, 3)
    fig["floor_ratio_full_frame"] = round((floor_full.cpu + scan.cpu) / floor_full.cpu, 3)
    fig["floor_ratio_roi_single"] = round((floor.cpu + single.cpu) / floor.cpu, 3)
    fig["crop_loop_over_scan"] = round(loop.cpu * scale / scan.cpu, 1)
    fig["crop_loop_over_scan_single"] = round(loop.cpu * scale / single.cpu, 1)
    fig["matrix_over_scan"] = round(mat.cpu / scan.cpu, 2)
    fig["matrix_over_scan_single"] = round(mat.cpu / single.cpu, 2)
    fig["max_abs_difference_atoms"] = {"crop_loop": max_dev, "matrix": max_dev_matrix, "single": max_dev_single}
    print(f"floor on the ROI boxes:    {fig['floor_roi_cpu_ms_per_shot']:.3f} ms CPU/shot "
          f"(full frames: {fig['floor_full_frame_cpu_ms_per_shot']:.3f}; ROI {roi_px[1]} + {roi_px[2]} px)")
    print(f"scan, {g} geometries:      {fig['scan_cpu_ms_per_shot']:.3f} ms CPU/shot; (floor + scan)/floor = "
          f"{fig['floor_ratio_roi']} on the ROI (target <= 1.5), {fig['floor_ratio_full_frame']} on full frames")
    print(f"scan shot by shot:         {fig['scan_single_cpu_ms_per_shot']:.3f} ms CPU/shot; (floor + scan)/floor "
          f"= {fig['floor_ratio_roi_single']} on the ROI; crop loop / scan {fig['crop_loop_over_scan_single']}x")
    print(f"crop loop (per mask):      {fig['crop_loop_cpu_ms_per_shot']:.3f} ms CPU/shot (measured on "
          f"{loop_done} shots): {fig['crop_loop_over_scan']}x the scan (target >= 30)")
    print(f"one matrix product:        {fig['matrix_cpu_ms_per_shot']:.3f} ms CPU/shot: "
          f"{fig['matrix_over_scan']}x the scan; max |difference| loop {max_dev:.2e}, matrix "
          f"{max_dev_matrix:.2e} atoms")
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
