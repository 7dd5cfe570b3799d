"""Frames -> images -> counts -> criteria: the imager, the image stack and the live monitor against
a batch analysis."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.criteria import evaluate
from analysis.detection_noise import region_detection_noise
from analysis.geometries import Split, splitting_ratio_scan
from analysis.imaging import shot_atom_images
from analysis.pipeline import AtomImager, fit_mask_around_clouds, image_stack
from analysis.regions import RegionCounter, cloud_shape
from tests.analysis.virtual_lab_data import (atom_free_frames, lab_calibration, lab_config,
                                             lab_shots)

CAL = lab_calibration(lab_config())


@pytest.fixture(scope="module")
def shots():
    return lab_shots("squeezed", 12, seed=5)


def test_plain_imager_matches_the_image_functions(shots):
    stack = image_stack(shots.frames[:4], AtomImager(CAL))
    assert stack.n1.shape == (4,) + shots.frames.shape[2:]
    assert stack.bad_pixels_1.tolist() == [0, 0, 0, 0]
    for k in range(4):
        one = shot_atom_images(shots.frames[k], CAL)
        np.testing.assert_array_equal(stack.n1[k], one.n1.atoms)
        np.testing.assert_array_equal(stack.n2[k], one.n2.atoms)
    with pytest.raises(ValueError, match="no shots"):
        image_stack([], AtomImager(CAL))


def test_optimal_reference_imager_needs_a_fit_mask():
    with pytest.raises(ValueError, match="fit_mask"):
        AtomImager(CAL, basis_frames=10)


def test_optimal_references_lower_the_detection_noise_of_virtual_lab_images(shots):
    """Atom-free virtual-lab shots (probe fringes, photon and read noise) through both imagers."""
    plain = image_stack(shots.frames, AtomImager(CAL))
    m1, m2 = plain.mean_images()
    clouds = {1: cloud_shape(m1), 2: cloud_shape(m2)}
    counter = RegionCounter([Split("x", 0.0, 1.0), Split("y", 0.0, 1.0)], clouds, m1.shape,
                            roi_sigmas=3.0)
    frames = atom_free_frames(260, seed=8)
    k = 150
    fit = fit_mask_around_clouds(m1.shape, clouds.values(), 4.0)
    opt = image_stack(frames, AtomImager(CAL, basis_frames=k, fit_mask=fit))
    own = image_stack(frames, AtomImager(CAL))
    # measure after the basis is full
    dn_opt = region_detection_noise(counter, opt.n1[k // 2:], opt.n2[k // 2:])
    dn_own = region_detection_noise(counter, own.n1[k // 2:], own.n2[k // 2:])
    assert np.all(dn_opt.var_a < 0.85 * dn_own.var_a), (dn_opt.var_a, dn_own.var_a)
    assert np.all(dn_opt.var_b < 0.85 * dn_own.var_b), (dn_opt.var_b, dn_own.var_b)
    assert np.all(dn_opt.rms_atoms_2 < dn_own.rms_atoms_2)
    # no atoms, no signal: the optimal reference is not biased
    assert abs(opt.n2[k // 2:].sum(axis=(1, 2)).mean()) < 3 * dn_opt.rms_atoms_2.max()


def test_the_live_monitor_equals_the_batch_analysis(shots):
    """The run's one streaming monitor (analysis.monitor.RunMonitor) against a batch analysis of the
    same shots with the same masks (centred on the warm-up's mean images): identical raw criteria."""
    from analysis.monitor import RegionPlan, RunMonitor
    from conventions.frames import FRAME_NAMES

    live = RunMonitor(CAL, RegionPlan(Split("x", 0.0, 1.0), 1.0, ()), warmup_shots=9, roi_sigmas=3.0,
                      detection_noise=False)
    for i, (d, f) in enumerate(zip(shots.directions, shots.frames)):
        live.add(i, str(d), dict(zip(FRAME_NAMES, f)))
    snap = live.snapshot()
    stack = image_stack(shots.frames, AtomImager(CAL))
    m1, m2 = stack.n1[:9].mean(axis=0), stack.n2[:9].mean(axis=0)
    clouds = {1: cloud_shape(m1), 2: cloud_shape(m2)}
    roi = (3.0 * clouds[2].sigma_x_px, 3.0 * clouds[2].sigma_y_px)
    geoms = [Split("x", 0.0, 1.0)] + list(splitting_ratio_scan("x", roi[0], 1.0))
    # the chosen split and the ratio scan (the monitor also counts the whole cloud)
    idx = np.concatenate([snap.indices("chosen"), snap.indices("ratio_scan")])
    assert [snap.geometries[i].name for i in idx] == [g.name for g in geoms]
    c = RegionCounter(geoms, clouds, m1.shape, roi_half_px=roi).count(stack.n1, stack.n2)
    batch = evaluate(shots.directions, c.n1a, c.n2a, c.n1b, c.n2b)
    assert snap.result is not None
    for q in ("E_Ent", "E_EPR_AB", "xi_R2"):
        np.testing.assert_allclose(snap.result[q].value[idx], batch[q].value, rtol=1e-9)
        np.testing.assert_allclose(snap.result[q].error[idx], batch[q].error, rtol=1e-9)


def test_the_live_monitor_rejects_bad_input(shots):
    from analysis.monitor import RegionPlan, RunMonitor
    from conventions.frames import FRAME_NAMES

    live = RunMonitor(CAL, RegionPlan(), warmup_shots=3)
    with pytest.raises(ValueError, match="direction"):
        live.add(0, "w", dict(zip(FRAME_NAMES, shots.frames[0])))
    with pytest.raises(ValueError, match="warmup_shots"):
        RunMonitor(CAL, RegionPlan(), warmup_shots=0)
