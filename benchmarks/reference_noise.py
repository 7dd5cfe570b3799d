"""Benchmark: detection noise with the plain own reference vs optimal references (Ockeloen 2010).

Virtual-lab atom-free shots (default 256 x 256 camera: photon shot noise, read noise, probe
fringes whose phases drift from shot to shot and jitter between exposures) go through the image
pipeline; the masks are centred on atom shots of the same lab. Reported per method: the rms atom
number per state in the region of interest (3 rms widths) and Var(S^A), Var(S^B) of a split
through the centre (3 px gap), i.e. the detection noise the criteria see, and the cost per shot.
Usage: python benchmarks/reference_noise.py [--frames 300] [--basis 60 150]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.detection_noise import region_detection_noise  # noqa: E402
from analysis.geometries import Split  # noqa: E402
from analysis.pipeline import AtomImager, fit_mask_around_clouds, image_stack  # noqa: E402
from analysis.regions import RegionCounter, cloud_shape  # noqa: E402
from drivers.simulated.atoms import (SimulatedAtoms, SimulationConfig,  # noqa: E402
                                     paper_measurement_pulses)
from tests.analysis.virtual_lab_data import lab_calibration  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300, help="atom-free shots")
    ap.add_argument("--basis", type=int, nargs="+", default=[60, 150],
                    help="basis sizes K (reference frames) to compare")
    args = ap.parse_args()
    config = SimulationConfig()
    cal = lab_calibration(config)
    sim = SimulatedAtoms(config, seed=2)
    atoms = image_stack([sim.shot(i, pulses=paper_measurement_pulses("z")).frames
                         for i in range(12)], AtomImager(cal))
    m1, m2 = atoms.mean_images()
    clouds = {1: cloud_shape(m1), 2: cloud_shape(m2)}
    counter = RegionCounter([Split("x", 0.0, 3.0), Split("y", 0.0, 3.0)], clouds, m1.shape,
                            roi_sigmas=3.0)
    fit = fit_mask_around_clouds(m1.shape, clouds.values(), 4.0)
    t = time.perf_counter()
    frames = [sim.shot(1000 + i, atoms_loaded=False).frames for i in range(args.frames)]
    print(f"{args.frames} atom-free virtual-lab shots ({m1.shape[0]} x {m1.shape[1]} px) "
          f"simulated in {time.perf_counter() - t:.1f} s")
    skip = max(args.basis) // 2        # measure every method on the same shots, bases full
    figures: dict[str, object] = {"frames_measured": args.frames - skip}
    base = None
    for k in [0] + list(args.basis):
        imager = (AtomImager(cal) if k == 0 else
                  AtomImager(cal, basis_frames=k, fit_mask=fit))
        t = time.perf_counter()
        st = image_stack(frames, imager)
        ms = (time.perf_counter() - t) / len(frames) * 1e3
        dn = region_detection_noise(counter, st.n1[skip:], st.n2[skip:])
        name = "plain" if k == 0 else f"optimal_K{k}"
        var_s = float(np.mean(np.concatenate([dn.var_a, dn.var_b])))
        base = var_s if base is None else base
        print(f"{name:>12}: rms atoms in ROI |1> {dn.rms_atoms_1[0]:5.2f} |2> "
              f"{dn.rms_atoms_2[0]:5.2f}; Var(S) of split regions {dn.var_a.round(1)} "
              f"{dn.var_b.round(1)} hbar^2 (mean {var_s:.1f}, {var_s / base:.2f} of plain); "
              f"{ms:.1f} ms/shot")
        figures[name] = {"rms_atoms_1": round(float(dn.rms_atoms_1[0]), 3),
                         "rms_atoms_2": round(float(dn.rms_atoms_2[0]), 3),
                         "var_s_mean": round(var_s, 3), "var_s_ratio": round(var_s / base, 3),
                         "ms_per_shot": round(ms, 2)}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
