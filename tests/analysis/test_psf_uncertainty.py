"""The PSF's and the blur's calibration uncertainties in the corrected criteria and the guard.

The partition terms (analysis.crosstalk.partition_terms) depend on the calibrated PSF; its
standard errors enter the corrected errors by linear propagation (analysis.crosstalk.imaging_terms).
Checked: the propagated covariance against the scatter of the correction over PSFs drawn from the
calibration's uncertainty; corrected-error coverage over 100 count-level data sets whose correction
carries a calibration error drawn that way; the monitor and the offline engine use it; the guard
assumes a blur one standard error wider.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from analysis.criteria import DetectionNoise, evaluate
from analysis.crosstalk import guard_blur_px, imaging_crosstalk_bounds, imaging_terms
from analysis.geometries import Checkerboard, Split
from analysis.imaging import CalibrationError, ImagingCalibration, ImagingUncertainty
from analysis.regions import RegionCounter
from tests.analysis.spin_model import coherent, sample
from tests.analysis.test_regions import CLOUD1, CLOUD2, H, W, gaussian_image

CAL = ImagingCalibration.paper_defaults()
UNC = ImagingUncertainty(psf_sigma_x_px=0.15, psf_sigma_y_px=0.1, sigma_blur_px=0.1)
GEOMS = [Split("x", 0.0, 3.0), Split("y", 1.0, 3.0), Checkerboard(4.0)]


def _setup():
    counter = RegionCounter(GEOMS, {1: CLOUD1, 2: CLOUD2}, (H, W), roi_half_px=(14.0, 17.0))
    return counter, gaussian_image(CLOUD1), gaussian_image(CLOUD2)


def test_the_propagated_covariance_matches_the_scatter_over_drawn_psfs() -> None:
    counter, m1, m2 = _setup()
    terms = imaging_terms(counter, m1, m2, CAL, UNC)
    assert terms.covariance is not None and terms.covariance.shape == (3, 3, 3)
    exact = imaging_terms(counter, m1, m2, CAL)
    assert exact.covariance is None
    np.testing.assert_array_equal(terms.partition.d_a, exact.partition.d_a)   # values unchanged
    rng = np.random.default_rng(3)
    draws = []
    for _ in range(200):
        cal = dataclasses.replace(CAL, psf_sigma_x_px=CAL.psf_sigma_x_px + rng.normal(0, UNC.psf_sigma_x_px),
                                  psf_sigma_y_px=CAL.psf_sigma_y_px + rng.normal(0, UNC.psf_sigma_y_px))
        p = imaging_terms(counter, m1, m2, cal).partition
        draws.append(np.stack([-p.d_a / 4, -p.d_b / 4, p.w_ab / 4], axis=-1))
    d = np.array(draws)                                               # (draws, G, 3)
    for g in range(len(GEOMS)):
        mc = np.cov(d[:, g, :].T)
        # the variances to 25 % (200 draws: ~10 % sampling error, plus the curvature)
        np.testing.assert_allclose(np.diag(terms.covariance[g]), np.diag(mc), rtol=0.25)
        assert np.diag(mc).min() > 0                                  # the PSF matters here


def test_corrected_errors_cover_the_scatter_when_the_correction_carries_a_calibration_error() -> None:
    """100 data sets; each is corrected with the true imaging terms plus an error drawn from the
    calibration's covariance (as a PSF drawn from its uncertainty would give), reported with it."""
    rng = np.random.default_rng(17)
    sets, shots = 100, 300
    d, n1a, n2a, n1b, n2b = sample(rng, coherent(200), shots, 0.5, datasets=sets)
    noise = 10.0                                                      # hbar^2 per region
    sd = 2 * np.sqrt(noise)
    n1a = n1a + rng.normal(0, sd, n1a.shape)
    n1b = n1b + rng.normal(0, sd, n1b.shape)
    cal_cov = np.array([[16.0, 2.0, 4.0], [2.0, 16.0, 4.0], [4.0, 4.0, 8.0]])  # hbar^4: sd 4 of 35
    err = rng.multivariate_normal(np.zeros(3), cal_cov, size=sets)             # (sets, 3)
    exact = DetectionNoise(np.full(sets, noise), np.full(sets, noise), np.zeros(sets))
    with_cal = exact.shifted(err[:, 0], err[:, 1], err[:, 2], covariance=np.broadcast_to(cal_cov, (sets, 3, 3)))
    without = exact.shifted(err[:, 0], err[:, 1], err[:, 2])
    res = evaluate(d, n1a, n2a, n1b, n2b, detection_noise=with_cal)
    bare = evaluate(d, n1a, n2a, n1b, n2b, detection_noise=without)
    assert res.corrected is not None and bare.corrected is not None
    for key in ("product_B", "E_EPR_AB", "E_Ent"):
        value, error = res.corrected[key].shown()
        _, naive = bare.corrected[key].shown()
        ratio = float(np.std(value, ddof=1) / np.mean(error))
        assert 0.8 < ratio < 1.2, (key, ratio)
        assert float(np.std(value, ddof=1) / np.mean(naive)) > 1.15, key      # the test can fail


def test_the_guard_assumes_a_blur_one_error_wider() -> None:
    counter, m1, m2 = _setup()
    assert guard_blur_px(CAL, UNC) == pytest.approx(CAL.sigma_blur_px + 0.1)
    assert guard_blur_px(CAL) == CAL.sigma_blur_px
    pt = imaging_terms(counter, m1, m2, CAL).partition
    wide = imaging_crosstalk_bounds(counter, m1, m2, guard_blur_px(CAL, UNC), psf_terms=pt)
    plain = imaging_crosstalk_bounds(counter, m1, m2, CAL.sigma_blur_px, psf_terms=pt)
    assert np.all(wide.n_ab > plain.n_ab)
    # more atoms shared: a coherent state can reach lower values, so certifying needs more
    assert np.all(wide.corrected["E_Ent"] < plain.corrected["E_Ent"])


def test_uncertainties_from_a_record_and_bad_ones() -> None:
    u = ImagingUncertainty.from_record({"imaging": {"psf_sigma_x_px": 0.2, "alpha": 0.01}})
    assert u == ImagingUncertainty(psf_sigma_x_px=0.2) and not u.psf_known
    assert ImagingUncertainty.from_record(None).psf_known
    with pytest.raises(CalibrationError, match=r"rec.toml: imaging uncertainty 'sigma_blur_px' must be a finite number >= 0"):
        ImagingUncertainty.from_record({"imaging": {"sigma_blur_px": -1.0}}, source="rec.toml")
    with pytest.raises(CalibrationError, match="expected a table"):
        ImagingUncertainty.from_record({"imaging": 3.0})
