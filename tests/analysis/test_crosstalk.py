"""Crosstalk N_AB against numerical integrals, and the coherent-state E_EPR bound."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import erf, ndtr

from analysis.crosstalk import (coherent_epr_bound, detection_probability, n_ab_profile,
                                partition_terms, region_crosstalk)
from analysis.geometries import Checkerboard, Split, gap_width_scan
from analysis.regions import CloudShape, RegionCounter, interval_weights
from tests.analysis.test_regions import CLOUD1, CLOUD2, H, W, gaussian_image

SIGMA = 1.4


def det_a(x, x_a):
    return 0.5 * (1 + erf((x_a - x) / (np.sqrt(2) * SIGMA)))


def det_b(x, x_b):
    return 0.5 * (1 + erf((x - x_b) / (np.sqrt(2) * SIGMA)))


def test_detection_probability_is_the_erf_of_physics_md():
    x = np.linspace(-5, 5, 41)
    np.testing.assert_allclose(detection_probability(x, 0.7, SIGMA, "low"), det_a(x, 0.7),
                               atol=1e-14)
    np.testing.assert_allclose(detection_probability(x, -0.2, SIGMA, "high"), det_b(x, -0.2),
                               atol=1e-14)
    assert detection_probability(np.array([0.0, 1.0]), 0.5, 0.0, "low").tolist() == [1.0, 0.0]


@pytest.mark.parametrize("x_a, x_b", [(9.5, 12.5), (4.5, 5.5), (14.0, 20.0)])
def test_piecewise_constant_density_matches_the_integral_exactly(x_a, x_b):
    rng = np.random.default_rng(0)
    profile = rng.uniform(0, 10, 30)                       # atoms per pixel, pixels centred 0..29

    def density(x):
        k = int(np.floor(x + 0.5))
        return profile[k] if 0 <= k < profile.size else 0.0

    edges = np.arange(-0.5, 30.0, 1.0)
    total = sum(quad(lambda x: density(x) * det_a(x, x_a) * det_b(x, x_b), lo, lo + 1,
                     epsabs=1e-13)[0] for lo in edges)
    assert n_ab_profile(profile, x_a, x_b, SIGMA) == pytest.approx(total, rel=1e-9)


def test_gaussian_cloud_matches_the_continuous_integral():
    n_atoms, c, s = 530.0, 20.3, 3.5

    def n(x):
        return n_atoms * np.exp(-0.5 * ((x - c) / s) ** 2) / (np.sqrt(2 * np.pi) * s)

    edges = np.arange(41) - 0.5
    profile = n_atoms * np.diff(ndtr((edges - c) / s))       # atoms in each pixel
    for x_a, x_b in ((18.5, 21.5), (20.5, 21.5), (23.5, 26.5)):
        exact = quad(lambda x: n(x) * det_a(x, x_a) * det_b(x, x_b), c - 12 * s, c + 12 * s,
                     points=[x_a, x_b], epsabs=1e-12, limit=200)[0]
        # pixels hold the cloud as a piecewise-constant density: within 1 % of the smooth cloud
        assert n_ab_profile(profile, x_a, x_b, SIGMA) == pytest.approx(exact, rel=1e-2)


def test_mirrored_split_gives_the_same_crosstalk():
    prof = np.random.default_rng(1).uniform(0, 5, 25)
    a = n_ab_profile(prof, 10.5, 13.5, SIGMA, a_side="low")
    b = n_ab_profile(prof, 13.5, 10.5, SIGMA, a_side="high")
    assert a == pytest.approx(b, rel=1e-12)


def test_region_crosstalk_for_splits_and_patterns():
    geoms = gap_width_scan("x", 0.0, [0, 1, 3, 6]) + [Split("y", 0.5, 3.0), Checkerboard(3.0)]
    counter = RegionCounter(geoms, {1: CLOUD1, 2: CLOUD2}, (H, W))
    m1, m2 = gaussian_image(CLOUD1), gaussian_image(CLOUD2)
    ct = region_crosstalk(counter, m1, m2, SIGMA)
    # wider gaps: fewer doubly detected atoms, bound closer to 1
    assert np.all(np.diff(ct.n_ab[:4]) < 0)
    assert np.all(np.diff(ct.epr_bound_ab[:4]) > 0)
    # an independent evaluation of one split: atoms drawn from each pixel's density, rendered
    # through the blur onto pixels and counted with the masks' weights (the real pipeline)
    rng = np.random.default_rng(11)
    mc, exact_edges = 0.0, 0.0
    for state, img in ((1, m1), (2, m2)):
        prof, start, (a0, a1, b0, b1) = counter.split_profile(2, state, img)
        assert a1 - a0 > 5 and b1 - b0 > 5 and b0 - a1 == pytest.approx(
            3.0 * counter.scale(state)[0])                     # the scaled 3 px gap
        exact_edges += n_ab_profile(prof, a1, b0, SIGMA, x0=start)
        per = 4000
        x = start + np.arange(prof.size)[:, None] + rng.random((prof.size, per)) - 0.5
        edges = start + np.arange(prof.size + 1) - 0.5
        land = np.diff(ndtr((edges - x[..., None]) / SIGMA), axis=-1)
        det = [land @ interval_weights(prof.size, lo, hi, start) for lo, hi in ((a0, a1), (b0, b1))]
        mc += float(prof @ (det[0] * det[1]).mean(axis=1))
    assert ct.n_ab[2] == pytest.approx(mc, rel=0.01)
    # pixels add their own smear to the blur: more shared atoms than with exact edges
    assert ct.n_ab[2] > 1.02 * exact_edges
    # the 2-D blurred-mask method agrees with the 1-D model on splits
    ct2 = region_crosstalk(counter, m1, m2, SIGMA, method="2d")
    np.testing.assert_allclose(ct2.n_ab[:5], ct.n_ab[:5], rtol=0.03, atol=0.01)
    # a checkerboard of 3 px cells has a huge crosstalk: no EPR claim is safe with it
    assert ct.n_ab[5] > 50 and ct.epr_bound_ab[5] < 0.9
    n = ct.n_a + ct.n_b
    np.testing.assert_allclose(ct.epr_bound_ab, coherent_epr_bound(ct.n_ab, n, ct.n_b))
    np.testing.assert_allclose(ct.epr_bound_ba, coherent_epr_bound(ct.n_ab, n, ct.n_a))


def test_no_blur_means_no_crosstalk_with_a_gap():
    counter = RegionCounter([Split("x", 0.0, 1.0)], {1: CLOUD1, 2: CLOUD2}, (H, W))
    ct = region_crosstalk(counter, gaussian_image(CLOUD1), gaussian_image(CLOUD2), 0.0)
    assert ct.n_ab[0] == 0.0 and ct.epr_bound_ab[0] == 1.0


def test_paper_scale_crosstalk_is_a_few_atoms():
    # 530 atoms, sigma ~3-4 px, 3 px gap, sigma_blur 1.4 px: N_AB of a few atoms (paper: < 4)
    c2 = CloudShape(34.3, 25.6, 3.0, 3.6, 265.0)
    c1 = CloudShape(34.3, 61.2, 3.02, 4.5, 265.0)
    geoms = [Split("x", p, 3.0) for p in np.arange(-6.0, 7.0)]
    counter = RegionCounter(geoms, {1: c1, 2: c2}, (H, W))
    ct = region_crosstalk(counter, gaussian_image(c1), gaussian_image(c2), SIGMA)
    assert 0.5 < ct.n_ab.max() < 8
    assert np.nanmin(ct.epr_bound_ab) > 0.99


def test_coherent_bound_formula_and_errors():
    assert coherent_epr_bound(4.0, 530.0, 265.0) == pytest.approx(1 - 32 / 265.0**2)
    with pytest.raises(ValueError, match="0 < N_B < N"):
        coherent_epr_bound(1.0, 10.0, 10.0)
    counter = RegionCounter([Split()], {1: CLOUD1, 2: CLOUD2}, (H, W))
    with pytest.raises(ValueError, match="method"):
        region_crosstalk(counter, np.zeros((H, W)), np.zeros((H, W)), 1.0, method="fast")
    with pytest.raises(ValueError, match="sigma_blur_px"):
        region_crosstalk(counter, np.zeros((H, W)), np.zeros((H, W)), -1.0)


def _pixel_weights(counter: RegionCounter, state: int, x: np.ndarray, y: np.ndarray,
                   psf: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """What atoms at (x, y) add to the counts of A and B through the real pipeline: each atom's
    PSF integrated over every pixel (the camera), times the counter's mask weight of the pixel."""
    ex, ey = np.arange(W + 1) - 0.5, np.arange(H + 1) - 0.5
    out = []
    for mask in counter.weights(0, state):
        i, j = np.unravel_index(np.argmax(mask), mask.shape)
        u, v = mask[:, j], mask[i, :] / mask[i, j]            # a split's mask is rank one
        np.testing.assert_allclose(np.outer(u, v), mask, atol=1e-12)
        px = np.diff(ndtr((ex[None, :] - x.ravel()[:, None]) / psf[0]), axis=1) @ v
        py = np.diff(ndtr((ey[None, :] - y.ravel()[:, None]) / psf[1]), axis=1) @ u
        out.append((px * py).reshape(x.shape))
    return out[0], out[1]


@pytest.mark.parametrize("position", [0.4, 0.55])
def test_partition_terms_match_a_monte_carlo_of_blurred_atoms(position: float) -> None:
    """Atoms at random positions, each rendered through the PSF onto pixels and counted with the
    masks' pixel weights (fractional at the edges): D_R = sum w(1 - w) and W_AB = sum w_A w_B from
    partition_terms agree with the Monte-Carlo sums within 2 %, and Var(S^R) of the weighted
    counts is D_R/4 below that of whole-atom counts. (Region edges taken as exact lines, as
    before, missed the pixels' own share: D and W_AB 6-8 % low.)"""
    rng = np.random.default_rng(7)
    c2 = CloudShape(34.3, 25.6, 4.0, 4.8, 265.0)
    c1 = CloudShape(34.3, 61.2, 4.0, 4.8, 265.0)
    psf = (1.2, 1.3)
    geom = Split("x", position, 1.0)
    counter = RegionCounter([geom], {1: c1, 2: c2}, (H, W))
    # the true (unblurred) density: atoms per pixel of a Gaussian cloud
    ex, ey = np.arange(W + 1) - 0.5, np.arange(H + 1) - 0.5
    dens = {s: c.atoms * np.outer(np.diff(ndtr((ey - c.centre_y_px) / c.sigma_y_px)),
                                  np.diff(ndtr((ex - c.centre_x_px) / c.sigma_x_px)))
            for s, c in ((1, c1), (2, c2))}
    pt = partition_terms(counter, dens[1], dens[2], psf)
    shots, n = 2000, 265
    sums = np.zeros(3)
    s_img, s_bin = np.zeros(shots), np.zeros(shots)
    for state, c in ((1, c1), (2, c2)):
        x = rng.normal(c.centre_x_px, c.sigma_x_px, (shots, n))
        y = rng.normal(c.centre_y_px, c.sigma_y_px, (shots, n))
        wa, wb = _pixel_weights(counter, state, x, y, psf)
        sums += [(wa * (1 - wa)).sum(), (wb * (1 - wb)).sum(), (wa * wb).sum()]
        spin = rng.choice([-0.5, 0.5], (shots, n))          # a coherent state along x
        s_img += (spin * wb).sum(axis=1)                   # region B, weighted atoms
        s_bin += (spin * (rng.random((shots, n)) < wb)).sum(axis=1)   # whole atoms, P = w
    mc = sums / shots
    np.testing.assert_allclose([pt.d_a[0], pt.d_b[0], pt.w_ab[0]], mc, rtol=0.02)
    deficit = s_bin.var(ddof=1) - s_img.var(ddof=1)
    # paired samples (same atoms and spins): the error is dominated by 2 Cov(S_img, S_bin - S_img)
    sd = 2 * np.sqrt(s_img.var() * pt.d_b[0] / 4 / shots) + pt.d_b[0] / 4 * np.sqrt(2 / shots)
    assert abs(deficit - pt.d_b[0] / 4) < 3 * sd, (deficit, pt.d_b[0] / 4, sd)
    assert pt.d_b[0] / 4 > 5                                 # a large effect: several hbar^2
