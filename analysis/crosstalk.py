"""Crosstalk between regions from finite resolution, and its effect on the criteria.

Two effects of blur, both computed per geometry from the ensemble-average density:

1. Double detection (paper supplement, physics.md): an atom at x is detected in A with probability
   det_A(x) = (1 + erf((x_a - x)/(sqrt(2) sigma_blur)))/2 (A: x < x_a), in B with
   det_B(x) = (1 + erf((x - x_b)/(sqrt(2) sigma_blur)))/2 (B: x > x_b), and
   N_AB = integral n(x) det_A(x) det_B(x) dx. A coherent state with n shared atoms can then reach
   min E_EPR(A -> B) = 1 - 2 n^2/(N_B (N - N_B)) + O(n^3) (B -> A: N_A for N_B), N = N_A + N_B.
   The regions are taken as counted (analysis.regions: each pixel's mask weight, fractional at an
   edge, applies to all the signal the pixel integrates), so det_R(x) = sum_c w_R,c P_c(x) with
   P_c(x) the blur's share landing in pixel c; the erf form above is its limit for small pixels
   (:func:`n_ab_profile`). Splits: 1-D model on the density profile (uniform within pixels,
   8-point Gauss-Legendre per pixel, :func:`n_ab_counted`); other patterns: the region maps
   blurred in 2-D.
2. Partition weights (:func:`partition_terms`): the optical point-spread function spreads each
   atom's absorption *deterministically*, so an atom near an edge adds a weight w in (0, 1) to a
   region instead of 0 or 1. For spins s_i = +-1/2 this lowers Var(S^R) by D_R/4 with
   D_R = sum_i w_R,i (1 - w_R,i), and adds W_AB/4 to Cov(S^A, S^B) with W_AB = sum_i w_A,i w_B,i,
   compared with counting whole atoms in the same (blurred) regions; a coherent state then looks
   spin-squeezed in each region. These are the terms to add back (variances) and subtract
   (covariance) before comparing with the whole-atom criteria, alongside the detection noise.
   Maps are evaluated on a grid subdivided ``oversample`` times per pixel, density uniform within
   a pixel, each region as it is counted: a pixel's mask weight over the whole pixel, since the
   pixel integrates the signal that falls on it. (With region edges taken as exact lines instead,
   an atom inside an edge pixel of weight f would count 0 or 1 where the counting gives f: D_R and
   W_AB came out ~7 % low on a 4 px cloud, and the corrected variance of a small region too low.)
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import gaussian_filter
from scipy.special import ndtr

from analysis.formulas import all_criteria
from analysis.geometries import Split
from analysis.imaging import ImagingCalibration, ImagingUncertainty
from analysis.moments import Moments
from analysis.noise import DetectionNoise
from analysis.regions import RegionCounter, interval_weights

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


def n_ab_counted(profile: ArrayLike, weights_a: ArrayLike, weights_b: ArrayLike,
                 sigma_blur_px: float, *, x0: float = 0.0) -> float:
    """N_AB as the regions are counted: ``profile`` atoms per pixel (uniform within pixels
    centred at x0, x0+1, ...), ``weights_a``/``weights_b`` each pixel's mask weight in A/B
    (analysis.regions.interval_weights: the fraction of the pixel inside the region). An atom at
    x lands in pixel c with probability P_c(x) (the blur integrated over the pixel) and adds
    det_R(x) = sum_c w_R,c P_c(x) to region R; N_AB = integral n(x) det_A(x) det_B(x) dx.
    :func:`n_ab_profile` is its limit for exact region edges (infinitely small pixels)."""
    n = np.asarray(profile, dtype=np.float64)
    wa, wb = (np.asarray(w, dtype=np.float64) for w in (weights_a, weights_b))
    if wa.shape != n.shape or wb.shape != n.shape:
        raise ValueError(f"weights must have the profile's shape {n.shape}, got {wa.shape}, {wb.shape}")
    if sigma_blur_px <= 0:
        return float(n @ (wa * wb))
    centres = x0 + np.arange(n.size, dtype=np.float64)
    x = centres[:, None] + 0.5 * _GL_NODES[None, :]                        # (P, 8)
    edges = x0 + np.arange(n.size + 1, dtype=np.float64) - 0.5
    land = np.diff(ndtr((edges - x[..., None]) / sigma_blur_px), axis=-1)   # (P, 8, P)
    per_pixel = 0.5 * ((land @ wa) * (land @ wb)) @ _GL_WEIGHTS
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


@dataclass(frozen=True)
class RegionMaps:
    """Blurred region maps of one geometry and state on a sub-pixel grid around its ROI.

    Sub-pixel (j, i) covers image x in [x0 + i/f, x0 + (i+1)/f), y likewise from y0 (f =
    ``oversample``). ``w_a``/``w_b``: what an atom there adds to the counts of A/B: its signal,
    spread by the blur over the pixels, times each pixel's mask weight (analysis.regions: the
    fraction of the pixel inside the region); ``density``: the given image spread uniformly over
    each pixel's sub-pixels (atoms).
    """

    x0: float
    y0: float
    oversample: int
    w_a: NDArray[np.float64]
    w_b: NDArray[np.float64]
    density: NDArray[np.float64]

    def at(self, x: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(w_A, w_B) at image points (x, y) (0 outside the grid)."""
        i = np.floor((np.asarray(x, float) - self.x0) * self.oversample).astype(np.intp)
        j = np.floor((np.asarray(y, float) - self.y0) * self.oversample).astype(np.intp)
        ok = (i >= 0) & (i < self.w_a.shape[1]) & (j >= 0) & (j < self.w_a.shape[0])
        ic, jc = np.where(ok, i, 0), np.where(ok, j, 0)
        return np.where(ok, self.w_a[jc, ic], 0.0), np.where(ok, self.w_b[jc, ic], 0.0)


def region_maps(counter: RegionCounter, index: int, state: int, image: ArrayLike,
                sigma_xy: tuple[float, float], oversample: int = 4) -> RegionMaps:
    """Regions A, B of geometry ``index`` blurred by a Gaussian of rms ``sigma_xy`` (px, x and y)."""
    mean = np.asarray(image, dtype=np.float64)
    rows, cols = counter.roi_bbox(state)
    m = int(np.ceil(4 * max(sigma_xy))) + 1
    h, w = counter.image_shape
    rs = slice(max(rows.start - m, 0), min(rows.stop + m, h))
    cs = slice(max(cols.start - m, 0), min(cols.stop + m, w))
    f = int(oversample)
    dens = np.repeat(np.repeat(mean[rs, cs], f, axis=0), f, axis=1) / (f * f)
    sig = (sigma_xy[1] * f, sigma_xy[0] * f)
    maps = []
    for weight in counter.weights(index, state):
        # the mask as counted: a pixel integrates the signal falling on it, so its weight holds
        # over the whole pixel (an atom in an edge pixel of weight 0.5 counts half)
        ind = np.repeat(np.repeat(weight[rs, cs], f, axis=0), f, axis=1)
        maps.append(gaussian_filter(ind, sig, mode="constant") if max(sigma_xy) > 0 else ind)
    return RegionMaps(cs.start - 0.5, rs.start - 0.5, f, maps[0], maps[1], dens)


def _split_n_ab(counter: RegionCounter, index: int, state: int, mean: NDArray[np.float64],
                sigma: float) -> float:
    g = counter.geometries[index]
    assert isinstance(g, Split)
    profile, start, iv = counter.split_profile(index, state, mean)
    if iv[1] <= iv[0] or iv[3] <= iv[2]:
        return 0.0
    wa, wb = (interval_weights(profile.size, iv[k], iv[k + 1], start) for k in (0, 2))
    return n_ab_counted(profile, wa, wb, sigma, x0=float(start))


def _check(mean_n1: ArrayLike, mean_n2: ArrayLike, counter: RegionCounter, oversample: int
           ) -> dict[int, NDArray[np.float64]]:
    means = {1: np.asarray(mean_n1, float), 2: np.asarray(mean_n2, float)}
    for s, m in means.items():
        if m.shape != counter.image_shape:
            raise ValueError(f"mean image of |{s}> has shape {m.shape}, expected "
                             f"{counter.image_shape}")
    if int(oversample) < 1:
        raise ValueError(f"oversample must be >= 1, got {oversample!r}")
    return means


def region_crosstalk(counter: RegionCounter, mean_n1: ArrayLike, mean_n2: ArrayLike,
                     sigma_blur_px: float, *, method: str = "auto", oversample: int = 4
                     ) -> Crosstalk:
    """N_AB and coherent E_EPR bounds for every geometry from the mean atom images (atoms/pixel).

    ``method``: "auto" (1-D erf model for splits, blurred 2-D maps otherwise) or "2d" (blurred
    maps for every geometry).
    """
    if method not in ("auto", "2d"):
        raise ValueError(f"method must be 'auto' or '2d', got {method!r}")
    if not sigma_blur_px >= 0:
        raise ValueError(f"sigma_blur_px must be >= 0, got {sigma_blur_px!r}")
    means = _check(mean_n1, mean_n2, counter, oversample)
    counts = counter.count(means[1], means[2])
    n_ab = np.zeros(counter.n_geometries)
    for i, g in enumerate(counter.geometries):
        for s in (1, 2):
            if method == "auto" and isinstance(g, Split):
                n_ab[i] += _split_n_ab(counter, i, s, means[s], sigma_blur_px)
            else:
                rm = region_maps(counter, i, s, means[s], (sigma_blur_px, sigma_blur_px),
                                 int(oversample))
                n_ab[i] += float((rm.density * rm.w_a * rm.w_b).sum())
    n_a, n_b = counts.n_a, counts.n_b
    n = n_a + n_b
    with np.errstate(divide="ignore", invalid="ignore"):
        bound_ab = np.where((n_b > 0) & (n_b < n), 1.0 - 2.0 * n_ab ** 2 / (n_b * (n - n_b)),
                            np.nan)
        bound_ba = np.where((n_a > 0) & (n_a < n), 1.0 - 2.0 * n_ab ** 2 / (n_a * (n - n_a)),
                            np.nan)
    return Crosstalk(n_ab, n_a, n_b, bound_ab, bound_ba)


@dataclass(frozen=True)
class PartitionTerms:
    """Per geometry (G,), atoms: D_A = sum w_A (1 - w_A), D_B likewise, W_AB = sum w_A w_B.

    Var(S^R) of image counts is D_R/4 lower, and Cov(S^A, S^B) W_AB/4 higher, than for whole atoms
    in the same regions (see the module docstring).
    """

    d_a: NDArray[np.float64]
    d_b: NDArray[np.float64]
    w_ab: NDArray[np.float64]

    def correction(self) -> NDArray[np.float64]:
        """(G, 3), hbar^2: what these terms add to the (var_a, var_b, cov_ab) the corrected
        criteria subtract: -D_A/4, -D_B/4, +W_AB/4."""
        return np.stack([-self.d_a / 4, -self.d_b / 4, self.w_ab / 4], axis=-1)


def partition_terms(counter: RegionCounter, mean_n1: ArrayLike, mean_n2: ArrayLike,
                    psf_sigma_px: tuple[float, float], *, oversample: int = 4) -> PartitionTerms:
    """Partition-weight terms for every geometry; ``psf_sigma_px``: deterministic blur (x, y), px."""
    if len(psf_sigma_px) != 2 or not min(psf_sigma_px) >= 0:
        raise ValueError(f"psf_sigma_px must be two numbers >= 0 (x, y), got {psf_sigma_px!r}")
    means = _check(mean_n1, mean_n2, counter, oversample)
    out = np.zeros((3, counter.n_geometries))
    for i in range(counter.n_geometries):
        for s in (1, 2):
            rm = region_maps(counter, i, s, means[s],
                             (float(psf_sigma_px[0]), float(psf_sigma_px[1])), int(oversample))
            out[0, i] += float((rm.density * rm.w_a * (1 - rm.w_a)).sum())
            out[1, i] += float((rm.density * rm.w_b * (1 - rm.w_b)).sum())
            out[2, i] += float((rm.density * rm.w_a * rm.w_b).sum())
    return PartitionTerms(out[0], out[1], out[2])


@dataclass(frozen=True)
class ImagingTerms:
    """What the imaging adds to the detection noise the corrected criteria subtract: the PSF
    partition terms (the smear of each atom over a region edge) and, from the PSF's calibration
    uncertainty, the covariance (G, 3, 3), hbar^4, of the correction (-D_A/4, -D_B/4, W_AB/4)
    they give (None: the PSF is known exactly)."""

    partition: PartitionTerms
    covariance: NDArray[np.float64] | None = None

    def apply(self, noise: DetectionNoise) -> DetectionNoise:
        """The detection noise combined with these terms (variances minus D_R/4, covariance plus
        W_AB/4), their uncertainty added to the noise's own."""
        c = self.partition.correction()
        return noise.shifted(c[:, 0], c[:, 1], c[:, 2], covariance=self.covariance)


def imaging_terms(counter: RegionCounter, mean_n1: ArrayLike, mean_n2: ArrayLike,
                  calibration: ImagingCalibration, uncertainty: ImagingUncertainty | None = None
                  ) -> ImagingTerms:
    """The partition terms of every geometry at the calibration's deterministic smear
    (``ImagingCalibration.partition_sigma_px``: PSF and the recoil's share) and the covariance of
    the correction from the PSF's standard errors (independent in x and y): linear propagation by
    central differences of one standard error each way (two more partition computations per
    uncertain axis), used live (analysis.monitor) and offline (app/offline/analysis.py)."""
    pt = partition_terms(counter, mean_n1, mean_n2, calibration.partition_sigma_px)
    if uncertainty is None or uncertainty.psf_known:
        return ImagingTerms(pt)

    def correction(cal: ImagingCalibration) -> NDArray[np.float64]:
        return partition_terms(counter, mean_n1, mean_n2, cal.partition_sigma_px).correction()

    cov = np.zeros((counter.n_geometries, 3, 3))
    for name in ("psf_sigma_x_px", "psf_sigma_y_px"):
        u = float(getattr(uncertainty, name))
        if u == 0:
            continue
        v = float(getattr(calibration, name))
        lo = replace(calibration, **{name: max(v - u, 0.0)})
        hi = replace(calibration, **{name: v + u})
        j = (correction(hi) - correction(lo)) / (getattr(hi, name) - getattr(lo, name))   # per px
        cov += u * u * j[:, :, None] * j[:, None, :]
    return ImagingTerms(pt, cov)


def guard_blur_px(calibration: ImagingCalibration, uncertainty: ImagingUncertainty | None = None) -> float:
    """The blur (px) the crosstalk guard assumes: sigma_blur plus one standard error (a larger
    blur shares more atoms between the regions, so the bound a coherent state could reach is
    higher and the guard stricter)."""
    return calibration.sigma_blur_px + (uncertainty.sigma_blur_px if uncertainty is not None else 0.0)


#: The criteria a crosstalk bound is computed for (the three whose violation certifies something).
BOUNDED = ("E_Ent", "E_EPR_AB", "E_EPR_BA")


def coherent_crosstalk_bounds(n_a: ArrayLike, n_b: ArrayLike, n_shared: ArrayLike,
                              d_a: ArrayLike = 0.0, d_b: ArrayLike = 0.0
                              ) -> dict[str, NDArray[np.float64]]:
    """E_Ent, E_EPR A->B, B->A of a coherent state (C = 1) seen through the imaging alone.

    Per geometry (arrays broadcasting together, atoms): N_A, N_B counted in each region, the
    atoms counted in both (``n_shared``: N_AB, or W_AB of :class:`PartitionTerms`) and the
    partition deficits D_A, D_B. Each atom i contributes w_R,i s_i to S^R with independent spins
    s_i = +-1/2 along z and y and s_i = +1/2 along x, so Var(S^R) = (N_R - D_R)/4,
    Cov(S^A, S^B) = N_AB/4, <S^R_x> = N_R/2 (the same for y and z). The criteria of these
    moments, computed by the one criteria engine (:func:`analysis.formulas.all_criteria`), are what
    a state without any A-B entanglement shows through finite resolution: the exact form of the
    supplement's Eq. 6. Without deficits, E_EPR(A -> B) = (1 - N_AB^2/(N_A N_B))^2 =
    1 - 2 N_AB^2/(N_A N_B) + O(N_AB^4) (:func:`coherent_epr_bound`) and
    E_Ent = (1 - N_AB/sqrt(N_A N_B))^2 (first order in N_AB: E_Ent is the more sensitive).
    NaN where a region is empty.
    """
    n_a, n_b, n_ab, d_a, d_b = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (n_a, n_b, n_shared, d_a, d_b)))
    ok = (n_a > 0) & (n_b > 0)
    va, vb, cov = (n_a - d_a) / 4, (n_b - d_b) / 4, n_ab / 4
    m = Moments(va, vb, cov, va, vb, cov, n_a / 2, n_b / 2, n_a + n_b,
                np.ones(n_a.shape + (3,)))
    crit = all_criteria(m)
    return {k: np.where(ok, np.asarray(crit[k], dtype=np.float64), np.nan) for k in BOUNDED}


@dataclass(frozen=True)
class CrosstalkBounds:
    """Per geometry (G,): the guard of the verdicts (analysis.criteria, "unresolved").

    ``raw``/``corrected``: per certifying criterion, the value crosstalk alone gives a coherent
    state in the raw counts / in the detection-noise and PSF corrected values. ``n_ab`` (= W_AB at
    the total blur, the supplement's N_AB), ``d_a``, ``d_b``: partition terms at the total blur;
    ``residual_d_a``/``_b``: the part of the deficits a PSF-only correction leaves (atoms).
    """

    raw: dict[str, NDArray[np.float64]]
    corrected: dict[str, NDArray[np.float64]]
    n_ab: NDArray[np.float64]
    d_a: NDArray[np.float64]
    d_b: NDArray[np.float64]
    residual_d_a: NDArray[np.float64]
    residual_d_b: NDArray[np.float64]


def imaging_crosstalk_bounds(counter: RegionCounter, mean_n1: ArrayLike, mean_n2: ArrayLike,
                             sigma_blur_px: float, *, psf_terms: PartitionTerms | None = None,
                             oversample: int = 4) -> CrosstalkBounds:
    """Per geometry: the lowest E_Ent, E_EPR a coherent state can show by crosstalk alone.

    Every atom is partitioned by the largest smearing the calibration allows, the total
    ``sigma_blur_px`` (optics PSF + photon recoil, the paper's 1.4 px) in x and y: D_A, D_B and
    W_AB (= N_AB of the 2-D blurred maps) of :func:`partition_terms` at that blur enter
    :func:`coherent_crosstalk_bounds`. Raw counts: all of N_AB, D_A, D_B. Corrected values
    (``psf_terms``: the partition terms the correction subtracted, None: none): N_AB in full (the
    supplement's Eq. 6, conservative) and the deficits the correction leaves, D(blur) - D(psf).
    A smaller real deterministic smear gives a coherent state values above these bounds.
    """
    pt = partition_terms(counter, mean_n1, mean_n2, (sigma_blur_px, sigma_blur_px),
                         oversample=oversample)
    counts = counter.count(np.asarray(mean_n1, float), np.asarray(mean_n2, float))
    raw = coherent_crosstalk_bounds(counts.n_a, counts.n_b, pt.w_ab, pt.d_a, pt.d_b)
    if psf_terms is None:
        ra, rb = pt.d_a, pt.d_b
    else:
        ra = np.maximum(pt.d_a - psf_terms.d_a, 0.0)
        rb = np.maximum(pt.d_b - psf_terms.d_b, 0.0)
    corrected = coherent_crosstalk_bounds(counts.n_a, counts.n_b, pt.w_ab, ra, rb)
    return CrosstalkBounds(raw, corrected, pt.w_ab, pt.d_a, pt.d_b, ra, rb)
