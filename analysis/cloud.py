"""Centre and size of a cloud in an ensemble-average atom-number image.

Pixel (row y, column x) has its centre at integer coordinates (x, y). The centre and rms width come
from Gaussian fits (amplitude, centre, rms, offset) to the image's projections on x and y: robust to
noise, and for a Thomas-Fermi cloud it still finds the centre exactly (symmetry) and a width
proportional to the cloud's size, which is all the masks need (they scale with the size ratio).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import uniform_filter1d
from scipy.optimize import curve_fit


class CloudError(ValueError):
    """No cloud could be located in an image."""


@dataclass(frozen=True)
class CloudShape:
    """Centre and rms size of a cloud (image pixels) and its atom number (sum of the image)."""

    centre_x_px: float
    centre_y_px: float
    sigma_x_px: float
    sigma_y_px: float
    atoms: float


def _gauss(x: NDArray[np.float64], amp: float, c: float, s: float, off: float
           ) -> NDArray[np.float64]:
    return amp * np.exp(-0.5 * ((x - c) / s) ** 2) + off


def _fit_profile(p: NDArray[np.float64], axis: str) -> tuple[float, float]:
    x = np.arange(p.size, dtype=np.float64)
    smooth = uniform_filter1d(p, 3)
    off0 = float(np.median(p))
    k = int(np.argmax(smooth))
    amp0 = float(smooth[k] - off0)
    if not amp0 > 0:
        raise CloudError(f"no cloud found in the mean image (projection on {axis} is flat)")
    above = np.nonzero(smooth - off0 > amp0 / 2)[0]
    s0 = max((above.max() - above.min() + 1) / 2.355, 1.0)
    try:
        popt, _ = curve_fit(_gauss, x, p, p0=(amp0, float(k), s0, off0), maxfev=4000)
    except (RuntimeError, ValueError) as exc:
        raise CloudError(f"Gaussian fit of the cloud profile along {axis} failed: {exc}") from None
    amp, c, s, _ = popt
    s = abs(float(s))
    if not (amp > 0 and 0 <= c <= p.size - 1 and 0.3 < s < p.size):
        raise CloudError(f"no cloud found along {axis}: fit gave centre {c:.1f} px, rms {s:.2f} px, "
                         f"amplitude {amp:.3g} on a {p.size}-pixel profile")
    return float(c), s


def cloud_shape(mean_image: ArrayLike) -> CloudShape:
    """Centre and rms width (pixels) from Gaussian fits to the x and y projections of an image."""
    img = np.asarray(mean_image, dtype=np.float64)
    if img.ndim != 2 or not np.all(np.isfinite(img)):
        raise CloudError(f"mean image must be a finite 2-D array, got shape {img.shape}")
    cx, sx = _fit_profile(img.sum(axis=0), "x")
    cy, sy = _fit_profile(img.sum(axis=1), "y")
    return CloudShape(cx, cy, sx, sy, float(img.sum()))
