"""Region counts from simulated positions reproduce the exact model of physics.md (analysis.exact_model):
fixed N, without technical noise and with the default common-mode phase noise."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from analysis.exact_model import Readout, StateMoments, physics_md_e_epr, readout, region_moments
from drivers.simulated.atoms import Exposures, SimulationConfig, SpinConfig, paper_measurement_pulses, prepared_state
from drivers.simulated.cloud import cloud_geometry, pixel_probabilities
from drivers.simulated.ensemble import sample_outcomes, sample_region_counts
from drivers.simulated.spin import outcome_probabilities, rotate, spin_moments

N_SHOTS = 12000
P_VALUES = (0.25, 0.5, 0.77)
Z_LIMIT = 4.0


def split_mask(probs: np.ndarray, p: float) -> np.ndarray:
    """Mask A holding probability ~p: whole columns from the left, then a greedy subset of the next column."""
    col_cum = np.cumsum(probs.sum(axis=0))
    c = int(np.searchsorted(col_cum, p))
    mask = np.zeros(probs.shape, dtype=bool)
    mask[:, :c] = True
    have = col_cum[c - 1] if c > 0 else 0.0
    for row in np.argsort(probs[:, c])[::-1]:
        if have + probs[row, c] <= p:
            mask[row, c] = True
            have += probs[row, c]
    return mask


def general_model(pa: tuple[float, float], pb: tuple[float, float], n: int, mean_m: float,
                  var_m: float) -> dict[str, float]:
    """analysis.exact_model.region_moments as a dict (pa, pb indexed (|1>, |2>))."""
    return dataclasses.asdict(region_moments(n, Readout(mean_m, var_m), pa, pb))


def inferred(mom: dict[str, float]) -> float:
    return mom["var_b"] - mom["cov"] ** 2 / mom["var_a"]


def test_general_model_reduces_to_physics_md() -> None:
    n, xi2, eta2, c = 530, 0.4786, 2.09, 0.9995
    for p in P_VALUES:
        z = general_model((p, p), (1 - p, 1 - p), n, 0.0, xi2 * n / 4)
        y = general_model((p, p), (1 - p, 1 - p), n, 0.0, eta2 * n / 4)
        x = general_model((p, p), (1 - p, 1 - p), n, c * n / 2, 1.0)
        assert z["var_a"] == pytest.approx(n / 4 * (p * (1 - p) + p * p * xi2), rel=1e-12)
        assert z["var_b"] == pytest.approx(n / 4 * (p * (1 - p) + (1 - p) ** 2 * xi2), rel=1e-12)
        assert z["cov"] == pytest.approx(n / 4 * p * (1 - p) * (xi2 - 1), rel=1e-12)
        assert inferred(z) == pytest.approx(n / 4 * (1 - p) * xi2 / (1 - p + p * xi2), rel=1e-12)
        e_epr = 4 * inferred(z) * inferred(y) / x["mean_b"] ** 2
        assert e_epr == pytest.approx(xi2 * eta2 / (c * c * (1 - p + p * xi2) * (1 - p + p * eta2)), rel=1e-12)


def _exact_m_moments(config: SimulationConfig, axis: str) -> tuple[float, float]:
    """<m>, Var(m) of the collective readout: exact for the pure rotated state (spin engine) and, with
    the config's dephasing, the closed form of analysis.exact_model.readout (checked equal without noise)."""
    psi = prepared_state(config.spin, config.spin.atom_number_mean)
    mom = spin_moments(psi)
    state = StateMoments.of(mom)
    for pulse in paper_measurement_pulses(axis):
        psi = rotate(psi, pulse)
    prob = outcome_probabilities(psi)
    m = np.arange(prob.size) - (prob.size - 1) / 2
    mean = float(prob @ m)
    pure = readout(state, axis)
    assert (pure.mean, pure.var) == pytest.approx((mean, float(prob @ (m - mean) ** 2)), rel=1e-9, abs=1e-9)
    noisy = readout(state, axis, config.spin.dephasing_rms_rad ** 2)
    return noisy.mean, noisy.var


def _masks(config: SimulationConfig) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """Per state: A/B masks for each p (B = complement) and, last, a 3 px gap split at ratio ~0.77."""
    exposures = Exposures()
    shape = config.imaging.frame_shape
    probs = {1: pixel_probabilities(cloud_geometry(config.cloud, exposures.atoms1_time_s), shape, oversample=16),
             2: pixel_probabilities(cloud_geometry(config.cloud, exposures.atoms2_time_s), shape, oversample=16)}
    stacks = {}
    for state in (1, 2):
        masks = []
        for p in P_VALUES:
            a = split_mask(probs[state], p)
            masks += [a, ~a]
        cols = np.cumsum(probs[state].sum(axis=0))
        c = int(np.searchsorted(cols, 0.77))
        a = np.zeros(shape, dtype=bool)
        a[:, :c - 1] = True
        b = np.zeros(shape, dtype=bool)
        b[:, c + 2:] = True  # columns c-1, c, c+1 form the 3 px gap
        masks += [a, b]
        stacks[state] = np.array(masks)
    return stacks[1], stacks[2], probs


# 0.05 rad (5x the default) makes the phase-noise terms of the closed form (+2.5 % of Var(S_y) at the
# default, within the Monte-Carlo error) large enough to be tested: +60 % of Var(S_y)
@pytest.mark.parametrize("dephasing", [0.0, 0.05], ids=["noiseless", "phase-noise"])
@pytest.mark.parametrize("state", ["coherent", "squeezed"])
def test_region_counts_match_exact_model(state: str, dephasing: float) -> None:
    config = SimulationConfig(spin=SpinConfig(state=state, dephasing_rms_rad=dephasing))  # type: ignore[arg-type]
    masks1, masks2, probs = _masks(config)
    p_mask = {s: np.array([probs[s][m].sum() for m in (masks1 if s == 1 else masks2)]) for s in (1, 2)}
    for i, p in enumerate(P_VALUES):  # the pixel masks realise the nominal p for both states
        assert p_mask[1][2 * i] == pytest.approx(p, abs=0.001)
        assert p_mask[2][2 * i] == pytest.approx(p, abs=0.001)
    rng = np.random.default_rng(20180427 + (state == "squeezed") + 2 * (dephasing > 0))
    n = config.spin.atom_number_mean
    results: dict[str, dict[str, np.ndarray]] = {}
    for axis in ("x", "y", "z"):
        outcomes = sample_outcomes(config, rng=rng, n_shots=N_SHOTS, pulses=paper_measurement_pulses(axis))
        c1, c2 = sample_region_counts(config, rng=rng, outcomes=outcomes, masks1=masks1, masks2=masks2)
        results[axis] = {"s": (c1 - c2) / 2.0}
    checked = 0
    e_epr_mc, e_epr_model = [], []
    for j in range(len(P_VALUES) + 1):
        pa = (p_mask[1][2 * j], p_mask[2][2 * j])
        pb = (p_mask[1][2 * j + 1], p_mask[2][2 * j + 1])
        model, measured = {}, {}
        for axis in ("x", "y", "z"):
            mean_m, var_m = _exact_m_moments(config, axis)
            mod = general_model(pa, pb, n, mean_m, var_m)
            sa, sb = results[axis]["s"][:, 2 * j], results[axis]["s"][:, 2 * j + 1]
            cov = np.cov(sa, sb)
            mc = {"mean_a": sa.mean(), "mean_b": sb.mean(), "var_a": cov[0, 0], "var_b": cov[1, 1], "cov": cov[0, 1]}
            se = {"mean_a": math.sqrt(mod["var_a"] / N_SHOTS), "mean_b": math.sqrt(mod["var_b"] / N_SHOTS),
                  "var_a": mod["var_a"] * math.sqrt(2 / N_SHOTS), "var_b": mod["var_b"] * math.sqrt(2 / N_SHOTS),
                  "cov": math.sqrt((mod["var_a"] * mod["var_b"] + mod["cov"] ** 2) / N_SHOTS)}
            for key in mc:
                z = (mc[key] - mod[key]) / se[key]
                assert abs(z) < Z_LIMIT, f"{state} mask {j} axis {axis} {key}: MC {mc[key]:.4g} model {mod[key]:.4g}"
                checked += 1
            inf_mc, inf_mod = inferred(mc), inferred(mod)
            assert axis == "x" or abs(inf_mc - inf_mod) < Z_LIMIT * inf_mod * math.sqrt(2 / N_SHOTS), (state, j, axis)
            model[axis], measured[axis] = mod, mc
        e_mod = 4 * inferred(model["z"]) * inferred(model["y"]) / model["x"]["mean_b"] ** 2
        e_mc = 4 * inferred(measured["z"]) * inferred(measured["y"]) / measured["x"]["mean_b"] ** 2
        assert abs(e_mc - e_mod) < Z_LIMIT * e_mod * 2 / math.sqrt(N_SHOTS), (state, j, e_mc, e_mod)
        e_epr_mc.append(e_mc)
        e_epr_model.append(e_mod)
    assert checked == 4 * 3 * 5
    if state == "coherent" and dephasing == 0:
        # physics.md: E_EPR = 1/C^2 = 1; the masks' residual |1>/|2> mismatch of p (< 1e-3) moves it < 0.1 %
        assert e_epr_model[:3] == pytest.approx([1.0, 1.0, 1.0], abs=1e-3)
        assert e_epr_model[3] > 1.0  # the gap only removes atoms: no steering
    elif state == "coherent":
        assert min(e_epr_model) > 1.0  # classical phase noise never steers
    elif dephasing == 0:
        mom = spin_moments(prepared_state(config.spin, n))
        xi2, eta2, c = 4 * mom.var_z / n, 4 * mom.var_y / n, 2 * mom.mean_x / n
        for p, e in zip(P_VALUES, e_epr_model[:3]):  # physics.md formula at the nominal p
            assert e == pytest.approx(xi2 * eta2 / (c * c * (1 - p + p * xi2) * (1 - p + p * eta2)), rel=0.01)
        assert e_epr_mc[1] < 1.0 - 3 * e_epr_mc[1] * 2 / math.sqrt(N_SHOTS)  # steering resolved at p = 0.5
    else:
        # the phase noise adds <S_x>^2 sin^2(phi) to the y readout: weaker steering than the pure state
        mom = spin_moments(prepared_state(config.spin, n))
        xi2, eta2, c = 4 * mom.var_z / n, 4 * mom.var_y / n, 2 * mom.mean_x / n
        for p, e in zip(P_VALUES, e_epr_model[:3]):
            assert e > 1.001 * physics_md_e_epr(xi2, eta2, c, p)


def test_counts_with_technical_noise_off_are_fixed_n() -> None:
    config = SimulationConfig(spin=dataclasses.replace(SpinConfig(), state="coherent", dephasing_rms_rad=0.0))
    outcomes = sample_outcomes(config, rng=np.random.default_rng(1), n_shots=50)
    assert np.all(outcomes.n_atoms == 530)
    a = np.ones((1,) + config.imaging.frame_shape, dtype=bool)
    c1, c2 = sample_region_counts(config, rng=np.random.default_rng(2), outcomes=outcomes, masks1=a, masks2=a)
    np.testing.assert_array_equal(c1[:, 0], outcomes.n1)  # every atom lands inside the frame
    np.testing.assert_array_equal(c2[:, 0], outcomes.n2)
