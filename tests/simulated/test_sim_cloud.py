"""Expanded-cloud geometry, position sampling and region counting (drivers/simulated/cloud.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from drivers.simulated.cloud import (CloudConfig, CloudGeometry, cloud_geometry, count_in_mask, count_in_masks_batched,
                                     pixel_probabilities, sample_positions)


def test_geometry_reproduces_the_paper_figures() -> None:
    config = CloudConfig()
    g2 = cloud_geometry(config, 2.2e-3)
    g1 = cloud_geometry(config, 3.7e-3)
    assert g2.half_width_px == pytest.approx((8.0, 9.6))
    assert g1.half_width_px[0] / g2.half_width_px[0] == pytest.approx(1.005)
    assert g1.half_width_px[1] / g2.half_width_px[1] == pytest.approx(1.26)
    assert (g1.half_width_px[1] - g2.half_width_px[1]) == pytest.approx(2.5, abs=0.05)  # "2.5 pixel" vertically
    assert (g1.centre_px[1] - g2.centre_px[1]) * 1.3 == pytest.approx(150.0)  # 150 um lower on the image
    assert g1.centre_px[0] == g2.centre_px[0]
    # ballistic: a later time of flight gives a bigger cloud further down
    g_late = cloud_geometry(config, 3.0e-3)
    assert g2.half_width_px[1] < g_late.half_width_px[1] < g1.half_width_px[1]
    assert g2.centre_px[1] < g_late.centre_px[1] < g1.centre_px[1]


@pytest.mark.parametrize("profile", ["thomas_fermi", "gaussian"])
def test_sampled_positions_have_the_cloud_moments(profile: str) -> None:
    geom = CloudGeometry(centre_px=(100.3, 60.7), half_width_px=(8.0, 12.0), profile=profile)
    pos = sample_positions(geom, 200_000, np.random.default_rng(5))
    assert pos.shape == (200_000, 2)
    se = np.array(geom.rms_px) / math.sqrt(pos.shape[0])
    np.testing.assert_allclose(pos.mean(axis=0), geom.centre_px, atol=5 * se.max())
    np.testing.assert_allclose(pos.std(axis=0), geom.rms_px, rtol=0.01)
    if profile == "thomas_fermi":
        rho2 = ((pos[:, 0] - 100.3) / 8.0) ** 2 + ((pos[:, 1] - 60.7) / 12.0) ** 2
        assert rho2.max() <= 1.0
        # projected Thomas-Fermi: P(rho < r) = 1 - (1 - r^2)^(5/2)
        assert np.mean(rho2 < 0.25) == pytest.approx(1 - 0.75**2.5, abs=0.005)


@pytest.mark.parametrize("profile", ["thomas_fermi", "gaussian"])
def test_pixel_probabilities_match_sampled_histogram(profile: str) -> None:
    geom = CloudGeometry(centre_px=(30.2, 25.9), half_width_px=(8.0, 9.6), profile=profile)
    shape = (60, 64)
    probs = pixel_probabilities(geom, shape, oversample=16)
    assert probs.sum() == pytest.approx(1.0, abs=2e-3)
    n = 400_000
    pos = sample_positions(geom, n, np.random.default_rng(9))
    hist = np.zeros(shape)
    np.add.at(hist, (np.floor(pos[:, 1]).astype(int), np.floor(pos[:, 0]).astype(int)), 1)
    expected = probs * n
    busy = expected > 50
    z = (hist[busy] - expected[busy]) / np.sqrt(expected[busy])
    assert np.abs(z).max() < 5
    assert np.mean(z**2) == pytest.approx(1.0, abs=0.15)


def test_counting_in_masks() -> None:
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 3:6] = True  # rows 2..4, columns 3..5
    positions = np.array([[3.0, 2.0], [5.99, 4.99], [6.0, 3.0], [2.99, 3.0], [4.5, 5.0], [-1.0, 3.0], [4.0, 20.0]])
    assert count_in_mask(positions, mask) == 2
    masks = np.array([mask, ~mask])
    shot = np.array([0, 1, 1, 1, 1, 2, 2])
    counts = count_in_masks_batched(positions, shot, 4, masks)
    np.testing.assert_array_equal(counts, [[1, 0], [1, 3], [0, 0], [0, 0]])  # outside the frame counts nowhere


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="profile"):
        CloudConfig(profile="lorentzian")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="growth_at_delay"):
        CloudConfig(growth_at_delay=(0.9, 1.2))
    with pytest.raises(ValueError, match="too fast"):
        cloud_geometry(CloudConfig(growth_at_delay=(1.005, 3.0)), 2.2e-3)
    with pytest.raises(ValueError, match="> 0 s"):
        cloud_geometry(CloudConfig(), 0.0)
    with pytest.raises(ValueError, match="shape \\(n, 2\\)"):
        count_in_mask(np.zeros((3, 3)), np.ones((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="one entry per position"):
        count_in_masks_batched(np.zeros((3, 2)), np.zeros(2, dtype=int), 1, np.ones((1, 4, 4), dtype=bool))
