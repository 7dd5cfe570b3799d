"""Rotation test: pulses for x, y, z give the measured moments of the rotated state; wrong pulses give wrong ones."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from analysis.exact_model import StateMoments, readout
from drivers.simulated.atoms import SimulationConfig, SpinConfig, paper_measurement_pulses, prepared_state
from drivers.simulated.ensemble import sample_outcomes
from drivers.simulated.spin import RabiPulse, outcome_probabilities, rotate, rotate_z, spin_moments, wineland_xi2

CONFIG = SimulationConfig(spin=SpinConfig(dephasing_rms_rad=0.0))  # no technical noise: exact rotations of the pure state
N = 530
STATE = prepared_state(CONFIG.spin, N)
MOM = spin_moments(STATE)


def measured(config: SimulationConfig, pulses: tuple[RabiPulse, ...], n_shots: int, seed: int) -> np.ndarray:
    return sample_outcomes(config, rng=np.random.default_rng(seed), n_shots=n_shots, pulses=pulses).m


def assert_moments(m: np.ndarray, mean: float, var: float, mu4: float | None = None) -> None:
    """Sample mean and variance within 4 standard errors (exact 4th moment if given, else Gaussian)."""
    se_var = math.sqrt((mu4 - var**2) / m.size) if mu4 is not None else var * math.sqrt(2 / m.size)
    assert m.mean() == pytest.approx(mean, abs=4 * math.sqrt(var / m.size) + 1e-9)
    assert m.var() == pytest.approx(var, abs=4 * se_var)


def exact_readout(pulses: tuple[RabiPulse, ...]) -> tuple[float, float, float]:
    """Exact mean, variance and 4th central moment of the measured S_z after pulses."""
    psi = STATE
    for p in pulses:
        psi = rotate(psi, p)
    prob = outcome_probabilities(psi)
    m = np.arange(N + 1) - N / 2
    mean = float(prob @ m)
    return mean, float(prob @ (m - mean) ** 2), float(prob @ (m - mean) ** 4)


def test_x_y_z_pulses_read_the_rotated_state() -> None:
    n_shots = 20000
    z = measured(CONFIG, paper_measurement_pulses("z"), n_shots, 1)
    y = measured(CONFIG, paper_measurement_pulses("y"), n_shots, 2)
    x = measured(CONFIG, paper_measurement_pulses("x"), n_shots, 3)
    for axis, m, (mean, var) in (("z", z, (MOM.mean_z, MOM.var_z)), ("y", y, (MOM.mean_y, MOM.var_y)),
                                 ("x", x, (-MOM.mean_x, MOM.var_x))):  # pi/2 about y reads -S_x
        exact = exact_readout(paper_measurement_pulses(axis))
        assert exact[:2] == pytest.approx((mean, var), abs=1e-8)  # the rotated state's moments
        assert_moments(m, *exact)
    assert MOM.var_z < N / 4 < MOM.var_y  # squeezed along z, anti-squeezed along y
    xi2 = N * z.var() / x.mean() ** 2
    assert 10 * math.log10(xi2) == pytest.approx(-3.2, abs=0.15)


def test_wrong_phase_or_area_reads_the_wrong_component() -> None:
    n_shots = 6000
    # y readout sent with the x-readout phase: reads -S_x, not S_y
    wrong_phase = measured(CONFIG, (RabiPulse(math.pi / 2, math.pi / 2),), n_shots, 4)
    assert wrong_phase.mean() < -0.99 * MOM.mean_x and wrong_phase.var() < 0.01 * MOM.var_y
    # a pi pulse about x instead of pi/2: back on (minus) S_z
    wrong_area = measured(CONFIG, (RabiPulse(math.pi, 0.0),), n_shots, 5)
    assert_moments(wrong_area, *exact_readout((RabiPulse(math.pi, 0.0),)))
    assert exact_readout((RabiPulse(math.pi, 0.0),))[1] == pytest.approx(MOM.var_z)
    assert wrong_area.var() < 0.5 * MOM.var_y
    # a 10 % short pi/2 pulse: the physically right mixture of S_z and S_y (cos^2 / sin^2 weights)
    theta = 0.9 * math.pi / 2
    short = measured(CONFIG, (RabiPulse(theta, 0.0),), n_shots, 6)
    exact = spin_moments(rotate(STATE, RabiPulse(theta, 0.0)))
    assert exact.var_z == pytest.approx(MOM.var_z * math.cos(theta) ** 2 + MOM.var_y * math.sin(theta) ** 2, rel=1e-6)
    assert_moments(short, *exact_readout((RabiPulse(theta, 0.0),)))
    # a detuned pulse tilts the axis: compare with the exact rotated state too
    detuned = RabiPulse(math.pi / 2, 0.0, 0.4)
    assert_moments(measured(CONFIG, (detuned,), n_shots, 7), *exact_readout((detuned,)))


def _noise_averaged(pulse: RabiPulse, phase_rms: float, area_rel_rms: float) -> tuple[float, float]:
    """Exact mean and variance of the readout averaged over Gaussian phase and area errors (Gauss-Hermite)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(9)
    weights = weights / weights.sum()
    mean = second = 0.0
    for a, wa in zip(nodes, weights):
        for b, wb in zip(nodes, weights):
            p = RabiPulse(pulse.area_rad * (1 + area_rel_rms * a), pulse.phase_rad + phase_rms * b)
            mom = spin_moments(rotate(STATE, p))
            mean += wa * wb * mom.mean_z
            second += wa * wb * (mom.var_z + mom.mean_z**2)
    return mean, second - mean**2


def test_phase_noise_and_rabi_drift_give_the_noise_averaged_moments() -> None:
    noisy = dataclasses.replace(CONFIG, spin=dataclasses.replace(CONFIG.spin, phase_noise_rms_rad=0.15,
                                                                 rabi_area_rel_rms=0.05))
    pulse = paper_measurement_pulses("y")[0]
    m = measured(noisy, (pulse,), 3000, 8)
    mean, var = _noise_averaged(pulse, 0.15, 0.05)
    assert var > 1.5 * MOM.var_y  # phase noise mixes the large <S_x> into the y readout
    assert_moments(m, mean, var)


def test_dephasing_adds_anti_squeezing_and_keeps_the_wineland_target() -> None:
    rms = 0.2
    spin = SpinConfig(dephasing_rms_rad=rms)
    config = dataclasses.replace(CONFIG, spin=spin)
    pure = prepared_state(spin, N)
    pm = spin_moments(pure)
    contrast = math.exp(-rms**2 / 2)
    assert 10 * math.log10(wineland_xi2(pm, contrast)) == pytest.approx(-3.2, abs=1e-9)
    nodes, weights = np.polynomial.hermite_e.hermegauss(21)
    weights = weights / weights.sum()
    var_y = sum(w * (spin_moments(rotate_z(pure, rms * d)).var_y + spin_moments(rotate_z(pure, rms * d)).mean_y ** 2)
                for d, w in zip(nodes, weights))
    assert var_y > pm.var_y + 0.5 * (pm.mean_x * rms) ** 2  # extra anti-squeezing
    # the closed form of analysis.exact_model (<S_x^2> sin^2 + <S_y^2> cos^2, averaged) agrees
    closed = readout(StateMoments.of(pm), "y", rms ** 2)
    assert closed.var == pytest.approx(var_y, rel=1e-6)
    n_shots = 3000
    z = measured(config, paper_measurement_pulses("z"), n_shots, 9)
    y = measured(config, paper_measurement_pulses("y"), n_shots, 10)
    x = measured(config, paper_measurement_pulses("x"), n_shots, 11)
    assert_moments(z, 0.0, pm.var_z)
    assert_moments(y, 0.0, var_y)
    assert x.mean() == pytest.approx(-pm.mean_x * contrast, rel=0.005)
    assert 10 * math.log10(N * z.var() / x.mean() ** 2) == pytest.approx(-3.2, abs=0.35)
