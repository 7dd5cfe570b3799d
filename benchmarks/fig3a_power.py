"""How often does a run of SHOTS shots show the paper's Fig. 3a shape? (issue 21; a physics benchmark)

The Fig. 3a checks of benchmarks/paper_figures.py (fig3a_checks: A->B smallest within 0.1 of ratio 0.77, B->A within
0.1 of 0.23, no ratio with both below 1), and whether any ratio *certifies* steering (E + 2 sd < 1, sd the
scatter of E over the repeats), evaluated on REPEATS independent runs of the virtual lab's region counts,
for the default lab and for variants of cloud size, common-mode phase noise and squeezing.

Each run: SHOTS/3 shots per readout direction from drivers.simulated.ensemble.sample_outcomes (the
virtual lab's spin physics with its technical noise), each state's atoms placed independently over the
pixel columns of its cloud (the exact column probabilities of drivers.simulated.cloud, the same
binomial partition sample_region_counts draws), masks of whole columns with the paper's 3 px gap at
every position where both regions hold >= 10 % of the atoms, and the criteria of the sample moments
(analysis.exact_model.criteria, the measured data's engine). No imaging or detection noise: the counts
are the true ones, so the powers here are upper bounds for the image-level analysis, whose corrected
values have the same expectation and larger errors. Beside each check, the closed form
(analysis.exact_model) of the same geometry.

Usage: python benchmarks/fig3a_power.py [SHOTS] [REPEATS] [TEXT] (only the variants whose name contains
TEXT); last line: one JSON object.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.paper_figures import fig3a_checks  # noqa: E402
from analysis.exact_model import Noise, RegionMoments, StateMoments, criteria, split_moments  # noqa: E402
from drivers.simulated.atoms import Exposures, SimulationConfig, paper_measurement_pulses, prepared_state  # noqa: E402
from drivers.simulated.cloud import cloud_geometry, pixel_probabilities  # noqa: E402
from drivers.simulated.ensemble import sample_outcomes  # noqa: E402
from drivers.simulated.spin import spin_moments  # noqa: E402

GAP_PX = 3


def variant(scale: float = 1.0, dephasing_rad: float | None = None, squeezing_db: float | None = None
            ) -> SimulationConfig:
    """The default virtual lab with its cloud's half-widths times scale and the given spin settings."""
    base = SimulationConfig()
    cloud = dataclasses.replace(base.cloud, half_width_um=tuple(h * scale for h in base.cloud.half_width_um))
    spin = base.spin
    if dephasing_rad is not None:
        spin = dataclasses.replace(spin, dephasing_rms_rad=dephasing_rad)
    if squeezing_db is not None:
        spin = dataclasses.replace(spin, wineland_squeezing_db=squeezing_db)
    return dataclasses.replace(base, cloud=cloud, spin=spin)


VARIANTS: dict[str, SimulationConfig] = {
    "default lab (TF half-width 8 px, 0.01 rad, -3.2 dB)": variant(),
    "default, no phase noise": variant(dephasing_rad=0.0),
    "cloud x2, 0.03 rad": variant(2.0, 0.03),
    "cloud x2.83 (8 px as rms), 0.05 rad": variant(2.83, 0.05),
    "default cloud, 0.01 rad, -6 dB": variant(1.0, 0.01, -6.0),
}


def column_probabilities(cfg: SimulationConfig) -> dict[int, np.ndarray]:
    """Per state (1, 2): the probability of an atom to land in each pixel column at its exposure."""
    ex = Exposures()
    out = {}
    for s, t in ((1, ex.atoms1_time_s), (2, ex.atoms2_time_s)):
        p = pixel_probabilities(cloud_geometry(cfg.cloud, t), cfg.imaging.frame_shape, oversample=4).sum(axis=0)
        out[s] = p / p.sum()   # the frame holds > 99.9 % of the cloud; the rest is assigned to it
    return out


def gap_positions(prob: dict[int, np.ndarray]) -> list[int]:
    """First gap columns c (A: columns < c, B: columns >= c + 3) with both regions >= 10 % of the atoms."""
    keep = []
    for c in range(prob[1].size - GAP_PX):
        na = (prob[1][:c].sum() + prob[2][:c].sum()) / 2
        nb = (prob[1][c + GAP_PX:].sum() + prob[2][c + GAP_PX:].sum()) / 2
        if min(na, nb) >= 0.1 * (na + nb):
            keep.append(c)
    return keep


def closed_form(cfg: SimulationConfig, prob: dict[int, np.ndarray], cols: list[int]) -> dict[str, np.ndarray]:
    m = spin_moments(prepared_state(cfg.spin, cfg.spin.atom_number_mean))
    state = StateMoments.of(m)
    noise = Noise(phase_var=cfg.spin.dephasing_rms_rad ** 2)
    ratio, ab, ba = [], [], []
    for c in cols:
        pa = (float(prob[1][:c].sum()), float(prob[2][:c].sum()))
        pb = (float(prob[1][c + GAP_PX:].sum()), float(prob[2][c + GAP_PX:].sum()))
        r = criteria(split_moments(state, pa, pb, noise))
        ratio.append(sum(pa) / (sum(pa) + sum(pb)))
        ab.append(r["E_EPR_AB"])
        ba.append(r["E_EPR_BA"])
    return {"ratio": np.array(ratio), "E_EPR_AB": np.array(ab), "E_EPR_BA": np.array(ba)}


def one_run(cfg: SimulationConfig, prob: dict[int, np.ndarray], cols: list[int], per_direction: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """E_EPR A->B and B->A at every gap position from one run's sample moments."""
    c = np.array(cols)
    s: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for axis in "xyz":
        out = sample_outcomes(cfg, rng=rng, n_shots=per_direction, pulses=paper_measurement_pulses(axis))
        # (shots, columns): each state's atoms over the columns, S = (N1 - N2)/2 per column
        spin_cols = 0.5 * rng.multinomial(out.n1, prob[1]) - 0.5 * rng.multinomial(out.n2, prob[2])
        cum = np.concatenate([np.zeros((per_direction, 1)), np.cumsum(spin_cols, axis=1)], axis=1)
        s[axis] = (cum[:, c], cum[:, -1:] - cum[:, c + GAP_PX])    # columns < c, columns >= c + 3
    ab, ba = np.empty(len(cols)), np.empty(len(cols))
    for j in range(len(cols)):
        mom = {}
        for axis in "xyz":
            a, b = s[axis][0][:, j], s[axis][1][:, j]
            cv = np.cov(a, b)
            mom[axis] = RegionMoments(float(a.mean()), float(b.mean()), float(cv[0, 0]), float(cv[1, 1]),
                                      float(cv[0, 1]))
        r = criteria(mom)
        ab[j], ba[j] = r["E_EPR_AB"], r["E_EPR_BA"]
    return ab, ba


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("shots", nargs="?", type=int, default=3000, help="shots per run (all directions)")
    ap.add_argument("repeats", nargs="?", type=int, default=100, help="independent runs per variant")
    ap.add_argument("only", nargs="?", default="", help="only the variants whose name contains this text")
    args = ap.parse_args()
    shots, repeats, only = args.shots, args.repeats, args.only
    if shots < 6:
        ap.error(f"shots: {shots} is too few (at least 2 per readout direction, 6 in all)")
    if repeats < 2:
        ap.error(f"repeats: {repeats} is too few (the scatter over runs needs at least 2)")
    per_direction = shots // 3
    print(f"Fig. 3a from region counts: {repeats} runs of {shots} shots ({per_direction} per direction), "
          f"3 px gap, whole-column masks")
    figures: dict[str, Any] = {"shots": shots, "repeats": repeats, "variants": {}}
    for name, cfg in VARIANTS.items():
        if only not in name:
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        prob = column_probabilities(cfg)
        cols = gap_positions(prob)
        model = closed_form(cfg, prob, cols)
        ratio = model["ratio"]
        rng = np.random.default_rng(2026)
        runs = [one_run(cfg, prob, cols, per_direction, rng) for _ in range(repeats)]
        ab = np.array([r[0] for r in runs])
        ba = np.array([r[1] for r in runs])
        checks = [fig3a_checks(list(ratio), list(a), list(b)) for a, b in zip(ab, ba)]
        sd_ab, sd_ba = ab.std(axis=0, ddof=1), ba.std(axis=0, ddof=1)
        certified = float(np.mean([np.any(a + 2 * sd_ab < 1) or np.any(b + 2 * sd_ba < 1)
                                   for a, b in zip(ab, ba)]))
        power = {k: float(np.mean([c[k] for c in checks])) for k in checks[0]}
        all3 = float(np.mean([all(c.values()) for c in checks]))
        i, j = int(model["E_EPR_AB"].argmin()), int(model["E_EPR_BA"].argmin())
        fig = {"ratios": [round(float(r), 3) for r in ratio],
               "model_ab_min": round(float(model["E_EPR_AB"][i]), 4), "model_ab_min_at": round(float(ratio[i]), 3),
               "model_ba_min": round(float(model["E_EPR_BA"][j]), 4), "model_ba_min_at": round(float(ratio[j]), 3),
               "model_shape": fig3a_checks(list(ratio), list(model["E_EPR_AB"]), list(model["E_EPR_BA"])),
               "sd_at_model_min": round(float(sd_ab[i]), 4),
               "mean_bias_at_model_min": round(float(ab[:, i].mean() - model["E_EPR_AB"][i]), 4),
               "power": power, "power_all_three": all3, "power_certified_somewhere": certified,
               "wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(time.process_time() - c0, 1)}
        figures["variants"][name] = fig
        print(f"{name}: closed form A->B min {fig['model_ab_min']:.3f} at {fig['model_ab_min_at']}, "
              f"B->A min {fig['model_ba_min']:.3f} at {fig['model_ba_min_at']}, shape "
              f"{'yes' if all(fig['model_shape'].values()) else 'no'}; sd of E there {fig['sd_at_model_min']:.3f}")
        print("    runs showing: " + ", ".join(f"{k} {v:.0%}" for k, v in power.items())
              + f"; all three {all3:.0%}; steering certified somewhere {certified:.0%} "
              f"({fig['wall_s']} s wall, {fig['cpu_s']} s CPU)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
