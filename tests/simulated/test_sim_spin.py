"""Collective spin states, exact rotations and their sign conventions (drivers/simulated/spin.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import expm

from drivers.simulated import spin as sp


def dense_operators(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S_x, S_y, S_z as dense matrices in the Dicke basis (index = N1), built independently of spin.py."""
    s = n / 2
    m = np.arange(n + 1) - s
    s_plus = np.zeros((n + 1, n + 1))
    for k in range(n):
        s_plus[k + 1, k] = math.sqrt(s * (s + 1) - m[k] * (m[k] + 1))
    return (s_plus + s_plus.T) / 2, (s_plus - s_plus.T) / 2j, np.diag(m)


@pytest.mark.parametrize("n", [1, 2, 7])
@pytest.mark.parametrize("pulse", [sp.RabiPulse(math.pi / 2), sp.RabiPulse(1.1, 0.3), sp.RabiPulse(2.9, -2.0),
                                   sp.RabiPulse(0.7, 4.0, 0.9), sp.RabiPulse(0.0, 0.0, 1.3)])
def test_rotation_equals_matrix_exponential(n: int, pulse: sp.RabiPulse) -> None:
    sx, sy, sz = dense_operators(n)
    gen = pulse.area_rad * (math.cos(pulse.phase_rad) * sx + math.sin(pulse.phase_rad) * sy) \
        + pulse.detuning_area_rad * sz
    rng = np.random.default_rng(n)
    psi = rng.normal(size=n + 1) + 1j * rng.normal(size=n + 1)
    np.testing.assert_allclose(sp.rotate(psi, pulse), expm(-1j * gen) @ psi, atol=1e-12)


def test_rotation_is_unitary_and_composes_at_paper_size() -> None:
    psi = sp.squeezed_state(530, 0.003)
    a = sp.rotate(psi, sp.RabiPulse(0.4, 1.0))
    b = sp.rotate(a, sp.RabiPulse(0.9, 1.0))
    assert np.vdot(b, b).real == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(b, sp.rotate(psi, sp.RabiPulse(1.3, 1.0)), atol=1e-11)
    back = sp.rotate(b, sp.RabiPulse(-1.3, 1.0))
    np.testing.assert_allclose(back, psi, atol=1e-11)


def test_coherent_state_moments() -> None:
    mom = sp.spin_moments(sp.coherent_state_x(530))
    assert mom.mean_x == pytest.approx(265.0)
    assert (mom.var_y, mom.var_z) == pytest.approx((132.5, 132.5))
    assert abs(mom.mean_y) < 1e-9 and abs(mom.mean_z) < 1e-9 and mom.var_x == pytest.approx(0.0, abs=1e-8)


def test_squeezed_state_reaches_wineland_target_and_matches_kitagawa_ueda() -> None:
    n = 530
    target = 10 ** (-3.2 / 10)
    mu = sp.solve_twist_for_wineland(n, target)
    mom = sp.spin_moments(sp.squeezed_state(n, mu))
    assert 10 * math.log10(sp.wineland_xi2(mom)) == pytest.approx(-3.2, abs=1e-9)
    # Kitagawa & Ueda (1993) closed forms for one-axis twisting of N spins
    a = 1 - math.cos(mu) ** (n - 2)
    b = 4 * math.sin(mu / 2) * math.cos(mu / 2) ** (n - 2)
    assert mom.var_z == pytest.approx(n / 4 * (1 + (n - 1) / 4 * (a - math.hypot(a, b))), rel=1e-9)
    assert mom.var_y == pytest.approx(n / 4 * (1 + (n - 1) / 4 * (a + math.hypot(a, b))), rel=1e-9)
    assert mom.mean_x == pytest.approx(n / 2 * math.cos(mu / 2) ** (n - 1), rel=1e-12)
    assert abs(mom.cov_yz) < 1e-6 and abs(mom.mean_y) < 1e-9 and abs(mom.mean_z) < 1e-9
    assert mom.var_z < n / 4 < mom.var_y


def test_solve_twist_rejects_unreachable_and_invalid_targets() -> None:
    with pytest.raises(ValueError, match="cannot reach"):
        sp.solve_twist_for_wineland(4, 0.01)
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        sp.solve_twist_for_wineland(530, 1.5)
    assert sp.solve_twist_for_wineland(530, 1.0) == 0.0


def test_measurement_pulse_sign_conventions() -> None:
    n = 40
    along_x = sp.coherent_state_x(n)
    along_y = sp.rotate_z(along_x, math.pi / 2)  # Rz(+90 deg) turns +x into +y
    assert sp.spin_moments(along_y).mean_y == pytest.approx(n / 2)
    # y readout: pi/2 about x (phase 0) maps +S_y onto +S_z
    assert sp.spin_moments(sp.rotate(along_y, sp.RabiPulse(math.pi / 2, 0.0))).mean_z == pytest.approx(n / 2)
    # x readout: pi/2 about y (phase +90 deg) maps +S_x onto -S_z (all atoms in |2>) ...
    after = sp.rotate(along_x, sp.RabiPulse(math.pi / 2, math.pi / 2))
    assert sp.spin_moments(after).mean_z == pytest.approx(-n / 2)
    assert sp.outcome_probabilities(after)[0] == pytest.approx(1.0)  # N1 = 0
    # ... and phase -90 deg maps it onto +S_z
    assert sp.spin_moments(sp.rotate(along_x, sp.RabiPulse(math.pi / 2, -math.pi / 2))).mean_z == pytest.approx(n / 2)
    # positive detuning precesses +x towards +y (H = delta S_z)
    precessed = sp.rotate(along_x, sp.RabiPulse(0.0, 0.0, 0.3))
    assert sp.spin_moments(precessed).mean_y == pytest.approx(n / 2 * math.sin(0.3))


def test_sampled_outcomes_follow_the_state() -> None:
    psi = sp.squeezed_state(530, sp.solve_twist_for_wineland(530, 0.5))
    psi_y = sp.rotate(psi, sp.RabiPulse(math.pi / 2, 0.0))
    rng = np.random.default_rng(3)
    m = sp.sample_n1(psi_y, rng, size=40000) - 265
    mom = sp.spin_moments(psi_y)
    assert m.mean() == pytest.approx(mom.mean_z, abs=4 * math.sqrt(mom.var_z / m.size))
    assert m.var() == pytest.approx(mom.var_z, rel=4 * math.sqrt(2 / m.size))
    assert isinstance(sp.sample_n1(psi, rng), int)


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="area_rad"):
        sp.RabiPulse(float("nan"))
    with pytest.raises(ValueError, match="positive integer"):
        sp.coherent_state_x(0)
    with pytest.raises(ValueError, match="1-D Dicke vector"):
        sp.rotate(np.ones((2, 2)), sp.RabiPulse(1.0))
    with pytest.raises(ValueError, match="zero norm"):
        sp.spin_moments(np.zeros(5))


def full_eigensystem_exp_sx(psi: np.ndarray, angle: float) -> np.ndarray:
    """Reference: exp(-i angle S_x) psi from the full (N + 1)-dimensional tridiagonal eigen-problem, as
    spin.py computed it before the reversal-parity split (scipy's default driver)."""
    from scipy.linalg import eigh_tridiagonal
    n = psi.size - 1
    w, v = eigh_tridiagonal(np.zeros(n + 1), 0.5 * sp._ladder(n))
    w = np.round(w * 2.0) / 2.0
    coeff = v.T @ psi.real + 1j * (v.T @ psi.imag)
    coeff *= np.exp(-1j * angle * w)
    return v @ coeff.real + 1j * (v @ coeff.imag)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 9, 530, 531])
def test_parity_split_rotation_equals_the_full_eigensystem(n: int) -> None:
    rng = np.random.default_rng(n)
    psi = rng.normal(size=n + 1) + 1j * rng.normal(size=n + 1)
    psi /= np.linalg.norm(psi)
    for angle in (math.pi / 2, 0.37, -2.9):
        np.testing.assert_allclose(sp._exp_sx(psi, angle), full_eigensystem_exp_sx(psi, angle), rtol=0, atol=1e-12)
    system = sp._sx_eigensystem(n)
    np.testing.assert_array_equal(np.sort(np.concatenate([system.even.w, system.odd.w])), np.arange(n + 1) - n / 2)


def test_eigensystems_are_computed_once_per_atom_number_within_the_memory_budget(monkeypatch) -> None:
    default_budget = sp.EIGEN_CACHE_BYTES
    cache = sp._EigenCache()
    one = sp._compute_sx_eigensystem(100).nbytes
    monkeypatch.setattr(sp, "EIGEN_CACHE_BYTES", int(2.5 * one))
    first = cache.get(100)
    cache.get(101)
    assert cache.get(100) is first and cache.misses == 2
    cache.get(102)                      # over budget: 101, the least recently used, goes
    assert len(cache) == 2 and cache.nbytes <= sp.EIGEN_CACHE_BYTES
    assert cache.get(100) is first and cache.misses == 3
    cache.get(101)
    assert cache.misses == 4
    # blocks of (N + 2) // 2 and (N + 1) // 2 states: w and u in float64
    assert sp._compute_sx_eigensystem(631).nbytes == sum(8 * (s + s * s) for s in (316, 316))
    # the default budget keeps every atom number of the paper's range 530 +- 2.5 x 40
    kept = sum(8 * (s + s * s) for n in range(430, 631) for s in ((n + 2) // 2, (n + 1) // 2))
    assert kept <= default_budget
