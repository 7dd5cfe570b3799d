"""Region masks per state and atom counts N1A, N2A, N1B, N2B for many geometries in one pass.

Conventions
-----------
* Image coordinates: pixel (row r, column c) covers x in [c - 1/2, c + 1/2), y in [r - 1/2, r + 1/2)
  (centre at integer coordinates).
* The masks of both states are centred on the ensemble-average image of that state
  (:func:`analysis.cloud.cloud_shape`). A point (x, y) of state s's image maps to the geometry frame
  (:mod:`analysis.geometries`) as u = (x - cx_s)/kx_s, v = (y - cy_s)/ky_s with k_s = sigma_s/sigma_2
  per axis (``scale_with_cloud``; else 1): the |1> masks follow the lower, ~26 % taller |1> cloud.
* Every region lies in the region of interest (ROI) u in [-hx, hx), v in [-hy, hy) (geometry-frame
  pixels; default 3.5 rms widths of the |2> cloud).
* Masks are *weights* in [0, 1]. ``fractional=True`` (default): a pixel's weight is the fraction of
  its area inside the region (splits: exact; patterns: 4 x 4 sub-samples per pixel), so a region
  edge may sit anywhere, not only between pixels. Binary masks quantise every edge to the pixel
  grid, so the |1> and |2> masks of one geometry cut their clouds at fractions that differ by up to
  half a pixel's worth of atoms (several % near the centre); the criteria read that mismatch as
  spin correlation. ``fractional=False`` gives binary masks (pixel centre inside the region).
* Splits along one axis are counted from the ROI image projected on that axis and its cumulative
  sum (a few operations per geometry and region, independent of the region's size); other patterns
  by one matrix product of the ROI pixels with the stacked weights.
"""
from __future__ import annotations

import math
import dataclasses
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analysis.cloud import CloudError, CloudShape, cloud_shape
from analysis.geometries import A, B, NONE, Geometry, Split

__all__ = ["CloudError", "CloudShape", "RegionCounter", "RegionCounts", "RegionError",
           "cloud_shape", "default_roi_half_px", "interval_weights"]

STATES = (1, 2)
SUBSAMPLES = 4


class RegionError(ValueError):
    """Masks cannot be built (ROI outside the image, bad geometries or image shapes)."""


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


def interval_weights(n: int, x0: float, x1: float, start: int = 0) -> NDArray[np.float64]:
    """Overlap of pixels start..start+n-1 (each [c - 1/2, c + 1/2)) with the interval [x0, x1)."""
    c = start + np.arange(n, dtype=np.float64)
    return np.clip(np.minimum(c + 0.5, x1) - np.maximum(c - 0.5, x0), 0.0, 1.0)


def _snap(x: float) -> float:
    """Binary masks: the pixel-grid edge such that pixel c is inside [x, ...) iff c >= x."""
    return math.ceil(x) - 0.5


@dataclass
class _StatePlan:
    """Precomputed ROI, split intervals and pattern weights of one state."""

    rows: slice
    cols: slice
    wx: NDArray[np.float64]                 # ROI weight of each bbox column
    wy: NDArray[np.float64]                 # ROI weight of each bbox row
    intervals: dict[str, NDArray[np.float64]]  # axis -> (n, 4): A [x0, x1), B [x0, x1), image coords
    pattern_matrix: NDArray[np.float64] | None  # (P_bbox, 2 n_patterns): A weights, then B weights


class RegionCounter:
    """Masks of G geometries for both states, and counting in one pass over atom-number images."""

    def __init__(self, geometries: Sequence[Geometry], clouds: Mapping[int, CloudShape],
                 image_shape: tuple[int, int], *, roi_half_px: tuple[float, float] | None = None,
                 roi_sigmas: float = 3.5, scale_with_cloud: bool = True,
                 fractional: bool = True) -> None:
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
        if roi_half_px is None:
            roi_half_px = default_roi_half_px(self.clouds[2], roi_sigmas)
        self.roi_half_px = (float(roi_half_px[0]), float(roi_half_px[1]))
        if not min(self.roi_half_px) > 0:
            raise RegionError(f"roi_half_px must be positive, got {self.roi_half_px}")
        self.scale_with_cloud = scale_with_cloud
        self.fractional = fractional
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

    def to_frame(self, state: int, x: ArrayLike, y: ArrayLike
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Geometry-frame (u, v) of image points (x, y) of ``state`` (pixels)."""
        c = self.clouds[state]
        kx, ky = self.scale(state)
        return ((np.asarray(x, float) - c.centre_x_px) / kx,
                (np.asarray(y, float) - c.centre_y_px) / ky)

    def _to_image(self, state: int, axis: str, coord: float) -> float:
        c = self.clouds[state]
        kx, ky = self.scale(state)
        x = (c.centre_x_px + coord * kx) if axis == "x" else (c.centre_y_px + coord * ky)
        return x if self.fractional else _snap(x)

    def roi_bbox(self, state: int) -> tuple[slice, slice]:
        """(rows, cols) of the pixels that overlap the ROI of ``state``."""
        p = self._plans[state]
        return p.rows, p.cols

    def point_labels(self, index: int, state: int, x: ArrayLike, y: ArrayLike
                     ) -> NDArray[np.int8]:
        """Labels (0 = A, 1 = B, -1 = neither) of points (x, y) of ``state``'s image (continuous)."""
        u, v = self.to_frame(state, x, y)
        hx, hy = self.roi_half_px
        lab = self.geometries[index].labels(u, v)
        return np.where((u >= -hx) & (u < hx) & (v >= -hy) & (v < hy), lab, NONE).astype(np.int8)

    def _plan(self, state: int) -> _StatePlan:
        h, w = self.image_shape
        hx, hy = self.roi_half_px
        x0, x1 = self._to_image(state, "x", -hx), self._to_image(state, "x", hx)
        y0, y1 = self._to_image(state, "y", -hy), self._to_image(state, "y", hy)
        c0, c1 = max(math.floor(x0 - 0.5) + 1, 0), min(math.ceil(x1 + 0.5), w)
        r0, r1 = max(math.floor(y0 - 0.5) + 1, 0), min(math.ceil(y1 + 0.5), h)
        if c1 <= c0 or r1 <= r0:
            c = self.clouds[state]
            raise RegionError(f"the region of interest of state |{state}> (centre "
                              f"{c.centre_x_px:.1f}, {c.centre_y_px:.1f} px) lies outside the "
                              f"{self.image_shape} image")
        wx = interval_weights(c1 - c0, x0, x1, c0)
        wy = interval_weights(r1 - r0, y0, y1, r0)
        intervals = {}
        for ax, (lo_roi, hi_roi) in (("x", (x0, x1)), ("y", (y0, y1))):
            rows = []
            for i in self._splits[ax]:
                g = self.geometries[i]
                assert isinstance(g, Split)
                lo, hi = (self._to_image(state, ax, e) for e in g.edges_px)
                low = (lo_roi, max(min(lo, hi_roi), lo_roi))
                high = (min(max(hi, lo_roi), hi_roi), hi_roi)
                rows.append(low + high if g.a_side == "low" else high + low)
            intervals[ax] = np.array(rows, dtype=np.float64).reshape(len(rows), 4)
        matrix = None
        if self._patterns:
            matrix = self._pattern_weights(state, slice(r0, r1), slice(c0, c1))
        return _StatePlan(slice(r0, r1), slice(c0, c1), wx, wy, intervals, matrix)

    def _pattern_weights(self, state: int, rows: slice, cols: slice) -> NDArray[np.float64]:
        s = SUBSAMPLES if self.fractional else 1
        offs = (np.arange(s) + 0.5) / s - 0.5
        ys = (np.arange(rows.start, rows.stop)[:, None] + offs[None, :]).ravel()
        xs = (np.arange(cols.start, cols.stop)[:, None] + offs[None, :]).ravel()
        nr, nc = rows.stop - rows.start, cols.stop - cols.start
        out = np.empty((nr * nc, 2 * len(self._patterns)))
        for k, i in enumerate(self._patterns):
            lab = self.point_labels(i, state, xs[None, :], ys[:, None]).reshape(nr, s, nc, s)
            for j, region in enumerate((A, B)):
                out[:, k + j * len(self._patterns)] = (lab == region).mean(axis=(1, 3)).ravel()
        return out

    def weights(self, index: int, state: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Full-image mask weights in [0, 1] (A, B) of geometry ``index`` for ``state``."""
        p = self._plans[state]
        g = self.geometries[index]
        out = (np.zeros(self.image_shape), np.zeros(self.image_shape))
        if isinstance(g, Split):
            k = self._splits[g.axis].index(index)
            iv = p.intervals[g.axis][k]
            for j in range(2):
                if g.axis == "x":
                    f = interval_weights(p.cols.stop - p.cols.start, iv[2 * j], iv[2 * j + 1],
                                         p.cols.start)
                    out[j][p.rows, p.cols] = p.wy[:, None] * f[None, :]
                else:
                    f = interval_weights(p.rows.stop - p.rows.start, iv[2 * j], iv[2 * j + 1],
                                         p.rows.start)
                    out[j][p.rows, p.cols] = f[:, None] * p.wx[None, :]
            return out
        assert p.pattern_matrix is not None
        k, n = self._patterns.index(index), len(self._patterns)
        shape = (p.rows.stop - p.rows.start, p.cols.stop - p.cols.start)
        for j in range(2):
            out[j][p.rows, p.cols] = p.pattern_matrix[:, k + j * n].reshape(shape)
        return out

    def split_profile(self, index: int, state: int, image: ArrayLike
                      ) -> tuple[NDArray[np.float64], int, NDArray[np.float64]]:
        """For a Split: the image projected on its axis with the ROI weights of the other axis
        (atoms per pixel column/row of the bounding box), the image index of the profile's first
        pixel, and the intervals [A0, A1, B0, B1) of A and B in image coordinates."""
        g = self.geometries[index]
        if not isinstance(g, Split):
            raise RegionError(f"geometry {index} ({g.name}) is not a split")
        p = self._plans[state]
        sub = np.asarray(image, dtype=np.float64)[p.rows, p.cols]
        iv = p.intervals[g.axis][self._splits[g.axis].index(index)]
        if g.axis == "x":
            return p.wy @ sub, int(p.cols.start), iv.copy()
        return sub @ p.wx, int(p.rows.start), iv.copy()

    def _count_state(self, images: NDArray[np.float64], state: int
                     ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        p = self._plans[state]
        sub = images[..., p.rows, p.cols]
        lead = images.shape[:-2]
        out_a = np.zeros(lead + (self.n_geometries,))
        out_b = np.zeros(lead + (self.n_geometries,))
        for ax in ("x", "y"):
            idx = self._splits[ax]
            if not idx:
                continue
            if ax == "x":
                proj, start = np.einsum("...rc,r->...c", sub, p.wy), p.cols.start
            else:
                proj, start = sub @ p.wx, p.rows.start
            n = proj.shape[-1]
            cum = np.zeros(lead + (n + 1,))
            np.cumsum(proj, axis=-1, out=cum[..., 1:])
            padded = np.zeros(lead + (n + 1,))
            padded[..., :n] = proj
            # F(t) = C[k] + (t - k) p[k]: atoms left of t (pixel k spans [k, k+1) in t)
            t = np.clip(p.intervals[ax] - (start - 0.5), 0.0, n)
            k = np.minimum(np.floor(t).astype(np.intp), n)
            frac = t - k
            f = cum[..., k] + frac * padded[..., k]          # (..., n_splits, 4)
            out_a[..., idx] = f[..., 1] - f[..., 0]
            out_b[..., idx] = f[..., 3] - f[..., 2]
        if p.pattern_matrix is not None:
            res = sub.reshape(lead + (-1,)) @ p.pattern_matrix
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


ATOM_FREE_MARGIN_PX = 4.0
"""Pixels between a cloud's counting box and the same box moved onto atom-free pixels."""


def atom_free_clouds(clouds: Mapping[int, CloudShape], image_shape: tuple[int, int],
                     half_x_px: Mapping[int, float]) -> dict[int, CloudShape] | None:
    """Each state's cloud shape moved sideways (along x, right if there is room, else left) by two
    half-widths of its counting box plus ATOM_FREE_MARGIN_PX, so that the same masks count atom-free
    pixels of the same image (detection noise measured beside the clouds). ``half_x_px``: the box's
    half-width per state, in that state's image pixels. None if either side lacks the room."""
    w = image_shape[1]
    out = {}
    for state, c in clouds.items():
        half = half_x_px[state]
        need = 2 * half + ATOM_FREE_MARGIN_PX
        if w - 1 - (c.centre_x_px + half) >= need:
            dx = need
        elif c.centre_x_px - half >= need:
            dx = -need
        else:
            return None
        out[state] = dataclasses.replace(c, centre_x_px=c.centre_x_px + dx)
    return out
