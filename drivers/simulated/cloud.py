"""The expanded cloud after time of flight: density per state, atom positions, true region counts.

Coordinates: image pixel coordinates (x = column, horizontal; y = row, vertical, increasing downwards,
i.e. along gravity). Pixel (row r, column c) covers x in [c, c + 1) and y in [r, r + 1); a position
(x, y) falls into pixel (floor(y), floor(x)). Times are measured from the trap switch-off (release).

Model: the BEC is in one spatial mode, so given a shot's N1 and N2 every atom's position is drawn
independently from its state's normalised column density at that state's exposure time. The default
profile is the column-integrated Thomas-Fermi parabola n(x, y) ~ (1 - X^2 - Y^2)^(3/2),
X = (x - x_c)/R_x, Y = (y - y_c)/R_y (rms width R/sqrt(7) per axis); a Gaussian with the same second
moments is available. Each half-width grows ballistically, R(t)^2 = R0^2 + (v t)^2, with R0 and v
solved from the paper's figures (defaults: R = 8.0 px x 9.6 px at 2.2 ms for |2>; 1.5 ms later 0.5 %
larger horizontally and 26 % larger vertically). The centre falls as y(t) = y_ref + v0 (t - t_ref)
+ g (t^2 - t_ref^2)/2, with the effective initial velocity v0 solved so that the cloud imaged 1.5 ms
later sits 150 um lower (the paper's figure; g alone gives ~43 um).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["CloudConfig", "CloudGeometry", "cloud_geometry", "sample_positions", "pixel_probabilities",
           "count_in_mask", "count_in_masks_batched"]

_G_M_PER_S2 = 9.80665


@dataclass(frozen=True)
class CloudConfig:
    """Expanded-cloud geometry (paper defaults). Lengths in um in the object plane unless *_px."""

    profile: Literal["thomas_fermi", "gaussian"] = "thomas_fermi"
    pixel_size_um: float = 1.3
    reference_tof_s: float = 2.2e-3
    """Time of flight at which half_width_um and centre_px are given (the |2> exposure)."""
    half_width_um: tuple[float, float] = (8.0 * 1.3, 9.6 * 1.3)
    """Thomas-Fermi half-widths (x horizontal, y vertical) at reference_tof_s; rms = half-width/sqrt(7)."""
    reference_delay_s: float = 1.5e-3
    """Delay at which the growth and fall below are observed (the |1> exposure after the |2> one)."""
    growth_at_delay: tuple[float, float] = (1.005, 1.26)
    """Size ratio (x, y) of the cloud reference_delay_s later to the cloud at reference_tof_s."""
    fall_at_delay_um: float = 150.0
    """How much lower the centre is reference_delay_s later."""
    centre_px: tuple[float, float] = (128.0, 70.0)
    """Cloud centre (x column, y row) at reference_tof_s, in pixel coordinates."""

    def __post_init__(self) -> None:
        if self.profile not in ("thomas_fermi", "gaussian"):
            raise ValueError(f"CloudConfig.profile must be 'thomas_fermi' or 'gaussian', got {self.profile!r}")
        for name in ("pixel_size_um", "reference_tof_s", "reference_delay_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"CloudConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("half_width_um", "growth_at_delay"):
            pair = getattr(self, name)
            if len(pair) != 2 or not all(v > 0 for v in pair):
                raise ValueError(f"CloudConfig.{name} must be two positive numbers (x, y), got {pair!r}")
        if any(g < 1 for g in self.growth_at_delay):
            raise ValueError(f"CloudConfig.growth_at_delay must be >= 1 (ballistic expansion), "
                             f"got {self.growth_at_delay!r}")
        if len(self.centre_px) != 2:
            raise ValueError(f"CloudConfig.centre_px must be (x, y), got {self.centre_px!r}")


@dataclass(frozen=True)
class CloudGeometry:
    """Where the cloud is on the image at one instant: centre and half-widths in pixels, and the profile."""

    centre_px: tuple[float, float]
    half_width_px: tuple[float, float]
    profile: Literal["thomas_fermi", "gaussian"]

    @property
    def rms_px(self) -> tuple[float, float]:
        """rms width (x, y) in pixels (half-width / sqrt 7 for both profiles)."""
        return (self.half_width_px[0] / math.sqrt(7.0), self.half_width_px[1] / math.sqrt(7.0))


def cloud_geometry(config: CloudConfig, time_s: float) -> CloudGeometry:
    """Cloud geometry at time_s after release (ballistic expansion and fall, see the module docstring)."""
    if not time_s > 0:
        raise ValueError(f"time after release must be > 0 s, got {time_s!r}")
    t_ref, delay = config.reference_tof_s, config.reference_delay_s
    t_late = t_ref + delay
    half = []
    for r_ref, growth in zip(config.half_width_um, config.growth_at_delay):
        v2 = r_ref**2 * (growth**2 - 1.0) / (t_late**2 - t_ref**2)
        r0_sq = r_ref**2 - v2 * t_ref**2
        if r0_sq <= 0:
            raise ValueError(f"CloudConfig: growth_at_delay {growth} is too fast for ballistic expansion "
                             f"from the cloud at {t_ref} s (would need a negative in-trap size)")
        half.append(math.sqrt(r0_sq + v2 * time_s**2) / config.pixel_size_um)
    fall = config.fall_at_delay_um * 1e-6
    v0 = (fall - 0.5 * _G_M_PER_S2 * (t_late**2 - t_ref**2)) / delay
    dy_m = v0 * (time_s - t_ref) + 0.5 * _G_M_PER_S2 * (time_s**2 - t_ref**2)
    centre = (config.centre_px[0], config.centre_px[1] + dy_m * 1e6 / config.pixel_size_um)
    return CloudGeometry(centre_px=centre, half_width_px=(half[0], half[1]), profile=config.profile)


def sample_positions(geometry: CloudGeometry, n_atoms: int, rng: np.random.Generator) -> np.ndarray:
    """Positions (n_atoms, 2) as (x, y) in pixels, drawn independently from the cloud's column density."""
    if n_atoms < 0:
        raise ValueError(f"atom number must be >= 0, got {n_atoms!r}")
    rx, ry = geometry.half_width_px
    if geometry.profile == "gaussian":
        xy = rng.standard_normal((n_atoms, 2)) / math.sqrt(7.0)
    else:
        # Projected 3D Thomas-Fermi: radial CDF F(rho) = 1 - (1 - rho^2)^(5/2), inverted exactly.
        u = rng.random(n_atoms)
        rho = np.sqrt(1.0 - u ** 0.4)
        angle = rng.random(n_atoms) * (2.0 * math.pi)
        xy = np.column_stack((rho * np.cos(angle), rho * np.sin(angle)))
    xy[:, 0] = xy[:, 0] * rx + geometry.centre_px[0]
    xy[:, 1] = xy[:, 1] * ry + geometry.centre_px[1]
    return xy


def pixel_probabilities(geometry: CloudGeometry, frame_shape: tuple[int, int], oversample: int = 8) -> np.ndarray:
    """Probability (H, W) that one atom lies in each pixel (the ensemble-average density; sums to <= 1).

    The Gaussian profile is integrated exactly; the Thomas-Fermi one by midpoint sampling on an
    oversample x oversample sub-grid (error < 1e-3 of the total near the edge for the default sizes).
    """
    height, width = frame_shape
    rx, ry = geometry.half_width_px
    cx, cy = geometry.centre_px
    if geometry.profile == "gaussian":
        from scipy.special import ndtr
        sx, sy = geometry.rms_px
        px = np.diff(ndtr((np.arange(width + 1) - cx) / sx))
        py = np.diff(ndtr((np.arange(height + 1) - cy) / sy))
        return np.outer(py, px)
    out = np.zeros((height, width))
    c0, c1 = max(int(math.floor(cx - rx)), 0), min(int(math.ceil(cx + rx)) + 1, width)
    r0, r1 = max(int(math.floor(cy - ry)), 0), min(int(math.ceil(cy + ry)) + 1, height)
    if c0 >= c1 or r0 >= r1:
        return out
    sub = (np.arange(oversample) + 0.5) / oversample
    xs = ((np.arange(c0, c1)[:, None] + sub[None, :]).ravel() - cx) / rx
    ys = ((np.arange(r0, r1)[:, None] + sub[None, :]).ravel() - cy) / ry
    q = 1.0 - ys[:, None] ** 2 - xs[None, :] ** 2
    density = np.where(q > 0, np.clip(q, 0, None) ** 1.5, 0.0) * (5.0 / (2.0 * math.pi))
    cell = density.reshape(r1 - r0, oversample, c1 - c0, oversample).mean(axis=(1, 3))
    out[r0:r1, c0:c1] = cell / (rx * ry)
    return out


def _pixel_index(positions: np.ndarray, frame_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(flat pixel index, inside-frame flag) of (x, y) positions."""
    positions = np.asarray(positions, dtype=float)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ValueError(f"positions must have shape (n, 2) as (x, y), got {positions.shape}")
    col = np.floor(positions[:, 0]).astype(np.int64)
    row = np.floor(positions[:, 1]).astype(np.int64)
    inside = (col >= 0) & (col < frame_shape[1]) & (row >= 0) & (row < frame_shape[0])
    flat = np.where(inside, row * frame_shape[1] + col, 0)
    return flat, inside


def count_in_mask(positions: np.ndarray, mask: np.ndarray) -> int:
    """Number of positions (n, 2) falling into True pixels of the boolean mask (H, W)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D boolean image, got shape {mask.shape}")
    flat, inside = _pixel_index(positions, mask.shape)
    return int(np.count_nonzero(mask.ravel()[flat] & inside))


def count_in_masks_batched(positions: np.ndarray, shot_index: np.ndarray, n_shots: int,
                           masks: np.ndarray) -> np.ndarray:
    """Counts (n_shots, n_masks) of positions per shot in each mask (n_masks, H, W); shot_index per position."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (n_masks, H, W), got {masks.shape}")
    flat, inside = _pixel_index(positions, masks.shape[1:])
    shot_index = np.asarray(shot_index, dtype=np.int64)
    if shot_index.shape != flat.shape:
        raise ValueError(f"shot_index must have one entry per position ({flat.size}), got {shot_index.shape}")
    hits = masks.reshape(masks.shape[0], -1)[:, flat] & inside[None, :]
    out = np.empty((n_shots, masks.shape[0]), dtype=np.int64)
    for j in range(masks.shape[0]):
        out[:, j] = np.bincount(shot_index[hits[j]], minlength=n_shots)
    return out
