"""analysis.exact_model: the closed forms against hand-derived limits and physics.md's formulas."""
from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.exact_model import (Noise, Readout, StateMoments, criteria, physics_md_e_epr, readout,
                                  region_moments, split_criteria, split_moments)

N = 530
XI2 = 10 ** (-3.2 / 10)           # -3.2 dB, minimum-uncertainty partner below
SQUEEZED = StateMoments.gaussian(N, XI2, 1 / XI2, 1.0)
COHERENT = StateMoments(N, N / 2, 0.0, N / 4, N / 4)    # exact moments of the coherent state along +x
P_GRID = np.round(np.arange(0.05, 0.951, 0.01), 3)


def curve(state: StateMoments, noise: Noise, key: str) -> np.ndarray:
    return np.array([split_criteria(state, float(p), noise)[key] for p in P_GRID])


def test_without_noise_it_is_physics_md() -> None:
    xi2, eta2, c = 0.4786, 2.09, 0.9995
    state = StateMoments.gaussian(N, xi2, eta2, c)
    for p in (0.1, 0.25, 0.5, 0.77, 0.9):
        q = 1 - p
        mom = split_moments(state, (p, p), (q, q))
        z = mom["z"]
        assert z.var_a == pytest.approx(N / 4 * (p * q + p * p * xi2), rel=1e-12)
        assert z.var_b == pytest.approx(N / 4 * (p * q + q * q * xi2), rel=1e-12)
        assert z.cov == pytest.approx(N / 4 * p * q * (xi2 - 1), rel=1e-12)
        assert z.inferred_b == pytest.approx(N / 4 * q * xi2 / (q + p * xi2), rel=1e-12)
        assert mom["x"].mean_b == pytest.approx(-q * c * N / 2, rel=1e-12)   # the x readout reads -S_x
        res = split_criteria(state, p)
        assert res["E_EPR_AB"] == pytest.approx(physics_md_e_epr(xi2, eta2, c, p), rel=1e-12)
        assert res["E_EPR_BA"] == pytest.approx(physics_md_e_epr(xi2, eta2, c, q), rel=1e-12)
    assert split_criteria(SQUEEZED, 0.5)["E_EPR_AB"] == pytest.approx(0.876, abs=0.001)  # physics.md's number


def test_phase_noise_readout_limits() -> None:
    # hand-derived: small phase_var s: Var(y) = Var(S_y) + <S_x>^2 s + O(s^2); z untouched; <x> = -<S_x> e^{-s/2}
    s = 1e-4
    y = readout(SQUEEZED, "y", s)
    assert y.mean == 0 and y.var == pytest.approx(SQUEEZED.var_y + SQUEEZED.mean_x ** 2 * s, rel=1e-4)
    assert readout(SQUEEZED, "z", 0.3) == Readout(0.0, SQUEEZED.var_z)
    assert readout(SQUEEZED, "x", 0.3).mean == pytest.approx(-SQUEEZED.mean_x * math.exp(-0.15), rel=1e-12)
    # full dephasing: the y readout holds half of <S_x^2> + <S_y^2>, the x readout's mean vanishes
    full = readout(COHERENT, "y", 50.0)
    assert full.var == pytest.approx((COHERENT.mean_x ** 2 + COHERENT.var_y) / 2, rel=1e-12)
    assert abs(readout(COHERENT, "x", 50.0).mean) < 1e-6
    with pytest.raises(ValueError, match="direction"):
        readout(COHERENT, "w")
    with pytest.raises(ValueError, match="phase_var"):
        readout(COHERENT, "y", -1.0)


def test_local_noise_adds_to_the_variances_only() -> None:
    m = Readout(0.0, 60.0)
    base = region_moments(N, m, (0.3, 0.3), (0.6, 0.6))
    noisy = region_moments(N, m, (0.3, 0.3), (0.6, 0.6), Noise(local_var_a=4.0, local_var_b=9.0, local_cov=1.0))
    assert (noisy.var_a - base.var_a, noisy.var_b - base.var_b, noisy.cov - base.cov) == pytest.approx((4, 9, 1))
    assert (noisy.mean_a, noisy.mean_b) == (base.mean_a, base.mean_b)
    with pytest.raises(ValueError, match="local_cov"):
        Noise(local_var_a=1.0, local_var_b=1.0, local_cov=2.0)
    with pytest.raises(ValueError, match="pa \\+ pb"):
        region_moments(N, m, (0.6, 0.6), (0.6, 0.6))


@pytest.mark.parametrize("noise", [Noise(), Noise(phase_var=0.1 ** 2), Noise(local_var_a=5.0, local_var_b=5.0),
                                   Noise(phase_var=0.05 ** 2, local_var_a=2.0, local_var_b=8.0, local_cov=-1.0)])
def test_a_coherent_state_never_steers(noise: Noise) -> None:
    for contrast in (1.0, 0.9):
        state = StateMoments(N, contrast * N / 2, 0.0, N / 4, N / 4)
        for key in ("E_EPR_AB", "E_EPR_BA"):
            assert curve(state, noise, key).min() >= 1.0 - 1e-9
        gapped = split_moments(state, (0.5, 0.5), (0.3, 0.3), noise)    # a gap holding 20 % of the atoms
        assert criteria(gapped)["E_EPR_AB"] >= 1.0 - 1e-9


def test_common_mode_and_local_noise_shape_steering_in_opposite_directions() -> None:
    """Without a gap: the common-mode phase noise moves A -> B's optimum to a large A (the paper's
    asymmetry); local noise of the same order moves it to a small A (the opposite)."""
    pure = curve(SQUEEZED, Noise(), "E_EPR_AB")
    assert P_GRID[pure.argmin()] == pytest.approx(0.5, abs=0.011)          # minimum-uncertainty state: 0.5
    phase = curve(SQUEEZED, Noise(phase_var=0.055 ** 2), "E_EPR_AB")
    phase_ba = curve(SQUEEZED, Noise(phase_var=0.055 ** 2), "E_EPR_BA")
    assert P_GRID[phase.argmin()] == pytest.approx(0.77, abs=0.03)
    assert P_GRID[phase_ba.argmin()] == pytest.approx(0.23, abs=0.03)
    assert not np.any((phase < 1) & (phase_ba < 1))                       # never both ways
    local = curve(SQUEEZED, Noise(local_var_a=0.02 * N / 4, local_var_b=0.02 * N / 4), "E_EPR_AB")
    assert P_GRID[local.argmin()] < 0.45
    assert local.min() > pure.min() and phase.min() > pure.min()
    # E_Ent is jointly minimised over g_z, g_y: the common-mode noise hardly changes it
    ent = curve(SQUEEZED, Noise(phase_var=0.055 ** 2), "E_Ent")
    assert ent.max() < 0.8 and np.all(ent - curve(SQUEEZED, Noise(), "E_Ent") < 0.08)


def test_state_moments_of_a_computed_state_along_x() -> None:
    """StateMoments.of takes the virtual lab's moments of the coherent state (exact: <S_x> = N/2,
    Var(S_x) = 0, Var(S_y) = Var(S_z) = N/4) and refuses a state not along +x."""
    from drivers.simulated.spin import coherent_state_x, rotate_z, spin_moments

    state = StateMoments.of(spin_moments(coherent_state_x(N)))
    assert state.n_atoms == N
    assert (state.mean_x, state.var_x, state.var_y, state.var_z) == pytest.approx(
        (COHERENT.mean_x, COHERENT.var_x, COHERENT.var_y, COHERENT.var_z), abs=1e-9)
    with pytest.raises(ValueError, match=r"mean_y = .*expected 0"):
        StateMoments.of(spin_moments(rotate_z(coherent_state_x(N), 0.1)))
