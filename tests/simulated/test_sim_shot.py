"""One shot of the simulated atoms: reproducibility, truth consistency, technical noise, exposures."""
from __future__ import annotations

import dataclasses
import math
import threading

import numpy as np
import pytest

from drivers.simulated.atoms import (FRAME_NAMES, PAPER_DEPHASING_RMS_RAD, Exposures, RabiPulse, SimulatedAtoms, SimulationConfig, SpinConfig,
                                     counting_region, paper_measurement_pulses, simulate_shot)
from drivers.simulated.imaging import atom_number_image

CONFIG = SimulationConfig()


def with_spin(**changes: object) -> SimulationConfig:
    return dataclasses.replace(CONFIG, spin=dataclasses.replace(CONFIG.spin, **changes))


def assert_same_shot(a, b) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_array_equal(a.frames, b.frames)
    for field in dataclasses.fields(a.truth):
        va, vb = getattr(a.truth, field.name), getattr(b.truth, field.name)
        if isinstance(va, np.ndarray):
            np.testing.assert_array_equal(va, vb)
        else:
            assert va == vb, field.name


def test_frames_truth_and_parameters_are_reproducible_from_a_seed() -> None:
    noisy = with_spin(atom_number_rms=40.0, phase_noise_rms_rad=0.05, rabi_area_rel_rms=0.02, dephasing_rms_rad=0.1)
    pulses = paper_measurement_pulses("x")
    a = simulate_shot(noisy, seed=42, pulses=pulses)
    b = simulate_shot(noisy, seed=42, pulses=pulses)
    assert_same_shot(a, b)
    c = simulate_shot(noisy, seed=43, pulses=pulses)
    assert not np.array_equal(a.frames, c.frames)
    assert a.truth.pulses_applied != c.truth.pulses_applied and a.truth.dephasing_rad != c.truth.dephasing_rad
    # a stream: shot k is the same whether taken in order, out of order, or by another instance
    stream = SimulatedAtoms(noisy, seed=7)
    taken = [stream.next_shot(pulses=pulses) for _ in range(3)]
    assert stream.shots_taken == 3
    other = SimulatedAtoms(noisy, seed=7)
    assert_same_shot(taken[2], other.shot(2, pulses=pulses))
    assert_same_shot(taken[0], other.shot(0, pulses=pulses))
    assert taken[0].truth.seed_spawn_key == (0,) and taken[2].truth.seed_entropy == 7
    assert not np.array_equal(taken[0].frames, taken[1].frames)


def test_stream_hands_out_each_index_once_across_threads() -> None:
    stream = SimulatedAtoms(with_spin(state="coherent"), seed=1)
    keys: list[tuple[int, ...]] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            key = stream.next_shot(render=False).truth.seed_spawn_key
            with lock:
                keys.append(key)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(keys) == [(k,) for k in range(15)]


def test_truth_is_consistent_with_the_frames() -> None:
    shot = simulate_shot(CONFIG, seed=5, pulses=paper_measurement_pulses("y"))
    t = shot.truth
    assert t.n1 + t.n2 == t.n_atoms == 530 and t.m == (t.n1 - t.n2) / 2
    assert t.positions1.shape == (t.n1, 2) and t.positions2.shape == (t.n2, 2)
    assert t.imaged_positions1 is not None and t.imaged_positions1.shape == t.positions1.shape
    walk = t.imaged_positions2 - t.positions2
    assert 0.3 < walk.std() < 1.0  # the random part of the photon-recoil walk (~0.64 px)
    for pos, geom in ((t.positions1, t.geometry1), (t.positions2, t.geometry2)):
        rho2 = ((pos[:, 0] - geom.centre_px[0]) / geom.half_width_px[0]) ** 2 \
            + ((pos[:, 1] - geom.centre_px[1]) / geom.half_width_px[1]) ** 2
        assert rho2.max() <= 1.0
    assert t.pulses_applied == t.pulses_requested == paper_measurement_pulses("y")
    # the |1> picture: atoms where the truth puts them (centroid of the atom-number image)
    img1 = atom_number_image(shot.frame("atoms1"), shot.frame("ref1"), shot.frame("dark"), CONFIG.imaging,
                             state=1, pulse_s=50e-6)
    region = counting_region(CONFIG, 1)
    rows, cols = np.mgrid[0:256, 0:256] + 0.5
    weight = img1[region]
    assert (weight * rows[region]).sum() / weight.sum() == pytest.approx(t.positions1[:, 1].mean(), abs=0.6)
    assert (weight * cols[region]).sum() / weight.sum() == pytest.approx(t.positions1[:, 0].mean(), abs=0.6)
    assert FRAME_NAMES == ("atoms2", "atoms1", "ref2", "ref1", "dark")
    np.testing.assert_array_equal(shot.frame("ref1"), shot.frames[3])
    with pytest.raises(ValueError, match="unknown frame"):
        shot.frame("atoms3")


def test_exposure_times_from_the_timing_card_move_the_clouds() -> None:
    early = simulate_shot(CONFIG, seed=9, pulses=paper_measurement_pulses("y"), render=False)
    late = simulate_shot(CONFIG, seed=9, pulses=paper_measurement_pulses("y"), render=False,
                         exposures=Exposures(atoms2_time_s=3.0e-3, atoms1_time_s=4.5e-3))
    assert late.frames is None
    assert late.truth.n1 == early.truth.n1  # same seed, same measurement
    assert late.truth.positions2[:, 1].mean() > early.truth.positions2[:, 1].mean() + 20
    assert late.truth.geometry1.half_width_px[1] > early.truth.geometry1.half_width_px[1]


def test_atom_free_shot() -> None:
    shot = simulate_shot(CONFIG, seed=3, atoms_loaded=False)
    assert shot.truth.n_atoms == 0 and shot.truth.positions1.shape == (0, 2)
    diff = shot.frame("ref2").astype(float) - shot.frame("atoms2")
    assert abs(diff.mean()) < 1.0  # only shot noise and fringe jitter


def test_default_technical_noise_is_the_fig3a_dephasing_and_has_the_configured_size() -> None:
    # default: only the common-mode phase noise that shapes Fig. 3a (docs/virtual-lab-atoms.md)
    assert CONFIG.spin.dephasing_rms_rad == PAPER_DEPHASING_RMS_RAD > 0
    assert CONFIG.spin.atom_number_rms == CONFIG.spin.phase_noise_rms_rad == CONFIG.spin.rabi_area_rel_rms == 0
    assert not CONFIG.spin.noiseless and with_spin(dephasing_rms_rad=0.0).spin.noiseless
    pulses = (RabiPulse(math.pi / 2, 0.3),)
    noisy = with_spin(state="coherent", phase_noise_rms_rad=0.1, rabi_area_rel_rms=0.05)
    shots = [simulate_shot(noisy, seed=s, pulses=pulses, render=False).truth for s in range(300)]
    phase_err = np.array([t.pulses_applied[0].phase_rad - 0.3 for t in shots])
    area_err = np.array([t.pulses_applied[0].area_rad / (math.pi / 2) - 1 for t in shots])
    assert all(t.n_atoms == 530 for t in shots)
    fluctuating = with_spin(state="coherent", atom_number_rms=40.0)
    n = np.array([simulate_shot(fluctuating, seed=s, render=False).truth.n_atoms for s in range(300)])
    assert phase_err.std() == pytest.approx(0.1, rel=0.15) and area_err.std() == pytest.approx(0.05, rel=0.15)
    assert n.mean() == pytest.approx(530, abs=4 * 40 / math.sqrt(300)) and n.std() == pytest.approx(40, rel=0.15)
    assert np.all(n == np.round(n)) and len(set(n.tolist())) > 50
    assert all(t.pulses_requested == pulses for t in shots)


def test_bad_shot_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="seed"):
        simulate_shot(CONFIG, seed=-1)
    with pytest.raises(ValueError, match="RabiPulse"):
        simulate_shot(CONFIG, seed=1, pulses=[(1.57, 0.0)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="must start after"):
        Exposures(atoms2_time_s=2.2e-3, atoms1_time_s=2.21e-3)
    with pytest.raises(ValueError, match="atoms1_pulse_s"):
        Exposures(atoms1_pulse_s=0.0)
    with pytest.raises(ValueError, match="state"):
        SpinConfig(state="cat")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wineland_squeezing_db"):
        SpinConfig(wineland_squeezing_db=1.0)
    with pytest.raises(ValueError, match="dephasing_rms_rad=2.0"):
        SpinConfig(dephasing_rms_rad=2.0)
    with pytest.raises(ValueError, match="atom_number_rms"):
        SpinConfig(atom_number_rms=-1.0)
    with pytest.raises(ValueError, match="render=False"):
        simulate_shot(CONFIG, seed=1, render=False).frame("dark")
    with pytest.raises(ValueError, match="shot index"):
        SimulatedAtoms(CONFIG).shot(-2)


# (N, N1) of shots 0..11 of SimulatedAtoms(NOISY_SEQUENCE, seed=2026) as simulated before the S_x
# eigen-systems were split by parity and kept per atom number (commit 4175d87)
SEQUENCE_BEFORE = [(534, 0), (552, 326), (586, 296), (453, 0), (563, 298), (507, 262), (495, 1), (551, 244),
                   (434, 207), (520, 6), (521, 244), (511, 296)]


def seeded_sequence() -> list:  # type: ignore[type-arg]
    noisy = with_spin(atom_number_rms=40.0, phase_noise_rms_rad=0.05, rabi_area_rel_rms=0.02, dephasing_rms_rad=0.1)
    stream = SimulatedAtoms(noisy, seed=2026)
    return [stream.shot(k, pulses=(RabiPulse(math.pi / 2, 0.3, 0.4),) if k == 11 else
                        paper_measurement_pulses("xyz"[k % 3])) for k in range(12)]


def test_a_seeded_shot_sequence_is_unchanged_by_the_cached_parity_eigensystems(monkeypatch) -> None:
    from drivers.simulated import atoms, spin
    from tests.simulated.test_sim_spin import full_eigensystem_exp_sx

    atoms._cached_state.cache_clear()
    fast = seeded_sequence()
    assert [(s.truth.n_atoms, s.truth.n1) for s in fast] == SEQUENCE_BEFORE
    monkeypatch.setattr(spin, "_exp_sx", full_eigensystem_exp_sx)      # the reference implementation
    atoms._cached_state.cache_clear()
    try:
        reference = seeded_sequence()
    finally:
        atoms._cached_state.cache_clear()
    for a, b in zip(fast, reference):
        assert_same_shot(a, b)
