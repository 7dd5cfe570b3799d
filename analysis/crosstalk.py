"""Crosstalk between regions from finite resolution, and the E_EPR a coherent state could fake by it.

Model (paper supplement, physics.md): an atom at x is detected in region A with probability
det_A(x) = (1 + erf((x_a - x)/(sqrt(2) sigma_blur)))/2 (A: x < x_a), in B with
det_B(x) = (1 + erf((x - x_b)/(sqrt(2) sigma_blur)))/2 (B: x > x_b), and the atoms detected in both are
N_AB = integral n(x) det_A(x) det_B(x) dx, n the density profile (atoms per pixel along x).

* Splits: the density profile is the ensemble-average atom image of each state projected on the
  split axis inside the ROI, taken as uniform within each pixel; the integral over each pixel is done
  by 8-point Gauss-Legendre quadrature (exact to ~1e-12 for such profiles). Pixel columns [a0, a1)
  form A, so its edge is x_a = a1 - 1/2 (pixel centres at integers); the states' contributions add.
* Other patterns: det_R = the region's mask blurred by a 2-D Gaussian of rms sigma_blur, N_AB = the
  integral of n det_A det_B, with n uniform within pixels; evaluated on a grid subdivided
  ``oversample`` x ``oversample`` times per pixel (agrees with the 1-D model on splits to ~1 %).
* For a coherent state with n shared atoms, min E_EPR(A -> B) = 1 - 2 n^2/(N_B (N - N_B)) + O(n^3)
  (B -> A: N_A in place of N_B), with N = N_A + N_B.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import gaussian_filter
from scipy.special import ndtr

from analysis.geometries import Split
from analysis.regions import RegionCounter

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(8)


def detection_probability(x: ArrayLike, edge: float, sigma_blur: float, side: str
                          ) -> NDArray[np.float64]:
    """det(x) of a half-line region below (``side="low"``: x < edge) or above an edge (pixels)."""
    x = np.asarray(x, dtype=np.float64)
    if sigma_blur <= 0:
        return ((x < edge) if side == "low" else (x > edge)).astype(np.float64)
    z = (edge - x) / sigma_blur
    return ndtr(z) if side == "low" else ndtr(-z)


def n_ab_profile(profile: ArrayLike, x_a: float, x_b: float, sigma_blur_px: float, *,
                 x0: float = 0.0, a_side: str = "low") -> float:
    """N_AB for a profile of atoms per pixel (uniform within pixels centred at x0, x0+1, ...).

    A lies below x_a and B above x_b (``a_side="low"``), or the mirror image (``"high"``).
    """
    n = np.asarray(profile, dtype=np.float64)
    centres = x0 + np.arange(n.size, dtype=np.float64)
    x = centres[:, None] + 0.5 * _GL_NODES[None, :]
    lo_side, hi_side = ("low", "high") if a_side == "low" else ("high", "low")
    da = detection_probability(x, x_a, sigma_blur_px, lo_side)
    db = detection_probability(x, x_b, sigma_blur_px, hi_side)
    per_pixel = 0.5 * (da * db) @ _GL_WEIGHTS
    return float(n @ per_pixel)


def coherent_epr_bound(n_ab: ArrayLike, n_total: ArrayLike, n_b: ArrayLike
                       ) -> NDArray[np.float64]:
    """1 - 2 n^2/(N_B (N - N_B)): the lowest E_EPR(A -> B) crosstalk alone lets a coherent state reach."""
    n_ab, n_total, n_b = (np.asarray(v, dtype=np.float64) for v in (n_ab, n_total, n_b))
    if np.any(n_total <= 0) or np.any(n_b <= 0) or np.any(n_b >= n_total):
        raise ValueError("coherent_epr_bound needs 0 < N_B < N for every geometry")
    return 1.0 - 2.0 * n_ab ** 2 / (n_b * (n_total - n_b))


@dataclass(frozen=True)
class Crosstalk:
    """Per geometry (G,): doubly detected atoms and the coherent-state E_EPR bounds they allow."""

    n_ab: NDArray[np.float64]
    n_a: NDArray[np.float64]
    n_b: NDArray[np.float64]
    epr_bound_ab: NDArray[np.float64]
    epr_bound_ba: NDArray[np.float64]


def _split_n_ab(counter: RegionCounter, index: int, state: int, mean: NDArray[np.float64],
                sigma: float) -> float:
    g = counter.geometries[index]
    assert isinstance(g, Split)
    profile, start, (a0, a1, b0, b1) = counter.split_profile(index, state, mean)
    if a1 == a0 or b1 == b0:
        return 0.0
    if g.a_side == "low":
        x_a, x_b = start + a1 - 0.5, start + b0 - 0.5
    else:
        x_a, x_b = start + a0 - 0.5, start + b1 - 0.5
    return n_ab_profile(profile, x_a, x_b, sigma, x0=float(start), a_side=g.a_side)


def _pattern_n_ab(counter: RegionCounter, index: int, state: int, mean: NDArray[np.float64],
                  sigma: float, oversample: int) -> float:
    ma, mb = counter.masks(index, state)
    if not ma.any() or not mb.any():
        return 0.0
    if sigma == 0:
        return float((mean * ma * mb).sum())
    # crop to the masks plus the blur's reach, then subdivide pixels so that the density (uniform
    # within a pixel) and the blurred masks are integrated over the pixel, not sampled at its centre
    rows, cols = np.nonzero(ma | mb)
    m = int(np.ceil(4 * sigma)) + 1
    h, w = mean.shape
    rs = slice(max(rows.min() - m, 0), min(rows.max() + m + 1, h))
    cs = slice(max(cols.min() - m, 0), min(cols.max() + m + 1, w))
    f = oversample

    def up(a: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.repeat(np.repeat(a[rs, cs], f, axis=0), f, axis=1)

    da = gaussian_filter(up(ma.astype(np.float64)), sigma * f, mode="constant")
    db = gaussian_filter(up(mb.astype(np.float64)), sigma * f, mode="constant")
    return float((up(mean) * da * db).sum()) / (f * f)


def region_crosstalk(counter: RegionCounter, mean_n1: ArrayLike, mean_n2: ArrayLike,
                     sigma_blur_px: float, *, method: str = "auto", oversample: int = 4
                     ) -> Crosstalk:
    """N_AB and coherent E_EPR bounds for every geometry from the mean atom images (atoms/pixel).

    ``method``: "auto" (1-D erf model for splits, blurred masks otherwise) or "2d" (blurred masks
    for every geometry).
    """
    if method not in ("auto", "2d"):
        raise ValueError(f"method must be 'auto' or '2d', got {method!r}")
    if not sigma_blur_px >= 0:
        raise ValueError(f"sigma_blur_px must be >= 0, got {sigma_blur_px!r}")
    means = {1: np.asarray(mean_n1, float), 2: np.asarray(mean_n2, float)}
    counts = counter.count(means[1], means[2])
    n_ab = np.zeros(counter.n_geometries)
    if int(oversample) < 1:
        raise ValueError(f"oversample must be >= 1, got {oversample!r}")
    for i, g in enumerate(counter.geometries):
        for s in (1, 2):
            if method == "auto" and isinstance(g, Split):
                n_ab[i] += _split_n_ab(counter, i, s, means[s], sigma_blur_px)
            else:
                n_ab[i] += _pattern_n_ab(counter, i, s, means[s], sigma_blur_px, int(oversample))
    n_a, n_b = counts.n_a, counts.n_b
    n = n_a + n_b
    with np.errstate(divide="ignore", invalid="ignore"):
        ok_b = (n_b > 0) & (n_b < n)
        ok_a = (n_a > 0) & (n_a < n)
        bound_ab = np.where(ok_b, 1.0 - 2.0 * n_ab ** 2 / (n_b * (n - n_b)), np.nan)
        bound_ba = np.where(ok_a, 1.0 - 2.0 * n_ab ** 2 / (n_a * (n - n_a)), np.nan)
    return Crosstalk(n_ab, n_a, n_b, bound_ab, bound_ba)
