"""Absorption imaging of the simulated atoms: physics of the frames and counting atoms back from them."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from drivers.simulated.atoms import (Exposures, SimulationConfig, SpinConfig, count_atoms_plain, counting_region,
                                     paper_measurement_pulses, simulate_shot)
from drivers.simulated.imaging import (ImagingConfig, column_atoms_image, photons_per_pixel_at_isat,
                                       recoil_variance_px2, transmitted_intensity)

CONFIG = SimulationConfig(spin=SpinConfig(dephasing_rms_rad=0.0))  # imaging tests: the spin's phase noise plays no part


def with_imaging(**changes: object) -> SimulationConfig:
    return dataclasses.replace(CONFIG, imaging=dataclasses.replace(CONFIG.imaging, **changes))


def test_transmission_solves_the_reinaudi_relation_exactly() -> None:
    alpha = 1 / 0.68
    t_in = np.geomspace(0.01, 300, 40)[:, None] * np.ones((1, 6))
    depth = np.array([0.0, 1e-4, 0.05, 0.5, 3.0, 12.0])[None, :] * np.ones((40, 1))
    isat = 5000.0
    i_out = transmitted_intensity(t_in * isat, depth, isat, alpha)
    t_out = i_out / isat
    assert np.all(t_out > 0) and np.all(t_out <= t_in * (1 + 1e-12))
    np.testing.assert_allclose(alpha * np.log(t_in / t_out) + t_in - t_out, depth, atol=1e-9)


def test_photon_budget_and_total_blur_are_the_papers() -> None:
    imaging = ImagingConfig()
    photons = photons_per_pixel_at_isat(imaging, 50e-6)
    assert photons == pytest.approx(5545, rel=0.01)
    assert imaging.isat_photoelectrons <= photons  # detection efficiency <= 1
    recoil = recoil_variance_px2(imaging, imaging.probe_saturation, 50e-6)
    blur = [math.sqrt(p**2 + recoil) for p in imaging.psf_rms_px]
    assert np.mean(blur) == pytest.approx(1.4, abs=0.05)  # paper: sigma_blur = 1.4 px = 1.8 um
    assert recoil_variance_px2(dataclasses.replace(imaging, recoil_blur_enabled=False), 1.0, 50e-6) == 0.0


def test_column_image_conserves_atoms_and_applies_the_psf() -> None:
    img = column_atoms_image(np.array([[20.3, 30.7]]), (64, 48), (1.1, 1.2))
    assert img.sum() == pytest.approx(1.0, abs=1e-9)
    rows, cols = np.mgrid[0:64, 0:48] + 0.5
    cx, cy = (img * cols).sum(), (img * rows).sum()
    assert (cx, cy) == pytest.approx((20.3, 30.7), abs=1e-6)
    # pixel integration adds 1/12 px^2 (Sheppard) to the PSF variance
    assert (img * (cols - cx) ** 2).sum() == pytest.approx(1.1**2 + 1 / 12, rel=1e-4)
    assert (img * (rows - cy) ** 2).sum() == pytest.approx(1.2**2 + 1 / 12, rel=1e-4)


def test_frames_have_the_camera_model_and_the_fixed_order() -> None:
    shot = simulate_shot(CONFIG, seed=11, pulses=paper_measurement_pulses("y"))
    frames = shot.frames
    assert frames is not None and frames.dtype == np.uint16 and frames.shape == (5, 256, 256)
    imaging = CONFIG.imaging
    dark = shot.frame("dark").astype(float)
    assert dark.mean() == pytest.approx(imaging.camera_offset_counts, abs=0.1)
    assert dark.std() == pytest.approx(math.hypot(imaging.camera_gain * imaging.read_noise_e, math.sqrt(1 / 12)),
                                       rel=0.03)
    ref = shot.frame("ref2").astype(float) - dark.mean()
    # probe at s = 1: I_sat photoelectrons per pixel times the gain at the beam centre (fringes average out)
    assert ref[96:160, 96:160].mean() == pytest.approx(imaging.isat_photoelectrons * imaging.camera_gain, rel=0.03)
    t = shot.truth
    absorbed2 = (shot.frame("ref2").astype(float) - shot.frame("atoms2"))
    absorbed1 = (shot.frame("ref1").astype(float) - shot.frame("atoms1"))
    r2 = counting_region(CONFIG, 2)
    r1 = counting_region(CONFIG, 1)
    assert not np.any(r1 & r2)
    assert absorbed2[r2].sum() > 10 * abs(absorbed2[r1].sum())  # |2> atoms only in the first exposure
    assert absorbed1[r1].sum() > 10 * abs(absorbed1[r2].sum())  # |1> atoms only in the second, 115 px lower
    assert t.fringe_phases_rad.shape == (4, len(imaging.fringes))
    jitter = np.diff(t.fringe_phases_rad, axis=0)
    assert np.all(jitter != 0) and np.abs(jitter).max() < 10 * imaging.fringe_phase_jitter_rad


def test_bright_probe_clips_at_16_bit_full_scale() -> None:
    config = with_imaging(probe_saturation=30.0)
    frames = simulate_shot(config, seed=1, render=True).frames
    assert frames is not None and frames.max() == 65535
    assert frames[:4].min() > 30000  # clipped, not wrapped around


def _count_many(config: SimulationConfig, n_shots: int, seed: int, axis: str) -> tuple[np.ndarray, np.ndarray]:
    counted, truth = [], []
    for k in range(n_shots):
        shot = simulate_shot(config, seed=seed + k, pulses=paper_measurement_pulses(axis))
        counted.append(count_atoms_plain(shot.frames, config))
        truth.append((shot.truth.n1, shot.truth.n2))
    return np.array(counted), np.array(truth, dtype=float)


def test_plain_counting_recovers_the_atom_numbers() -> None:
    counted, truth = _count_many(CONFIG, 24, 100, "y")
    rel = counted.sum(axis=1) / truth.sum(axis=1) - 1
    assert abs(rel.mean()) < 0.02  # totals within 2 % on average (in fact ~0.2 %)
    assert abs(rel.mean()) < 0.005
    for state in (0, 1):
        assert abs((counted[:, state] - truth[:, state]).mean()) < 4.0
        assert np.std(counted[:, state] - truth[:, state]) < 10.0
    # the 5 % differential detectivity is real: counting |1> as if it had |2>'s detectivity overestimates it
    naive = with_imaging(detectivity=(1.0, 1.0))
    shot = simulate_shot(CONFIG, seed=100, pulses=paper_measurement_pulses("y"))
    n1_naive, _ = count_atoms_plain(shot.frames, naive)
    n1_known, _ = count_atoms_plain(shot.frames, CONFIG)
    assert n1_naive / n1_known == pytest.approx(1.05, rel=1e-9)
    # and the common absolute scale (the paper's projection-noise slope 1.031) inflates both states
    unscaled = with_imaging(absolute_scale=1.0)
    raw = np.array(count_atoms_plain(shot.frames, unscaled)) / np.array(count_atoms_plain(shot.frames, CONFIG))
    np.testing.assert_allclose(raw, 1.031, rtol=1e-9)


def test_counting_works_for_a_saturating_probe_and_other_exposure_times() -> None:
    config = with_imaging(probe_saturation=4.0)
    exposures = Exposures(atoms2_time_s=2.5e-3, atoms1_time_s=4.0e-3, atoms2_pulse_s=30e-6, atoms1_pulse_s=30e-6,
                          ref2_pulse_s=30e-6, ref1_pulse_s=30e-6)
    counted, truth = [], []
    for k in range(12):
        shot = simulate_shot(config, seed=300 + k, pulses=paper_measurement_pulses("y"), exposures=exposures)
        counted.append(count_atoms_plain(shot.frames, config, exposures))
        truth.append((shot.truth.n1, shot.truth.n2))
    rel = np.array(counted).sum(axis=1) / np.array(truth).sum(axis=1) - 1
    assert abs(rel.mean()) < 0.02
    # a reference pulse of the wrong length (timing fault) shows up as a grossly wrong count
    bad = dataclasses.replace(exposures, ref2_pulse_s=33e-6)
    shot = simulate_shot(config, seed=300, pulses=paper_measurement_pulses("y"), exposures=bad)
    assert abs(count_atoms_plain(shot.frames, config, exposures)[1] - shot.truth.n2) > 100


def test_detection_noise_per_whole_picture_is_of_the_papers_order() -> None:
    n_shots = 60
    empty = np.array([count_atoms_plain(simulate_shot(CONFIG, seed=7000 + k, atoms_loaded=False).frames, CONFIG)
                      for k in range(n_shots)])
    mean, std = empty.mean(axis=0), empty.std(axis=0, ddof=1)
    assert np.all(np.abs(mean) < 4 * std / math.sqrt(n_shots))  # no offset from fringes or the probe envelope
    assert np.all((std > 4.0) & (std < 7.5))  # paper: 5.3 (|1>) and 5 (|2>) atoms; ~6.0 and ~5.9 here
    # more fringe jitter between the atom and reference exposures means more detection noise
    jittery = with_imaging(fringe_phase_jitter_rad=0.3)
    noisy = np.array([count_atoms_plain(simulate_shot(jittery, seed=7000 + k, atoms_loaded=False).frames, jittery)
                      for k in range(30)])
    assert np.all(noisy.std(axis=0, ddof=1) > 2 * std)


def test_imaging_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="sigma_eff_ratio"):
        ImagingConfig(sigma_eff_ratio=1.5)
    with pytest.raises(ValueError, match="detectivity"):
        ImagingConfig(detectivity=(1.0, 0.0))
    with pytest.raises(ValueError, match="frame_shape"):
        ImagingConfig(frame_shape=(4, 256))
    with pytest.raises(ValueError, match="pixel_size_um"):
        SimulationConfig(imaging=ImagingConfig(pixel_size_um=2.0))
    with pytest.raises(ValueError, match="shape"):
        count_atoms_plain(np.zeros((4, 256, 256), dtype=np.uint16), CONFIG)
