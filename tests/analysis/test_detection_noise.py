"""Per-geometry detection noise of the regions' spin components from atom-free images."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.criteria import DetectionNoise
from analysis.detection_noise import region_detection_noise
from analysis.geometries import Checkerboard, Split
from analysis.regions import RegionCounter
from tests.analysis.test_regions import CLOUD1, CLOUD2, H, W


def test_white_pixel_noise_gives_the_expected_region_variances():
    rng = np.random.default_rng(0)
    s1, s2 = 0.30, 0.20                                      # atoms rms per pixel, per state
    f = 1500
    counter = RegionCounter([Split("x", 0.0, 3.0), Split("y", 2.0, 1.0), Checkerboard(2.0)],
                            {1: CLOUD1, 2: CLOUD2}, (H, W))
    n1 = s1 * rng.standard_normal((f, H, W))
    n2 = s2 * rng.standard_normal((f, H, W))
    dn = region_detection_noise(counter, n1, n2)
    assert dn.n_frames == f
    for g in range(counter.n_geometries):
        # white noise: a region's variance is sigma^2 times the sum of its squared weights
        pa1, pb1 = ((w * w).sum() for w in counter.weights(g, 1))
        pa2, pb2 = ((w * w).sum() for w in counter.weights(g, 2))
        var_a = (pa1 * s1**2 + pa2 * s2**2) / 4              # Var((N1A - N2A)/2)
        var_b = (pb1 * s1**2 + pb2 * s2**2) / 4
        tol = 4 * np.sqrt(2 / (f - 1))                        # relative sd of a variance
        assert dn.var_a[g] == pytest.approx(var_a, rel=tol)
        assert dn.var_b[g] == pytest.approx(var_b, rel=tol)
        # pixels shared by A and B (fractional weights) carry common noise
        wa1, wb1 = counter.weights(g, 1)
        wa2, wb2 = counter.weights(g, 2)
        cov = ((wa1 * wb1).sum() * s1**2 + (wa2 * wb2).sum() * s2**2) / 4
        assert abs(dn.cov_ab[g] - cov) < 4 * np.sqrt(var_a * var_b / f)
        assert dn.rms_atoms_1[g] == pytest.approx(np.sqrt(((wa1 + wb1) ** 2).sum()) * s1, rel=tol)
        DetectionNoise(**dn.for_geometry(g))                 # feeds the criteria engine


def test_correlated_noise_gives_a_covariance():
    rng = np.random.default_rng(1)
    counter = RegionCounter([Split("x", 0.0, 0.0)], {1: CLOUD1, 2: CLOUD2}, (H, W))
    common = rng.standard_normal((2000, 1, 1)) * 0.05         # a uniform offset per frame
    n1 = common + 0.1 * rng.standard_normal((2000, H, W))
    dn = region_detection_noise(counter, n1, np.zeros_like(n1))
    a1, b1 = (w.sum() for w in counter.weights(0, 1))
    assert dn.cov_ab[0] == pytest.approx(a1 * b1 * 0.05**2 / 4, rel=0.15)


def test_errors():
    counter = RegionCounter([Split()], {1: CLOUD1, 2: CLOUD2}, (H, W))
    with pytest.raises(ValueError, match="at least 2"):
        region_detection_noise(counter, np.zeros((1, H, W)), np.zeros((1, H, W)))
    with pytest.raises(ValueError, match="stacks"):
        region_detection_noise(counter, np.zeros((H, W)), np.zeros((H, W)))
