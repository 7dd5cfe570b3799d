"""Region masks and counts: exact agreement with the straightforward (img * mask).sum() loop."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.geometries import (Checkerboard, GeometryError, RandomCells, Split, Stripes,
                                 UserPattern, gap_width_scan, split_positions,
                                 splitting_ratio_scan)
from analysis.regions import CloudShape, RegionCounter, RegionError, cloud_shape

H, W = 90, 70
Y, X = np.mgrid[:H, :W].astype(float)
CLOUD2 = CloudShape(34.3, 25.6, 4.0, 4.8, 265.0)
CLOUD1 = CloudShape(34.1, 61.2, 4.02, 6.05, 265.0)  # lower and ~26 % taller, like |1>


def gaussian_image(c: CloudShape) -> np.ndarray:
    g = np.exp(-0.5 * ((X - c.centre_x_px) / c.sigma_x_px) ** 2
               - 0.5 * ((Y - c.centre_y_px) / c.sigma_y_px) ** 2)
    return c.atoms * g / g.sum()


def mixed_geometries():
    pattern = np.array([[0, 1, -1], [1, 0, 1], [0, 0, 1], [-1, 1, 0]])
    return ([Split("x", p, 3.0) for p in (-4.5, -2.0, 0.0, 0.3, 3.7)]
            + [Split("y", p, w, side) for p, w, side in ((0.0, 3.0, "low"), (1.5, 0.0, "high"),
                                                         (-2.2, 5.5, "low"))]
            + [Split("x", 0.6, 2.0, "high"), Stripes("x", 4.0), Stripes("y", 5.0, 1.0),
               Checkerboard(3.0), RandomCells(2.0, seed=7, fraction_a=0.3),
               UserPattern(pattern, cell_px=4.0)])


@pytest.fixture
def counter():
    return RegionCounter(mixed_geometries(), {1: CLOUD1, 2: CLOUD2}, (H, W))


def loop_counts(counter, im1, im2):
    """The straightforward reference: (img * mask).sum() per mask per shot."""
    out = np.zeros((4, im1.shape[0], counter.n_geometries))
    for g in range(counter.n_geometries):
        a1, b1 = counter.masks(g, 1)
        a2, b2 = counter.masks(g, 2)
        for s in range(im1.shape[0]):
            out[:, s, g] = [(im1[s] * a1).sum(), (im2[s] * a2).sum(), (im1[s] * b1).sum(),
                            (im2[s] * b2).sum()]
    return out


def test_counts_equal_the_mask_loop_exactly_on_integer_images(counter):
    rng = np.random.default_rng(0)
    im1 = rng.integers(-5, 40, (6, H, W)).astype(float)
    im2 = rng.integers(-5, 40, (6, H, W)).astype(float)
    c = counter.count(im1, im2)
    ref = loop_counts(counter, im1, im2)
    for k, arr in enumerate((c.n1a, c.n2a, c.n1b, c.n2b)):
        np.testing.assert_array_equal(arr, ref[k])


def test_counts_match_the_mask_loop_on_float_images(counter):
    rng = np.random.default_rng(1)
    im1 = gaussian_image(CLOUD1) + 0.05 * rng.standard_normal((4, H, W))
    im2 = gaussian_image(CLOUD2) + 0.05 * rng.standard_normal((4, H, W))
    c = counter.count(im1, im2)
    ref = loop_counts(counter, im1, im2)
    for k, arr in enumerate((c.n1a, c.n2a, c.n1b, c.n2b)):
        np.testing.assert_allclose(arr, ref[k], rtol=0, atol=1e-10)
    single = counter.count(im1[2], im2[2])                  # one shot: shape (G,)
    assert single.n1a.shape == (counter.n_geometries,)
    np.testing.assert_allclose(single.n2b, c.n2b[2], atol=1e-10)


def test_masks_of_state_1_follow_the_lower_larger_cloud(counter):
    g = 5                                                   # Split y at 0 with a 3 px gap
    for state, cloud in ((1, CLOUD1), (2, CLOUD2)):
        a, b = counter.masks(g, state)
        ky = cloud.sigma_y_px / CLOUD2.sigma_y_px
        rows_a = np.nonzero(a.any(axis=1))[0]
        rows_b = np.nonzero(b.any(axis=1))[0]
        gap_rows = rows_b[0] - rows_a[-1] - 1
        # the gap is centred on the state's own cloud and scaled with its vertical size
        assert rows_a[-1] < cloud.centre_y_px < rows_b[0]
        assert abs(gap_rows - 3 * ky) <= 1
        # the ROI (3.5 rms of the |2> cloud) scales too
        assert abs((rows_b[-1] - rows_a[0] + 1) - 2 * 3.5 * CLOUD2.sigma_y_px * ky) <= 2
    assert counter.scale(1)[1] == pytest.approx(6.05 / 4.8)
    unscaled = RegionCounter(mixed_geometries(), {1: CLOUD1, 2: CLOUD2}, (H, W),
                             scale_with_cloud=False)
    assert unscaled.scale(1) == (1.0, 1.0)


@pytest.mark.parametrize("gap", [1, 2, 3, 4, 7])
def test_integer_gap_removes_exactly_that_many_columns(gap):
    rng = np.random.default_rng(gap)
    for pos in rng.uniform(-5, 5, 10):
        counter = RegionCounter([Split("x", pos, gap)], {1: CLOUD1, 2: CLOUD2}, (H, W))
        lab = counter.labels(0, 2)
        row = lab[int(CLOUD2.centre_y_px)]
        assert np.count_nonzero(row == -1) - np.count_nonzero(
            np.abs((np.arange(W) - CLOUD2.centre_x_px)) > counter.roi_half_px[0]) == gap


def test_splitting_ratio_scan_is_monotonic_and_spans_the_cloud():
    geoms = splitting_ratio_scan("y", 3.5 * CLOUD2.sigma_y_px, gap_px=3.0)
    counter = RegionCounter(geoms, {1: CLOUD1, 2: CLOUD2}, (H, W))
    ratios = counter.splitting_ratios(gaussian_image(CLOUD1), gaussian_image(CLOUD2))
    assert np.all(np.diff(ratios) > 0)
    assert ratios[0] < 0.01 and ratios[-1] > 0.99
    mid = np.argmin(np.abs(ratios - 0.5))
    assert abs(geoms[mid].position_px) <= 1.0              # symmetric clouds split in the middle
    np.testing.assert_array_equal(split_positions(10.0, 3.0), np.arange(-7.0, 8.0))


def test_gap_width_scan_reduces_both_regions():
    geoms = gap_width_scan("x", 1.0, [0, 1, 3, 5, 9])
    counter = RegionCounter(geoms, {1: CLOUD1, 2: CLOUD2}, (H, W))
    c = counter.count(gaussian_image(CLOUD1), gaussian_image(CLOUD2))
    assert np.all(np.diff(c.n_a) <= 0) and np.all(np.diff(c.n_b) <= 0)
    assert np.all(np.diff(c.n_a + c.n_b) < 0)
    assert c.n_a[0] + c.n_b[0] == pytest.approx(2 * 265.0, rel=2e-3)   # no gap: all atoms


def test_patterns_report_their_splitting_ratio(counter):
    ratios = counter.splitting_ratios(gaussian_image(CLOUD1), gaussian_image(CLOUD2))
    names = counter.names
    assert ratios.shape == (len(names),)
    i_check = names.index("checkerboard 3 px")
    assert 0.4 < ratios[i_check] < 0.6
    i_rand = [i for i, n in enumerate(names) if n.startswith("random")][0]
    assert 0.15 < ratios[i_rand] < 0.45                      # fraction_a = 0.3
    assert np.all((ratios >= 0) & (ratios <= 1))


def test_cloud_shape_recovers_centre_and_width():
    rng = np.random.default_rng(3)
    img = gaussian_image(CLOUD1) + 0.002 * rng.standard_normal((H, W))
    c = cloud_shape(img)
    assert c.centre_x_px == pytest.approx(CLOUD1.centre_x_px, abs=0.05)
    assert c.centre_y_px == pytest.approx(CLOUD1.centre_y_px, abs=0.05)
    assert c.sigma_x_px == pytest.approx(CLOUD1.sigma_x_px, rel=0.02)
    assert c.sigma_y_px == pytest.approx(CLOUD1.sigma_y_px, rel=0.02)
    counter = RegionCounter.from_mean_images([Split()], gaussian_image(CLOUD1),
                                             gaussian_image(CLOUD2))
    assert counter.clouds[2].centre_y_px == pytest.approx(CLOUD2.centre_y_px, abs=1e-3)


def test_region_errors_name_the_problem():
    with pytest.raises(RegionError, match="no cloud"):
        cloud_shape(np.zeros((20, 20)))
    with pytest.raises(RegionError, match="outside"):
        RegionCounter([Split()], {1: CloudShape(500, 500, 3, 3, 1), 2: CLOUD2}, (H, W))
    with pytest.raises(RegionError, match="missing"):
        RegionCounter([Split()], {2: CLOUD2}, (H, W))
    with pytest.raises(RegionError, match="at least one"):
        RegionCounter([], {1: CLOUD1, 2: CLOUD2}, (H, W))
    with pytest.raises(RegionError, match="not a region geometry"):
        RegionCounter(["x"], {1: CLOUD1, 2: CLOUD2}, (H, W))  # type: ignore[list-item]
    counter = RegionCounter([Split()], {1: CLOUD1, 2: CLOUD2}, (H, W))
    with pytest.raises(RegionError, match="expected"):
        counter.count(np.zeros((H, W + 1)), np.zeros((H, W)))


@pytest.mark.parametrize("make, message", [
    (lambda: Split("z"), "axis must be 'x' or 'y'"),
    (lambda: Split("x", 0.0, -1.0), "gap_px must be >= 0"),
    (lambda: Split("x", float("nan")), "position_px must be finite"),
    (lambda: Split("x", a_side="left"), "a_side"),
    (lambda: Stripes("x", 0.0), "period_px must be > 0"),
    (lambda: Checkerboard(-2.0), "cell_px must be > 0"),
    (lambda: RandomCells(2.0, fraction_a=1.5), "fraction_a"),
    (lambda: UserPattern(np.array([[0, 2]])), "values must be 0"),
    (lambda: UserPattern(np.zeros(3)), "2-D"),
])
def test_geometry_validation(make, message):
    with pytest.raises(GeometryError, match=message):
        make()
