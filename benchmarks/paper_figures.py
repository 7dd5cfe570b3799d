"""The paper's Fig. 2a/3a shapes from `steerlab analyze` on 3000-shot virtual runs (issue 21).

Writes a squeezed and a coherent run of SHOTS interleaved x, y, z shots of the virtual lab's atoms
(default spin, cloud and imaging settings, as tests/offline/runs.py, hence the default common-mode
phase noise), runs `steerlab analyze --gap 3` on both (the PNGs land in OUT), and reads the
ratio-scan CSVs: per run, over the ratios where both regions hold >= 10 % of the atoms, the
bias-corrected corrected criteria (E_corrected - E_corrected_bias), their verdicts and the
inconsistency warnings. Checks the Fig. 2a shape (squeezed below 1 by 2 errors at >= 80 % of the
ratios, coherent's mean within 0.1 of 1 and never certified) and the Fig. 3a shape on the squeezed
run (A->B smallest within 0.1 of ratio 0.77, B->A within 0.1 of 0.23, no ratio with both below 1,
A->B lower on average at ratios > 0.6 than < 0.4 and B->A the other way round), and compares every
squeezed E_EPR with the closed form of analysis.exact_model at that row's region fractions
(N_A/N, N_B/N, the gap losing the rest), reporting the z-scores. Too slow for the test suite (minutes).
Usage: python benchmarks/paper_figures.py [OUT] [SHOTS]; last line: one JSON object.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.exact_model import Noise, StateMoments, criteria, split_moments  # noqa: E402
from drivers.simulated.atoms import prepared_state  # noqa: E402
from drivers.simulated.spin import spin_moments  # noqa: E402
from tests.offline.runs import sim_config, write_virtual_run  # noqa: E402


def read_scan(path: Path) -> dict[str, Any]:
    rows = [r for r in csv.DictReader(path.open())
            if r["splitting_ratio"] and 0.1 < float(r["splitting_ratio"]) < 0.9]
    out: dict[str, Any] = {"ratios": [round(float(r["splitting_ratio"]), 3) for r in rows]}
    for key in ("E_Ent", "E_EPR_AB", "E_EPR_BA"):
        v = [float(r[f"{key}_corrected"]) - float(r[f"{key}_corrected_bias"]) for r in rows]
        e = [float(r[f"{key}_corrected_error"]) for r in rows]
        verdicts = [r[f"{key}_corrected_verdict"] for r in rows]
        i = min(range(len(v)), key=v.__getitem__)
        out[key] = {"values": [round(x, 4) for x in v], "errors": [round(x, 4) for x in e],
                    "below_1_by_2_errors": sum(1 for x, s in zip(v, e) if x + 2 * s < 1),
                    "mean": round(sum(v) / len(v), 4), "min": round(v[i], 4),
                    "ratio_of_min": out["ratios"][i],
                    "certified": verdicts.count("certified"),
                    "unresolved": verdicts.count("unresolved")}
    out["warnings"] = sum(1 for r in rows if r["warnings"])
    out["fractions"] = [(float(r["N_A"]), float(r["N_B"]), float(r["N_corrected"]))
                        for r in rows]
    return out


def fig3a_checks(ratios: Sequence[float], ab: Sequence[float], ba: Sequence[float]) -> dict[str, bool]:
    """The point-value Fig. 3a checks of one ratio scan (also benchmarks/fig3a_power.py): A->B smallest
    within 0.1 of ratio 0.77, B->A within 0.1 of 0.23, no ratio with both below 1."""
    i = min(range(len(ab)), key=ab.__getitem__)
    j = min(range(len(ba)), key=ba.__getitem__)
    return {"ab_min_near_0.77": bool(abs(ratios[i] - 0.77) <= 0.1),
            "ba_min_near_0.23": bool(abs(ratios[j] - 0.23) <= 0.1),
            "never_both_below_1": not any(a < 1 and b < 1 for a, b in zip(ab, ba))}


def fig3a_shape(sq: dict[str, Any]) -> dict[str, bool]:
    """The Fig. 3a checks on one run's read_scan() result (bias-corrected corrected values)."""
    ratios, ab, ba = sq["ratios"], sq["E_EPR_AB"]["values"], sq["E_EPR_BA"]["values"]

    def mean(v: list[float], keep: Any) -> float:
        sel = [x for x, r in zip(v, ratios) if keep(r)]
        return sum(sel) / len(sel)
    return {**fig3a_checks(ratios, ab, ba),
            "ab_better_at_large_ratio": mean(ab, lambda r: r > 0.6) < mean(ab, lambda r: r < 0.4),
            "ba_better_at_small_ratio": mean(ba, lambda r: r < 0.4) < mean(ba, lambda r: r > 0.6)}


def model_z_scores(sq: dict[str, Any], state: str) -> dict[str, list[float]]:
    """(measured - closed form) / error of E_EPR_AB, E_EPR_BA per row; the closed form at the row's
    fractions p_A = N_A/N, p_B = N_B/N for both states, N the prepared atom number (the gap and the
    outside lose the rest)."""
    cfg = sim_config(state)
    m = spin_moments(prepared_state(cfg.spin, cfg.spin.atom_number_mean))
    moments = StateMoments.of(m)
    noise = Noise(phase_var=cfg.spin.dephasing_rms_rad ** 2)
    z: dict[str, list[float]] = {"E_EPR_AB": [], "E_EPR_BA": [], "model_E_EPR_AB": [], "model_E_EPR_BA": []}
    n = float(cfg.spin.atom_number_mean)   # the atoms prepared; the regions' N_A + N_B miss the gap's
    for i, (na, nb, _) in enumerate(sq["fractions"]):
        model = criteria(split_moments(moments, (na / n, na / n), (nb / n, nb / n), noise))
        for key in ("E_EPR_AB", "E_EPR_BA"):
            z[key].append(round((sq[key]["values"][i] - model[key]) / sq[key]["errors"][i], 2))
            z["model_" + key].append(round(model[key], 4))
    return z


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", type=Path, default=Path("paper-figures"),
                    help="directory for the runs, PNGs and CSVs (runs already there are reused)")
    ap.add_argument("shots", nargs="?", type=int, default=3000, help="shots per run (interleaved x, y, z)")
    args = ap.parse_args()
    out, shots = args.out, args.shots
    if shots < 30:
        ap.error(f"shots: {shots} is too few (the ratio scan needs at least 10 per readout direction)")
    if out.exists() and not out.is_dir():
        ap.error(f"out: {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for state, seed in (("squeezed", 1), ("coherent", 2)):
        path = out / f"{state}-{shots}.h5"
        if not path.exists():
            t0, c0 = time.perf_counter(), time.process_time()
            write_virtual_run(path, state, shots, seed)
            print(f"{state}: {shots} shots written in {time.perf_counter() - t0:.1f} s wall, "
                  f"{time.process_time() - c0:.1f} s CPU")
        runs.append(path)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "app.cli", "analyze", *map(str, runs), "--out", str(out),
                    "--gap", "3", "--no-progress"], check=True)
    print(f"steerlab analyze: {time.perf_counter() - t0:.1f} s wall")
    res = {p.stem.split("-")[0]: read_scan(out / f"{p.stem}-ratio-scan.csv") for p in runs}
    sq, co = res["squeezed"], res["coherent"]
    for state, r in res.items():
        for key in ("E_Ent", "E_EPR_AB", "E_EPR_BA"):
            k = r[key]
            print(f"{state} {key}: mean {k['mean']:.3f}, min {k['min']:.3f} at ratio {k['ratio_of_min']}, "
                  f"{k['below_1_by_2_errors']}/{len(r['ratios'])} below 1 by 2 errors, "
                  f"{k['certified']} certified, {k['unresolved']} unresolved")
        print(f"{state}: {r['warnings']} ratios with 'calibration or analysis inconsistent'")
    n = len(sq["ratios"])
    fig2a = {"squeezed_below_1": sq["E_Ent"]["below_1_by_2_errors"] >= 0.8 * n,
             "coherent_mean_near_1": abs(co["E_Ent"]["mean"] - 1) < 0.1,
             "coherent_never_certified": co["E_Ent"]["certified"] == 0}
    print("Fig. 2a shape: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in fig2a.items()))
    fig3a = fig3a_shape(sq)
    print("Fig. 3a shape (squeezed): " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in fig3a.items()))
    z = model_z_scores(sq, "squeezed")
    for key in ("E_EPR_AB", "E_EPR_BA"):
        within = sum(1 for v in z[key] if abs(v) <= 2)
        print(f"squeezed {key} vs closed form (default noise, row fractions): {within}/{len(z[key])} within 2 "
              f"errors, largest |z| {max(abs(v) for v in z[key]):.2f}; closed-form minimum "
              f"{min(z['model_' + key]):.3f} at ratio {sq['ratios'][z['model_' + key].index(min(z['model_' + key]))]}")
    for r in res.values():
        r.pop("fractions")
    print(json.dumps({"shots": shots, "fig2a": fig2a, "fig2a_ok": all(fig2a.values()), "fig3a": fig3a,
                      "fig3a_ok": all(fig3a.values()), "squeezed_model_z": z, "runs": res}))


if __name__ == "__main__":
    main()
