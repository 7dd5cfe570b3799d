"""Region geometries: which pixels belong to region A, region B, or neither.

Coordinates (u, v) are in *geometry-frame pixels* relative to the centre of the |2> cloud (the
first image): u horizontal (image columns, x), v vertical (image rows, y). :mod:`analysis.regions`
maps every pixel of each state's image into this frame (shifting to that state's cloud centre and
scaling by its cloud size), so one geometry defines the masks of both states.
``labels(u, v)`` returns int8: 0 = A, 1 = B, -1 = neither (e.g. the gap).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

A, B, NONE = 0, 1, -1
AXES = ("x", "y")


MIN_REGION_FRACTION = 0.1
"""Splitting ratios N_A / N shown in plots lie in (this, 1 - this): near 0 or 1 one region is nearly
empty and its criteria run off scale."""


class GeometryError(ValueError):
    """A region geometry has an invalid parameter."""


@runtime_checkable
class Geometry(Protocol):
    """Anything with a name and a label function of geometry-frame coordinates."""

    @property
    def name(self) -> str: ...

    def labels(self, u: ArrayLike, v: ArrayLike) -> NDArray[np.int8]: ...


def _check_axis(axis: str) -> None:
    if axis not in AXES:
        raise GeometryError(f"axis must be 'x' or 'y', got {axis!r}")


def _finite(name: str, value: float, *, positive: bool = False, nonneg: bool = False) -> None:
    if not math.isfinite(value):
        raise GeometryError(f"{name} must be finite, got {value!r}")
    if positive and value <= 0:
        raise GeometryError(f"{name} must be > 0, got {value!r}")
    if nonneg and value < 0:
        raise GeometryError(f"{name} must be >= 0, got {value!r}")


@dataclass(frozen=True)
class Split:
    """Split along ``axis`` with a gap: the half-open band [position - gap/2, position + gap/2).

    A is the side of lower coordinate (``a_side="low"``, the default) or higher (``"high"``).
    A gap of integer width w always removes exactly w pixel rows/columns.
    """

    axis: str = "x"
    position_px: float = 0.0
    gap_px: float = 3.0
    a_side: str = "low"

    def __post_init__(self) -> None:
        _check_axis(self.axis)
        _finite("split position_px", self.position_px)
        _finite("split gap_px", self.gap_px, nonneg=True)
        if self.a_side not in ("low", "high"):
            raise GeometryError(f"a_side must be 'low' or 'high', got {self.a_side!r}")

    @property
    def name(self) -> str:
        return (f"split {self.axis} at {self.position_px:+g} px, gap {self.gap_px:g} px"
                + ("" if self.a_side == "low" else ", A high"))

    @property
    def edges_px(self) -> tuple[float, float]:
        """Lower and upper edge of the gap (geometry frame, relative to the |2> centre)."""
        return self.position_px - self.gap_px / 2, self.position_px + self.gap_px / 2

    def labels_1d(self, c: ArrayLike) -> NDArray[np.int8]:
        c = np.asarray(c, dtype=np.float64)
        lo, hi = self.edges_px
        low_lab, high_lab = (A, B) if self.a_side == "low" else (B, A)
        out = np.full(c.shape, NONE, dtype=np.int8)
        out[c < lo] = low_lab
        out[c >= hi] = high_lab
        return out

    def labels(self, u: ArrayLike, v: ArrayLike) -> NDArray[np.int8]:
        u, v = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float))
        return self.labels_1d(u if self.axis == "x" else v)


@dataclass(frozen=True)
class Stripes:
    """Alternating A/B stripes of width period/2 across ``axis`` (stripe k: A if k even)."""

    axis: str = "x"
    period_px: float = 4.0
    phase_px: float = 0.0

    def __post_init__(self) -> None:
        _check_axis(self.axis)
        _finite("stripes period_px", self.period_px, positive=True)
        _finite("stripes phase_px", self.phase_px)

    @property
    def name(self) -> str:
        return f"stripes along {self.axis}, period {self.period_px:g} px"

    def labels(self, u: ArrayLike, v: ArrayLike) -> NDArray[np.int8]:
        u, v = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float))
        c = u if self.axis == "x" else v
        k = np.floor((c - self.phase_px) / (self.period_px / 2))
        return np.mod(k, 2).astype(np.int8)


@dataclass(frozen=True)
class Checkerboard:
    """Square cells of ``cell_px``; cell (i, j) is A when i + j is even."""

    cell_px: float = 4.0
    offset_x_px: float = 0.0
    offset_y_px: float = 0.0

    def __post_init__(self) -> None:
        _finite("checkerboard cell_px", self.cell_px, positive=True)
        _finite("checkerboard offset_x_px", self.offset_x_px)
        _finite("checkerboard offset_y_px", self.offset_y_px)

    @property
    def name(self) -> str:
        return f"checkerboard {self.cell_px:g} px"

    def labels(self, u: ArrayLike, v: ArrayLike) -> NDArray[np.int8]:
        u, v = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float))
        i = np.floor((u - self.offset_x_px) / self.cell_px)
        j = np.floor((v - self.offset_y_px) / self.cell_px)
        return np.mod(i + j, 2).astype(np.int8)


_RANDOM_HALF_CELLS = 256


@lru_cache(maxsize=64)
def _random_table(seed: int, fraction_a: float) -> NDArray[np.int8]:
    rng = np.random.default_rng(seed)
    n = 2 * _RANDOM_HALF_CELLS
    return np.where(rng.random((n, n)) < fraction_a, A, B).astype(np.int8)


@dataclass(frozen=True)
class RandomCells:
    """Cells of ``cell_px`` assigned to A with probability ``fraction_a``, else B (reproducible by seed).

    Cells farther than 256 cells from the centre are in neither region.
    """

    cell_px: float = 2.0
    seed: int = 0
    fraction_a: float = 0.5

    def __post_init__(self) -> None:
        _finite("random cells cell_px", self.cell_px, positive=True)
        if not 0.0 <= self.fraction_a <= 1.0:
            raise GeometryError(f"fraction_a must be in [0, 1], got {self.fraction_a!r}")
        if int(self.seed) != self.seed or self.seed < 0:
            raise GeometryError(f"seed must be a non-negative integer, got {self.seed!r}")

    @property
    def name(self) -> str:
        return f"random cells {self.cell_px:g} px, seed {self.seed}, p_A {self.fraction_a:g}"

    def labels(self, u: ArrayLike, v: ArrayLike) -> NDArray[np.int8]:
        u, v = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float))
        table = _random_table(int(self.seed), float(self.fraction_a))
        i = np.floor(u / self.cell_px).astype(np.int64) + _RANDOM_HALF_CELLS
        j = np.floor(v / self.cell_px).astype(np.int64) + _RANDOM_HALF_CELLS
        n = table.shape[0]
        inside = (i >= 0) & (i < n) & (j >= 0) & (j < n)
        out = np.full(u.shape, NONE, dtype=np.int8)
        out[inside] = table[j[inside], i[inside]]
        return out


@dataclass(frozen=True, eq=False)
class UserPattern:
    """A user label array (0 = A, 1 = B, -1 = neither) of cells ``cell_px`` wide.

    The array's centre (column w/2, row h/2 in cell units) sits on the cloud centre; outside the
    array is neither region.
    """

    pattern: NDArray[np.int8] = field(repr=False)
    cell_px: float = 1.0
    label: str = "user pattern"

    def __post_init__(self) -> None:
        arr = np.asarray(self.pattern)
        if arr.ndim != 2 or arr.size == 0:
            raise GeometryError(f"user pattern must be a non-empty 2-D array, got shape {arr.shape}")
        if not np.isin(arr, (A, B, NONE)).all():
            bad = np.unique(arr[~np.isin(arr, (A, B, NONE))])[:5]
            raise GeometryError(f"user pattern values must be 0 (A), 1 (B) or -1 (neither), "
                                f"found {bad.tolist()}")
        _finite("user pattern cell_px", self.cell_px, positive=True)
        object.__setattr__(self, "pattern", arr.astype(np.int8))

    @property
    def name(self) -> str:
        return self.label

    def labels(self, u: ArrayLike, v: ArrayLike) -> NDArray[np.int8]:
        u, v = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float))
        h, w = self.pattern.shape
        i = np.floor(u / self.cell_px + w / 2).astype(np.int64)
        j = np.floor(v / self.cell_px + h / 2).astype(np.int64)
        inside = (i >= 0) & (i < w) & (j >= 0) & (j < h)
        out = np.full(u.shape, NONE, dtype=np.int8)
        out[inside] = self.pattern[j[inside], i[inside]]
        return out


def split_positions(half_extent_px: float, gap_px: float = 3.0, step_px: float = 1.0
                    ) -> NDArray[np.float64]:
    """Gap centres (relative to the cloud centre) leaving at least 1 px of A and B in +-half_extent."""
    _finite("half_extent_px", half_extent_px, positive=True)
    _finite("step_px", step_px, positive=True)
    lo = math.ceil(-half_extent_px + gap_px / 2 + 1)
    hi = math.floor(half_extent_px - gap_px / 2 - 1)
    if hi < lo:
        raise GeometryError(f"a gap of {gap_px} px does not fit in +-{half_extent_px} px")
    return np.arange(lo, hi + step_px / 2, step_px, dtype=np.float64)


def splitting_ratio_scan(axis: str, half_extent_px: float, gap_px: float = 3.0,
                         step_px: float = 1.0, a_side: str = "low") -> list[Split]:
    """Every gap position across the cloud (Fig. 2a/3a), one Split per position."""
    return [Split(axis, float(p), gap_px, a_side)
            for p in split_positions(half_extent_px, gap_px, step_px)]


def gap_width_scan(axis: str, position_px: float, widths_px: Sequence[float],
                   a_side: str = "low") -> list[Split]:
    """Gap widths at a fixed gap centre (Fig. 3b/3c)."""
    return [Split(axis, float(position_px), float(w), a_side) for w in widths_px]
