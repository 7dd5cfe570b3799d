"""Region masks per state and atom counts N1A, N2A, N1B, N2B for many geometries in one pass.

Conventions
-----------
* Pixel (row y, column x) has its centre at integer coordinates (x, y) of its image.
* The masks of both states are centred on the ensemble-average image of that state
  (:func:`cloud_shape`). Pixel x of state s maps to the geometry frame (see
  :mod:`analysis.geometries`) as u = (x - cx_s) / kx_s, v = (y - cy_s) / ky_s, where
  k_s = sigma_s / sigma_2 per axis when ``scale_with_cloud`` (the |1> cloud is imaged 1.5 ms later:
  lower, ~26 % taller), else 1. So the |1> masks follow the |1> cloud.
* Every region lies inside a region of interest |u| <= roi_half_x, |v| <= roi_half_y (geometry-frame
  pixels; default 3.5 rms widths of the |2> cloud).
* Splits along one axis are counted from the ROI image projected on that axis and its cumulative
  sum (two subtractions per geometry and region); other patterns by one matrix product of the ROI
  pixels with the stacked masks. Both are exactly the sums of atoms over the masks' pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import uniform_filter1d
from scipy.optimize import curve_fit

from analysis.geometries import A, B, NONE, Geometry, Split

STATES = (1, 2)


class RegionError(ValueError):
    """Masks cannot be built (no cloud, ROI outside the image, bad image shapes)."""


@dataclass(frozen=True)
class CloudShape:
    """Centre and rms size of a cloud (image pixels) and its atom number."""

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
        raise RegionError(f"no cloud found in the mean image (projection on {axis} is flat)")
    above = np.nonzero(smooth - off0 > amp0 / 2)[0]
    s0 = max((above.max() - above.min() + 1) / 2.355, 1.0)
    try:
        popt, _ = curve_fit(_gauss, x, p, p0=(amp0, float(k), s0, off0), maxfev=4000)
    except (RuntimeError, ValueError) as exc:
        raise RegionError(f"Gaussian fit of the cloud profile along {axis} failed: {exc}") from None
    amp, c, s, _ = popt
    s = abs(float(s))
    if not (amp > 0 and 0 <= c <= p.size - 1 and 0.3 < s < p.size):
        raise RegionError(f"no cloud found along {axis}: fit gave centre {c:.1f} px, rms {s:.2f} px, "
                          f"amplitude {amp:.3g} on a {p.size}-pixel profile")
    return float(c), s


def cloud_shape(mean_image: ArrayLike) -> CloudShape:
    """Centre and rms width from Gaussian fits (with offset) to the image's x and y projections."""
    img = np.asarray(mean_image, dtype=np.float64)
    if img.ndim != 2 or not np.all(np.isfinite(img)):
        raise RegionError(f"mean image must be a finite 2-D array, got shape {img.shape}")
    cx, sx = _fit_profile(img.sum(axis=0), "x")
    cy, sy = _fit_profile(img.sum(axis=1), "y")
    return CloudShape(cx, cy, sx, sy, float(img.sum()))


@dataclass(frozen=True)
class RegionCounts:
    """Atoms per region: arrays of shape (..., G) (leading shape of the images, G geometries)."""

    n1a: NDArray[np.float64]
    n2a: NDArray[np.float64]
    n1b: NDArray[np.float64]
    n2b: NDArray[np.float64]

    @property
    def n_a(self) -> NDArray[np.float64]:
        return self.n1a + self.n2a

    @property
    def n_b(self) -> NDArray[np.float64]:
        return self.n1b + self.n2b

    def splitting_ratio(self) -> NDArray[np.float64]:
        """N_A / (N_A + N_B) (NaN where both are zero)."""
        tot = self.n_a + self.n_b
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tot != 0, self.n_a / tot, np.nan)


@dataclass
class _StatePlan:
    """Precomputed index ranges and masks of one state."""

    rows: slice
    cols: slice
    u: NDArray[np.float64]          # geometry-frame u of the ROI columns
    v: NDArray[np.float64]          # geometry-frame v of the ROI rows
    split_bounds: dict[str, NDArray[np.intp]]  # axis -> (n, 4) [a0, a1, b0, b1] in ROI indices
    pattern_matrix: NDArray[np.float64] | None  # (P_roi, 2 * n_patterns): A masks then B masks


def _bounds(labels: NDArray[np.int8]) -> tuple[int, int, int, int]:
    """[a0, a1) and [b0, b1) of the contiguous A and B runs of a 1-D split labelling."""
    out = []
    for lab in (A, B):
        idx = np.nonzero(labels == lab)[0]
        out += [int(idx[0]), int(idx[-1]) + 1] if idx.size else [0, 0]
    return out[0], out[1], out[2], out[3]


class RegionCounter:
    """Masks of G geometries for both states, and counting in one pass over atom-number images."""

    def __init__(self, geometries: Sequence[Geometry], clouds: Mapping[int, CloudShape],
                 image_shape: tuple[int, int], *, roi_half_px: tuple[float, float] | None = None,
                 roi_sigmas: float = 3.5, scale_with_cloud: bool = True) -> None:
        if len(geometries) == 0:
            raise RegionError("at least one region geometry is needed")
        for g in geometries:
            if not isinstance(g, Geometry):
                raise RegionError(f"{g!r} is not a region geometry (needs name and labels(u, v))")
        missing = [s for s in STATES if s not in clouds]
        if missing:
            raise RegionError(f"cloud shapes of state(s) {missing} are missing")
        if len(image_shape) != 2 or min(image_shape) < 1:
            raise RegionError(f"image_shape must be (H, W), got {image_shape}")
        self.geometries = list(geometries)
        self.clouds = {s: clouds[s] for s in STATES}
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        ref = self.clouds[2]
        if roi_half_px is None:
            roi_half_px = (roi_sigmas * ref.sigma_x_px, roi_sigmas * ref.sigma_y_px)
        self.roi_half_px = (float(roi_half_px[0]), float(roi_half_px[1]))
        if not min(self.roi_half_px) > 0:
            raise RegionError(f"roi_half_px must be positive, got {self.roi_half_px}")
        self.scale_with_cloud = scale_with_cloud
        self._splits = {ax: [i for i, g in enumerate(self.geometries)
                             if isinstance(g, Split) and g.axis == ax] for ax in ("x", "y")}
        split_idx = set(self._splits["x"]) | set(self._splits["y"])
        self._patterns = [i for i in range(len(self.geometries)) if i not in split_idx]
        self._plans = {s: self._plan(s) for s in STATES}

    @property
    def n_geometries(self) -> int:
        return len(self.geometries)

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.geometries]

    def scale(self, state: int) -> tuple[float, float]:
        """(kx, ky): size of state's cloud relative to the |2> cloud (1 without scaling)."""
        if not self.scale_with_cloud:
            return 1.0, 1.0
        c, r = self.clouds[state], self.clouds[2]
        return c.sigma_x_px / r.sigma_x_px, c.sigma_y_px / r.sigma_y_px

    def frame_coordinates(self, state: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Geometry-frame u of every column and v of every row of ``state``'s image."""
        h, w = self.image_shape
        c = self.clouds[state]
        kx, ky = self.scale(state)
        return (np.arange(w) - c.centre_x_px) / kx, (np.arange(h) - c.centre_y_px) / ky

    def _plan(self, state: int) -> _StatePlan:
        u_all, v_all = self.frame_coordinates(state)
        hx, hy = self.roi_half_px
        cols = np.nonzero(np.abs(u_all) <= hx)[0]
        rows = np.nonzero(np.abs(v_all) <= hy)[0]
        if cols.size == 0 or rows.size == 0:
            raise RegionError(f"the region of interest of state |{state}> (centre "
                              f"{self.clouds[state].centre_x_px:.1f}, "
                              f"{self.clouds[state].centre_y_px:.1f} px) lies outside the "
                              f"{self.image_shape} image")
        cs, rs = slice(int(cols[0]), int(cols[-1]) + 1), slice(int(rows[0]), int(rows[-1]) + 1)
        u, v = u_all[cs], v_all[rs]
        bounds = {}
        for ax, coord in (("x", u), ("y", v)):
            idx = self._splits[ax]
            bounds[ax] = np.array([_bounds(self.geometries[i].labels_1d(coord))  # type: ignore
                                   for i in idx], dtype=np.intp).reshape(len(idx), 4)
        matrix = None
        if self._patterns:
            labs = np.stack([self.geometries[i].labels(u[None, :], v[:, None]).ravel()
                             for i in self._patterns], axis=1)
            matrix = np.concatenate([(labs == A), (labs == B)], axis=1).astype(np.float64)
        return _StatePlan(rs, cs, u, v, bounds, matrix)

    def labels(self, index: int, state: int) -> NDArray[np.int8]:
        """Full-image labels (0 = A, 1 = B, -1 = neither) of geometry ``index`` for ``state``."""
        p = self._plans[state]
        out = np.full(self.image_shape, NONE, dtype=np.int8)
        out[p.rows, p.cols] = self.geometries[index].labels(p.u[None, :], p.v[:, None])
        return out

    def masks(self, index: int, state: int) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """Boolean full-image masks (A, B) of geometry ``index`` for ``state``."""
        lab = self.labels(index, state)
        return lab == A, lab == B

    def split_profile(self, index: int, state: int, image: ArrayLike
                      ) -> tuple[NDArray[np.float64], int, tuple[int, int, int, int]]:
        """For a Split geometry: the image projected on its axis inside the ROI (atoms per pixel
        row/column), the image index of the profile's first pixel, and the A and B pixel ranges
        [a0, a1), [b0, b1) as indices into the profile."""
        g = self.geometries[index]
        if not isinstance(g, Split):
            raise RegionError(f"geometry {index} ({g.name}) is not a split")
        p = self._plans[state]
        sub = np.asarray(image, dtype=np.float64)[p.rows, p.cols]
        k = self._splits[g.axis].index(index)
        a0, a1, b0, b1 = (int(v) for v in p.split_bounds[g.axis][k])
        if g.axis == "x":
            return sub.sum(axis=0), int(p.cols.start), (a0, a1, b0, b1)
        return sub.sum(axis=1), int(p.rows.start), (a0, a1, b0, b1)

    def _count_state(self, images: NDArray[np.float64], state: int
                     ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        p = self._plans[state]
        sub = images[..., p.rows, p.cols]
        lead = images.shape[:-2]
        out_a = np.zeros(lead + (self.n_geometries,))
        out_b = np.zeros(lead + (self.n_geometries,))
        for ax, sum_axis in (("x", -2), ("y", -1)):
            idx = self._splits[ax]
            if not idx:
                continue
            proj = sub.sum(axis=sum_axis)
            cum = np.zeros(lead + (proj.shape[-1] + 1,))
            np.cumsum(proj, axis=-1, out=cum[..., 1:])
            bnd = p.split_bounds[ax]
            out_a[..., idx] = cum[..., bnd[:, 1]] - cum[..., bnd[:, 0]]
            out_b[..., idx] = cum[..., bnd[:, 3]] - cum[..., bnd[:, 2]]
        if p.pattern_matrix is not None:
            flat = sub.reshape(lead + (-1,))
            res = flat @ p.pattern_matrix
            n = len(self._patterns)
            out_a[..., self._patterns] = res[..., :n]
            out_b[..., self._patterns] = res[..., n:]
        return out_a, out_b

    def count(self, n1_images: ArrayLike, n2_images: ArrayLike) -> RegionCounts:
        """Atoms in A and B per state for every geometry: images (..., H, W) -> counts (..., G)."""
        im1 = np.asarray(n1_images, dtype=np.float64)
        im2 = np.asarray(n2_images, dtype=np.float64)
        for s, im in ((1, im1), (2, im2)):
            if im.ndim < 2 or im.shape[-2:] != self.image_shape:
                raise RegionError(f"state |{s}> images have shape {im.shape}, expected "
                                  f"(..., {self.image_shape[0]}, {self.image_shape[1]})")
        n1a, n1b = self._count_state(im1, 1)
        n2a, n2b = self._count_state(im2, 2)
        return RegionCounts(n1a, n2a, n1b, n2b)

    def splitting_ratios(self, mean_n1: ArrayLike, mean_n2: ArrayLike) -> NDArray[np.float64]:
        """N_A / (N_A + N_B) of every geometry on the ensemble-average images."""
        return self.count(mean_n1, mean_n2).splitting_ratio()

    @classmethod
    def from_mean_images(cls, geometries: Sequence[Geometry], mean_n1: ArrayLike,
                         mean_n2: ArrayLike, **kwargs: object) -> "RegionCounter":
        """Centre the masks on the ensemble-average atom-number images of |1> and |2>."""
        m1, m2 = np.asarray(mean_n1, float), np.asarray(mean_n2, float)
        if m1.shape != m2.shape or m1.ndim != 2:
            raise RegionError(f"mean images must be 2-D of one shape, got {m1.shape}, {m2.shape}")
        clouds = {1: cloud_shape(m1), 2: cloud_shape(m2)}
        return cls(geometries, clouds, m1.shape, **kwargs)  # type: ignore[arg-type]


def default_roi_half_px(cloud2: CloudShape, roi_sigmas: float = 3.5) -> tuple[float, float]:
    """ROI half-sizes (geometry-frame pixels) used by RegionCounter when none is given."""
    return roi_sigmas * cloud2.sigma_x_px, roi_sigmas * cloud2.sigma_y_px
