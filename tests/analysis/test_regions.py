"""Region masks and counts: exact agreement with the straightforward (img * mask).sum() loop."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.geometries import (Checkerboard, GeometryError, RandomCells, Split, Stripes,
                                 UserPattern, gap_width_scan, split_positions,
                                 splitting_ratio_scan)
from analysis.regions import (CloudError, CloudShape, RegionCounter, RegionError, cloud_shape,
                              interval_weights)

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


@pytest.fixture(params=[True, False], ids=["fractional", "binary"])
def counter(request):
    return RegionCounter(mixed_geometries(), {1: CLOUD1, 2: CLOUD2}, (H, W),
                         fractional=request.param)


def loop_counts(counter, im1, im2):
    """The straightforward reference: (img * mask).sum() per mask per shot."""
    out = np.zeros((4, im1.shape[0], counter.n_geometries))
    for g in range(counter.n_geometries):
        a1, b1 = counter.weights(g, 1)
        a2, b2 = counter.weights(g, 2)
        for s in range(im1.shape[0]):
            out[:, s, g] = [(im1[s] * a1).sum(), (im2[s] * a2).sum(), (im1[s] * b1).sum(),
                            (im2[s] * b2).sum()]
    return out


def test_binary_counts_equal_the_mask_loop_exactly_on_integer_images():
    counter = RegionCounter(mixed_geometries(), {1: CLOUD1, 2: CLOUD2}, (H, W), fractional=False)
    rng = np.random.default_rng(0)
    im1 = rng.integers(-5, 40, (6, H, W)).astype(float)
    im2 = rng.integers(-5, 40, (6, H, W)).astype(float)
    c = counter.count(im1, im2)
    ref = loop_counts(counter, im1, im2)
    for k, arr in enumerate((c.n1a, c.n2a, c.n1b, c.n2b)):
        np.testing.assert_array_equal(arr, ref[k])
    for g in range(counter.n_geometries):                   # binary: weights are 0 or 1
        for state in (1, 2):
            for w in counter.weights(g, state):
                assert set(np.unique(w)) <= {0.0, 1.0}


def test_binary_masks_are_the_labels_at_pixel_centres():
    counter = RegionCounter(mixed_geometries(), {1: CLOUD1, 2: CLOUD2}, (H, W), fractional=False)
    for g in range(counter.n_geometries):
        for state in (1, 2):
            lab = counter.point_labels(g, state, X, Y)
            wa, wb = counter.weights(g, state)
            np.testing.assert_array_equal(wa == 1, lab == 0)
            np.testing.assert_array_equal(wb == 1, lab == 1)


def test_fractional_weights_are_pixel_area_fractions():
    counter = RegionCounter(mixed_geometries(), {1: CLOUD1, 2: CLOUD2}, (H, W))
    xs = np.arange(-0.5 + 1 / 32, W - 0.5, 1 / 16)            # 16 x 16 sub-samples per pixel
    ys = np.arange(-0.5 + 1 / 32, H - 0.5, 1 / 16)
    for g in (0, 5, 6, 7, 8):                                 # splits along x and y, both sides
        for state in (1, 2):
            lab = counter.point_labels(g, state, xs[None, :], ys[:, None])
            area_a = (lab == 0).reshape(H, 16, W, 16).mean(axis=(1, 3))
            wa, _ = counter.weights(g, state)
            np.testing.assert_allclose(wa, area_a, atol=1 / 16 + 1e-9)
    assert interval_weights(4, 0.25, 2.0).tolist() == [0.25, 1.0, 0.5, 0.0]


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
    tol = 1e-9 if counter.fractional else 1.0
    for state, cloud in ((1, CLOUD1), (2, CLOUD2)):
        a, b = counter.weights(g, state)
        ky = cloud.sigma_y_px / CLOUD2.sigma_y_px
        col = int(round(cloud.centre_x_px))
        a_col, b_col = a[:, col], b[:, col]
        # A above, B below, and the gap centred on the state's own cloud
        rows = np.arange(H)
        a_end = rows[a_col > 0][-1]
        b_start = rows[b_col > 0][0]
        assert a_end < cloud.centre_y_px < b_start
        # gap and ROI scale with the cloud's vertical size
        covered = a_col.sum() + b_col.sum()
        assert abs(covered - (2 * 3.5 * CLOUD2.sigma_y_px - 3.0) * ky) <= 2 * tol
        gap = (b_start - a_end - 1) + (1 - a_col[a_end]) + (1 - b_col[b_start])
        assert abs(gap - 3.0 * ky) <= tol
    assert counter.scale(1)[1] == pytest.approx(6.05 / 4.8)
    unscaled = RegionCounter(mixed_geometries(), {1: CLOUD1, 2: CLOUD2}, (H, W),
                             scale_with_cloud=False)
    assert unscaled.scale(1) == (1.0, 1.0)


def test_fractional_masks_cut_both_clouds_at_the_same_fraction():
    """Self-similar clouds: each region holds the same fraction of |1> and of |2> atoms; binary
    masks miss this by up to half a pixel of atoms."""
    geoms = [Split(ax, p, 3.0) for ax in ("x", "y") for p in np.linspace(-5, 5, 21)]
    frac = RegionCounter(geoms, {1: CLOUD1, 2: CLOUD2}, (H, W))
    binary = RegionCounter(geoms, {1: CLOUD1, 2: CLOUD2}, (H, W), fractional=False)
    m1, m2 = gaussian_image(CLOUD1), gaussian_image(CLOUD2)
    for counter, tol in ((frac, 0.003), (binary, None)):
        c = counter.count(m1, m2)
        d = np.abs(c.n1a / CLOUD1.atoms - c.n2a / CLOUD2.atoms)
        if tol is None:
            assert d.max() > 0.02                           # binary: a few % mismatch
        else:
            assert d.max() < tol


@pytest.mark.parametrize("gap", [1, 2, 3, 4, 7])
def test_integer_gap_removes_exactly_that_many_columns(gap):
    rng = np.random.default_rng(gap)
    for pos in rng.uniform(-5, 5, 10):
        for fractional in (True, False):
            counter = RegionCounter([Split("x", pos, gap)], {1: CLOUD1, 2: CLOUD2}, (H, W),
                                    fractional=fractional)
            wa, wb = counter.weights(0, 2)
            row = int(CLOUD2.centre_y_px)
            width = 2 * counter.roi_half_px[0]
            covered = wa[row].sum() + wb[row].sum()
            assert abs(width - covered - gap) <= (1e-9 if fractional else 1)
            if not fractional:
                inside = np.nonzero((wa[row] + wb[row]) > 0)[0]
                span = inside[-1] - inside[0] + 1
                assert span - covered == gap                  # exactly `gap` columns removed


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
    with pytest.raises(CloudError, match="no cloud"):
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
