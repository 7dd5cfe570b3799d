"""Image analysis on virtual-lab shots: region counts vs the simulated truth, criteria vs truth.

Data: 300 shots per direction (x, y, z interleaved) of the default squeezed state and of a coherent
state, fixed seeds, plain (own) references. Regions: splitting-ratio scans along x and y with a
1 px gap (the virtual lab's cloud is ~16 x 19 px; a 3 px gap removes a third of its atoms and
leaves the true E_EPR at ~0.95, too close to 1 to test against), ROI 3 rms widths.
Truth counts: atoms whose (pre-imaging) position lies in each region's continuous area.
"""
from __future__ import annotations

import numpy as np
import pytest

from analysis.criteria import evaluate
from analysis.crosstalk import region_maps
from analysis.geometries import Split, splitting_ratio_scan
from analysis.pipeline import AtomImager, image_stack
from analysis.regions import RegionCounter, cloud_shape, default_roi_half_px
from drivers.simulated.imaging import recoil_variance_px2
from tests.analysis.virtual_lab_data import lab_calibration, lab_config, lab_shots, truth_counts

SHOTS_PER_DIRECTION = 300
SEEDS = {"squeezed": 61, "coherent": 62}
GAP_PX = 1.0
WINDOW = (0.25, 0.75)            # splitting ratios where both regions hold many atoms


def analyse(state: str):
    shots = lab_shots(state, SHOTS_PER_DIRECTION, SEEDS[state])
    images = image_stack(shots.frames, AtomImager(lab_calibration(lab_config(state))))
    m1, m2 = images.mean_images()
    clouds = {1: cloud_shape(m1), 2: cloud_shape(m2)}
    roi = default_roi_half_px(clouds[2], 3.0)
    geoms = (splitting_ratio_scan("x", roi[0], GAP_PX) + splitting_ratio_scan("y", roi[1], GAP_PX)
             + [Split("x", 0.0, 0.0), Split("y", 0.0, 0.0)])
    counter = RegionCounter(geoms, clouds, m1.shape, roi_half_px=roi)
    counts = counter.count(images.n1, images.n2)
    truth = truth_counts(counter, shots)
    ratios = counter.splitting_ratios(m1, m2)
    window = (ratios > WINDOW[0]) & (ratios < WINDOW[1])
    window[-2:] = False                                     # the two gapless splits: counts only
    return {"shots": shots, "counter": counter, "counts": counts, "truth": truth,
            "ratios": ratios, "window": window,
            "image": evaluate(shots.directions, counts.n1a, counts.n2a, counts.n1b, counts.n2b),
            "true": evaluate(shots.directions, *truth)}


@pytest.fixture(scope="module")
def lab():
    return {state: analyse(state) for state in ("squeezed", "coherent")}


@pytest.mark.parametrize("state", ["squeezed", "coherent"])
def test_total_atoms_per_state_match_the_truth(lab, state):
    d = lab[state]
    c, shots = d["counts"], d["shots"]
    g = -2                                                   # gapless split: A + B = whole ROI
    for n_img, n_true in ((c.n1a[:, g] + c.n1b[:, g], shots.n1),
                          (c.n2a[:, g] + c.n2b[:, g], shots.n2)):
        assert abs(n_img.mean() / n_true.mean() - 1) < 0.01
        assert (n_img - n_true).std() < 9.0                  # detection noise per whole ROI


def blurred_truth(d, state: int, g: int) -> tuple[np.ndarray, np.ndarray]:
    """Expected image counts (S,) in A and B: each atom's blurred signal weight in the region.

    Blur: optics PSF and the photon-recoil walk of the 50 us probe pulse (the virtual lab's
    imaging model), rms sqrt(psf^2 + recoil) per axis."""
    im = lab_config().imaging
    rec = recoil_variance_px2(im, im.probe_saturation, 50e-6)
    sigma = (float(np.hypot(im.psf_rms_px[0], np.sqrt(rec))),
             float(np.hypot(im.psf_rms_px[1], np.sqrt(rec))))
    counter, shots = d["counter"], d["shots"]
    maps = region_maps(counter, g, state, np.zeros(counter.image_shape), sigma)
    positions = shots.positions1 if state == 1 else shots.positions2
    idx = np.repeat(np.arange(len(positions)), [len(p) for p in positions])
    pos = np.concatenate(positions) - 0.5                    # virtual-lab -> analysis pixels
    wa, wb = maps.at(pos[:, 0], pos[:, 1])
    n = len(positions)
    return np.bincount(idx, wa, minlength=n), np.bincount(idx, wb, minlength=n)


@pytest.mark.parametrize("state", ["squeezed", "coherent"])
def test_region_counts_agree_with_the_true_positions(lab, state):
    d = lab[state]
    c, t = d["counts"], d["truth"]
    n_shots = len(d["shots"].directions)
    for g in list(np.nonzero(d["window"])[0]) + [-2, -1]:
        g = int(g) % d["counter"].n_geometries
        for s, (img_a, img_b, ka, kb) in ((1, (c.n1a, c.n1b, 0, 2)), (2, (c.n2a, c.n2b, 1, 3))):
            exp_a, exp_b = blurred_truth(d, s, g)
            for img, true, exp in ((img_a[:, g], t[ka, :, g], exp_a), (img_b[:, g], t[kb, :, g],
                                                                       exp_b)):
                resid = img - true
                # a few atoms rms: detection noise and atoms blurred across the edges
                assert resid.std() < 8.0, (g, s, resid.std())
                # the mean offset (up to ~6 atoms where the density has a slope at an edge) is
                # the blur of the true positions, to within 2 atoms
                off = resid - (exp - true)
                assert abs(off.mean()) < 3 * off.std() / np.sqrt(n_shots) + 2.0, (g, s, off.mean())
                assert abs(resid.mean()) < 8.0


@pytest.mark.parametrize("state", ["squeezed", "coherent"])
def test_criteria_from_images_agree_with_criteria_from_true_counts(lab, state):
    d = lab[state]
    win = d["window"]
    for q in ("E_Ent", "E_EPR_AB", "E_EPR_BA", "xi_R2"):
        img, true = d["image"][q], d["true"][q]
        z = ((img.value - true.value) / true.error)[win]
        assert np.all(np.abs(z) < 3.5), (q, z)
        assert -2.0 < z.mean() < 2.5, (q, z.mean())


def test_squeezed_state_shows_epr_steering_at_the_best_split(lab):
    d = lab["squeezed"]
    win = d["window"]
    for res in (d["image"], d["true"]):
        best = min(res["E_EPR_AB"].value[win].min(), res["E_EPR_BA"].value[win].min())
        assert best < 1.0
        assert res["E_Ent"].value[win].min() < 0.8
        assert res["xi_R2_dB"].value[0] < -2.0


def test_coherent_state_is_not_below_one_beyond_errors(lab):
    sq, coh = lab["squeezed"], lab["coherent"]
    win = coh["window"]
    n_win = int(win.sum())
    for q in ("E_Ent", "E_EPR_AB", "E_EPR_BA"):
        # at the geometry where the squeezed data violate most (chosen on independent data)
        g = np.nonzero(win)[0][np.argmin(sq["image"][q].value[win])]
        assert coh["image"][q].p_value()[g] > 0.01, (q, coh["image"].to_dict(int(g))[q])
        # anywhere in the scan, allowing for the number of geometries looked at (Bonferroni)
        assert coh["image"][q].p_value()[win].min() * n_win > 0.05, q
