"""The PSF from the atoms' shot-noise correlation (calibration.procedures.psf_from_noise): on
synthetic atom-number images rendered here (independent points, pixel-integrated Gaussian of
known width) the kernel fit recovers the width; on the virtual lab's camera frames the whole
procedure recovers the optics PSF (1.1 / 1.2 px) within 3 reported errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import ndtr

from calibration import fits
from calibration.procedures import (NOISE_LAGS_PX, _fit_noise_kernel, _noise_correlation,
                                    _pixel_gaussian_autocorrelation, psf_from_noise)


def render(points: np.ndarray, shape: tuple[int, int], sx: float, sy: float) -> np.ndarray:
    """Sum over points (x, y) of a Gaussian integrated over each pixel (pixel i spans i-1/2..i+1/2)."""
    h, w = shape
    ex, ey = np.arange(w + 1) - 0.5, np.arange(h + 1) - 0.5
    px = np.diff(ndtr((ex[None, :] - points[:, :1]) / sx), axis=1)      # (n, w)
    py = np.diff(ndtr((ey[None, :] - points[:, 1:]) / sy), axis=1)      # (n, h)
    return py.T @ px


def test_the_kernel_model_is_the_pixel_integrated_autocorrelation() -> None:
    lags = np.arange(-8.0, 9.0)
    for sigma in (0.8, 1.2, 2.0):
        model = _pixel_gaussian_autocorrelation(lags, sigma)
        assert _pixel_gaussian_autocorrelation(np.arange(-14.0, 15.0), sigma).sum() == pytest.approx(1.0, abs=1e-3)
        # numerically: one point at uniform sub-pixel offsets, its pixel image's autocorrelation
        offsets = np.linspace(-0.5, 0.5, 201)[:-1] + 0.0025
        edges = np.arange(-30, 31) - 0.5
        acs = []
        for u in offsets:
            k = np.diff(ndtr((edges - u) / sigma))
            acs.append([float(np.dot(k[max(0, -d):len(k) - max(0, d)], k[max(0, d):len(k) - max(0, -d)]))
                        for d in range(-8, 9)])
        assert np.allclose(model, np.mean(acs, axis=0), atol=2e-3)


def test_the_noise_correlation_gives_the_width_of_one_atoms_image() -> None:
    rng = np.random.default_rng(11)
    shape, sx, sy = (64, 64), 1.1, 1.6
    images = []
    for _ in range(300):
        n = rng.poisson(400)
        pts = np.column_stack([rng.normal(32, 6, n), rng.normal(32, 5, n)])
        images.append(render(pts, shape, sx, sy) + rng.normal(0, 0.3, shape))   # white detection noise
    stack = np.array(images)
    yy, xx = np.mgrid[0:64, 0:64]
    region = ((xx - 32) / 12.0) ** 2 + ((yy - 32) / 10.0) ** 2 <= 1
    kx, ky = _fit_noise_kernel(_noise_correlation(stack, region, NOISE_LAGS_PX), NOISE_LAGS_PX)
    assert kx == pytest.approx(sx, rel=0.04) and ky == pytest.approx(sy, rel=0.04)


def test_psf_from_noise_recovers_the_virtual_labs_optics_psf() -> None:
    from app.commands.calibrate import _calibration_plan
    from app.lab import virtual_atoms
    from app.labconfig import load_lab_config
    from app.paths import default_config
    from calibration.record import CalibrationRecord
    cfg = load_lab_config(default_config())
    rec = CalibrationRecord("t", dict(cfg.calibration_record["microwave"]), cfg.imaging_calibration.to_dict())
    recoil = fits.joffe_recoil_sigma_px(2 * math.pi * 6.065e6, 1.0, 5.88e-3, 50e-6,
                                        cfg.imaging_calibration.pixel_size_m)
    src = virtual_atoms(cfg, _calibration_plan(cfg), seed=2)
    frames = src.shots(150, config=src.with_spin(state="coherent", atom_number_rms=40.0))
    result = psf_from_noise(frames, rec, None, recoil_sigma_px=recoil, resamples=30)
    for (_, key, value, err), truth in zip(result.updates, (1.1, 1.2)):
        assert abs(value - truth) < 3 * err and err < 0.05, (key, value, err)
    with pytest.raises(ValueError, match="at least 20"):
        psf_from_noise(frames[:10], rec, None, recoil_sigma_px=recoil)
    tiny = src.with_cloud(half_width_um=(0.3, 0.3), growth_at_delay=(1.0, 1.0))
    with pytest.raises(ValueError, match=r"counting region covers \d+ px; the method needs clouds much larger"):
        psf_from_noise(src.shots(30, config=tiny), rec, None, recoil_sigma_px=recoil)
