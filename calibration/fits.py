"""The fits of the calibration procedures (pure numpy/scipy; units in each docstring).

Every fit returns best values, one-standard-error uncertainties (from the covariance of the
least-squares fit, scaled by the reduced chi^2 when no measurement errors are given) and the
residuals, so a procedure can plot and judge them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import curve_fit


@dataclass(frozen=True)
class Fit:
    """Parameters by name, their standard errors, residuals (data - model) and the model function."""

    values: dict[str, float]
    errors: dict[str, float]
    residuals: NDArray[np.float64]

    def __getitem__(self, name: str) -> float:
        return self.values[name]


def rabi(t_s: ArrayLike, p1: ArrayLike, f_guess_hz: float) -> Fit:
    """P1(t) = c + a sin(2 pi f t + phi): population of |1> after a pulse of length t (s) about an
    axis perpendicular to the prepared spin (x polarised, pulse about y). Returns f (Hz, the Rabi
    frequency), a, c, phi."""
    t, p = np.asarray(t_s, float), np.asarray(p1, float)

    def model(t: NDArray[np.float64], f: float, a: float, c: float, phi: float) -> NDArray[np.float64]:
        return c + a * np.sin(2 * np.pi * f * t + phi)

    best = None
    for f0 in (f_guess_hz * k for k in (0.8, 1.0, 1.25)):
        for phi0 in (0.0, math.pi):
            try:
                popt, pcov = curve_fit(model, t, p, p0=(f0, 0.5, 0.5, phi0), maxfev=20000)
            except RuntimeError:
                continue
            res = p - model(t, *popt)
            if best is None or (res ** 2).sum() < best[2]:
                best = (popt, pcov, (res ** 2).sum(), res)
    if best is None:
        raise ValueError("the Rabi fit did not converge: check the scan covers at least half a period")
    popt, pcov, _, res = best
    err = np.sqrt(np.diag(pcov))
    names = ("f_hz", "a", "c", "phi")
    return Fit(dict(zip(names, map(float, popt))), dict(zip(names, map(float, err))), res)


def linear(x: ArrayLike, y: ArrayLike, sigma: ArrayLike | None = None) -> Fit:
    """y = slope x + intercept (weighted by 1/sigma^2 if given; else errors scaled by the scatter)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    popt, pcov = curve_fit(lambda x, m, b: m * x + b, x, y, sigma=sigma,
                           absolute_sigma=sigma is not None)
    res = y - (popt[0] * x + popt[1])
    err = np.sqrt(np.diag(pcov))
    return Fit({"slope": float(popt[0]), "intercept": float(popt[1])},
               {"slope": float(err[0]), "intercept": float(err[1])}, res)


def instrumental_linear(x: ArrayLike, y: ArrayLike, z: ArrayLike) -> Fit:
    """y = slope x + intercept by instrumental variables: ``z`` is a variable known without noise
    (e.g. the programmed pulse area of each shot) that moves x and y but is independent of their
    noise. Unlike least squares it stays unbiased when x and y share noise (e.g. shot-to-shot
    atom-number fluctuations scale both populations): slope = cov(z, y) / cov(z, x); the slope's
    error is the usual IV one, sqrt(s_e^2 var(z) / (n cov(z, x)^2)), with s_e the residual rms."""
    x, y, z = (np.asarray(v, float) for v in (x, y, z))
    n = len(x)
    if n < 3 or not (len(y) == len(z) == n):
        raise ValueError(f"instrumental_linear: need >= 3 equal-length samples, got {len(x)}, {len(y)}, {len(z)}")
    zc = z - z.mean()
    cxz = float(zc @ (x - x.mean())) / (n - 1)
    if cxz == 0.0:
        raise ValueError("instrumental_linear: the instrument does not move x (cov(z, x) = 0)")
    slope = float(zc @ (y - y.mean())) / (n - 1) / cxz
    intercept = float(y.mean() - slope * x.mean())
    res = y - (slope * x + intercept)
    s2 = float(res @ res) / (n - 2)
    var_z = float(zc @ zc) / (n - 1)
    err_slope = math.sqrt(s2 * var_z / (n * cxz ** 2))
    err_intercept = math.sqrt(s2 / n + (x.mean() * err_slope) ** 2)
    return Fit({"slope": slope, "intercept": intercept}, {"slope": err_slope, "intercept": err_intercept}, res)


def reinaudi_alpha(od_sums: ArrayLike, intensity_sums: ArrayLike, isat_counts: float,
                   sigma: ArrayLike | None = None) -> Fit:
    """alpha from images of the same atom number at several probe intensities (Reinaudi 2007).

    Per intensity i: A_i = sum of -ln(I_out/I_in) over the cloud, B_i = sum of (I_in - I_out)
    (counts). The atom number alpha A_i + B_i / I_sat must not depend on the intensity: fit
    alpha A_i + B_i/I_sat = n (n: sigma_0 n_col summed, free) with I_sat in counts known.
    """
    a, b = np.asarray(od_sums, float), np.asarray(intensity_sums, float)
    # n - alpha A_i = B_i / I_sat : linear in (n, alpha)
    y = b / isat_counts
    design = np.stack([np.ones_like(a), -a], axis=1)
    w = None if sigma is None else 1.0 / np.asarray(sigma, float)
    dw = design if w is None else design * w[:, None]
    yw = y if w is None else y * w
    coef, *_ = np.linalg.lstsq(dw, yw, rcond=None)
    res = y - design @ coef
    dof = max(1, len(y) - 2)
    scale = (((res if w is None else res * w) ** 2).sum() / dof) if sigma is None else 1.0
    cov = np.linalg.inv(dw.T @ dw) * scale
    err = np.sqrt(np.diag(cov))
    return Fit({"n": float(coef[0]), "alpha": float(coef[1])}, {"n": float(err[0]), "alpha": float(err[1])}, res)


def gaussian_2d(image: ArrayLike) -> Fit:
    """Gaussian fit of a small spot: amplitude, centre (x, y) and rms widths (x, y) in pixels, offset."""
    img = np.asarray(image, float)
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w]

    def model(xy: tuple[NDArray[np.float64], NDArray[np.float64]], amp: float, x0: float, y0: float,
              sx: float, sy: float, off: float) -> NDArray[np.float64]:
        x, y = xy
        return (amp * np.exp(-0.5 * ((x - x0) / sx) ** 2 - 0.5 * ((y - y0) / sy) ** 2) + off).ravel()

    iy, ix = np.unravel_index(np.argmax(img), img.shape)
    p0 = (float(img.max()), float(ix), float(iy), 1.5, 1.5, 0.0)
    popt, pcov = curve_fit(model, (xx, yy), img.ravel(), p0=p0, maxfev=20000)
    res = img.ravel() - model((xx, yy), *popt)
    err = np.sqrt(np.diag(pcov))
    names = ("amp", "x0", "y0", "sigma_x", "sigma_y", "offset")
    vals = dict(zip(names, map(float, popt)))
    vals["sigma_x"], vals["sigma_y"] = abs(vals["sigma_x"]), abs(vals["sigma_y"])
    return Fit(vals, dict(zip(names, map(float, err))), res.reshape(img.shape))


def joffe_recoil_sigma_px(linewidth_rad_s: float, saturation: float, recoil_velocity_m_s: float,
                          pulse_s: float, pixel_m: float) -> float:
    """Photon-recoil blur bound (Joffe et al.): x_rms^2 <= (Gamma/72) s/(1+s) v_rec^2 dt^3, in pixels."""
    var = (linewidth_rad_s / 72.0) * saturation / (1.0 + saturation) * recoil_velocity_m_s ** 2 * pulse_s ** 3
    return math.sqrt(var) / pixel_m
