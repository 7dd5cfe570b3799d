"""Benchmark: the cost of the crosstalk guard and of the detection-noise error propagation.

Per monitor update the live monitor evaluates the criteria of every geometry from its grouped
sums (StreamingCriteria.result). Issue 21 added two things to that update: the verdicts are
tested against per-geometry crosstalk bounds (two more p-values per criterion) and the
uncertainty of the subtracted detection noise is propagated into the corrected errors (six more
evaluations of the criteria on the whole-run moments). Configurations, interleaved A B A B:
  A: corrected result without guard or noise covariance (before issue 21);
  B: the same with crosstalk bounds and the noise covariance (now), verdicts and warnings read.
Plus the one-off cost of the bounds (imaging_crosstalk_bounds at the calibrated blur, paid once
when the masks are centred) for a monitor-sized set of geometries on a virtual-lab-sized cloud.
Wall and CPU (process_time) per update; last line: one JSON object.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.criteria import CERTIFYING, DetectionNoise, StreamingCriteria  # noqa: E402
from analysis.crosstalk import imaging_crosstalk_bounds, partition_terms  # noqa: E402
from analysis.geometries import Split, gap_width_scan, splitting_ratio_scan  # noqa: E402
from analysis.regions import CloudShape, RegionCounter  # noqa: E402
from tests.analysis.spin_model import sample, squeezed  # noqa: E402

SHOTS = 1200
REPEATS = 40
ROUNDS = 4


def monitor_geometries(hx: float) -> list:
    """Like the monitor's RegionPlan: chosen, whole cloud, ratio scan (3 px gap), gap scan."""
    return ([Split("x", 0.0, 3.0), Split("x", 0.0, 0.0)] + list(splitting_ratio_scan("x", hx, 3.0))
            + list(gap_width_scan("x", 0.0, [0, 1, 2, 3, 4, 5, 6, 8, 10])))


def timed(fn, repeats: int) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - w0) / repeats, (time.process_time() - c0) / repeats


def main() -> None:
    h, w = 90, 70
    y, x = np.mgrid[:h, :w].astype(float)
    clouds = {2: CloudShape(34.3, 25.6, 3.0, 3.6, 265.0), 1: CloudShape(34.1, 61.2, 3.0, 4.5, 265.0)}
    means = {}
    for s, c in clouds.items():
        g = np.exp(-0.5 * ((x - c.centre_x_px) / c.sigma_x_px) ** 2
                   - 0.5 * ((y - c.centre_y_px) / c.sigma_y_px) ** 2)
        means[s] = c.atoms * g / g.sum()
    geoms = monitor_geometries(10.5)
    counter = RegionCounter(geoms, clouds, (h, w), roi_half_px=(10.5, 12.6))
    g_n = counter.n_geometries
    t0, c0 = time.perf_counter(), time.process_time()
    psf = partition_terms(counter, means[1], means[2], (1.1, 1.2))
    bounds = imaging_crosstalk_bounds(counter, means[1], means[2], 1.4, psf_terms=psf)
    once_wall, once_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"geometries {g_n}: crosstalk bounds (once, at mask centring): {once_wall * 1e3:.1f} ms "
          f"wall, {once_cpu * 1e3:.1f} ms CPU")

    rng = np.random.default_rng(0)
    dirs, n1a, n2a, n1b, n2b = sample(rng, squeezed(530), SHOTS // 3, 0.5, datasets=g_n)
    noise_a, noise_b = np.full(g_n, 6.0), np.full(g_n, 5.5)
    plain = DetectionNoise(noise_a, noise_b, 0.0)
    with_cov = DetectionNoise.from_samples(300, noise_a, noise_b, np.zeros(g_n))

    def make(guard: bool) -> StreamingCriteria:
        sc = StreamingCriteria(g_n, detection_noise=with_cov if guard else plain,
                               crosstalk_bounds=dict(bounds.raw) if guard else None,
                               corrected_crosstalk_bounds=dict(bounds.corrected) if guard else None)
        for i in range(dirs.size):
            sc.add(dirs[i], n1a[i], n2a[i], n1b[i], n2b[i])
        return sc

    live = {"A": make(False), "B": make(True)}

    def update(key: str) -> None:
        res = live[key].result()
        for name in CERTIFYING:
            res.verdicts(name)
            assert res.corrected is not None
            res.corrected.verdicts(name)
        res.corrected.inconsistent()

    times: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    for r in range(ROUNDS):
        for key in ("A", "B"):
            wall, cpu = timed(lambda: update(key), REPEATS)
            times[key].append((wall, cpu))
            print(f"round {r} {key}: {wall * 1e3:.2f} ms wall, {cpu * 1e3:.2f} ms CPU per update")
    med = {k: (float(np.median([t[0] for t in v])), float(np.median([t[1] for t in v])))
           for k, v in times.items()}
    print(f"median per update, {g_n} geometries, {SHOTS} shots: before {med['A'][0] * 1e3:.2f} ms "
          f"wall / {med['A'][1] * 1e3:.2f} ms CPU, with guard + propagation {med['B'][0] * 1e3:.2f} ms"
          f" wall / {med['B'][1] * 1e3:.2f} ms CPU (x{med['B'][1] / med['A'][1]:.2f} CPU)")
    print(json.dumps({"geometries": g_n, "shots": SHOTS,
                      "bounds_once_ms_wall": round(once_wall * 1e3, 2),
                      "bounds_once_ms_cpu": round(once_cpu * 1e3, 2),
                      "update_before_ms_wall": round(med["A"][0] * 1e3, 3),
                      "update_before_ms_cpu": round(med["A"][1] * 1e3, 3),
                      "update_now_ms_wall": round(med["B"][0] * 1e3, 3),
                      "update_now_ms_cpu": round(med["B"][1] * 1e3, 3),
                      "cpu_ratio": round(med["B"][1] / med["A"][1], 3)}))


if __name__ == "__main__":
    main()
