"""Shots -> atom-number images (plain or optimal references) -> region counts -> criteria.

* :class:`AtomImager` turns each shot's five frames (FRAME_ORDER) into the two atom-number images.
  With ``basis_frames = K > 0`` it keeps a rolling basis of the last K reference exposures (both
  states' references of recent shots, dark-subtracted; the current shot's references enter first)
  and uses the optimal reference of each atom exposure (analysis.reference) instead of its own.
* :func:`image_stack` runs an imager over many shots (offline, two-pass analyses: the masks need the
  ensemble average first).
* :class:`LiveRegionMonitor` is the streaming form: it buffers the first ``warmup_shots`` images,
  centres the masks on their average, then counts every shot once for all geometries and feeds
  :class:`analysis.criteria.StreamingCriteria`. The masks stay fixed after the warm-up, so every
  shot is counted with the same masks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analysis.criteria import CriteriaResult, DetectionNoise, StreamingCriteria
from analysis.geometries import Geometry
from analysis.imaging import (AtomImage, ImagingCalibration, ShotImages, atoms_from_intensities,
                              shot_atom_images, split_frames)
from analysis.reference import ReferenceBasis, exclusion_fit_mask
from analysis.regions import CloudShape, RegionCounter, RegionCounts, cloud_shape


class AtomImager:
    """Frames of one shot -> ShotImages, with the plain own reference or optimal references."""

    def __init__(self, cal: ImagingCalibration, *, basis_frames: int = 0,
                 fit_mask: ArrayLike | None = None) -> None:
        self.cal = cal
        self.basis: ReferenceBasis | None = None
        if basis_frames:
            if fit_mask is None:
                raise ValueError("optimal references need a fit_mask (True outside the atoms); "
                                 "see fit_mask_around_clouds")
            self.basis = ReferenceBasis(basis_frames, fit_mask)

    def __call__(self, frames: ArrayLike | Mapping[str, ArrayLike]) -> ShotImages:
        if self.basis is None:
            return shot_atom_images(frames, self.cal)
        f = split_frames(frames)
        level = self.cal.saturation_counts
        dark = f["dark"].astype(np.float64)
        for name in ("ref2", "ref1"):
            self.basis.add(f[name] - dark, saturated=f[name] >= level)
        basis_sat = self.basis.saturated()
        out: dict[int, AtomImage] = {}
        for s in (1, 2):
            raw = f[f"atoms{s}"]
            i_out = raw - dark
            out[s] = atoms_from_intensities(i_out, self.basis.reference(i_out), self.cal, s,
                                            saturated=(raw >= level) | basis_sat)
        return ShotImages(out[1], out[2])


def fit_mask_around_clouds(shape: tuple[int, int], clouds: Iterable[CloudShape],
                           n_sigma: float = 5.0) -> NDArray[np.bool_]:
    """True outside boxes of +-n_sigma rms around each cloud: the pixels for the reference fit."""
    boxes = [(c.centre_x_px - n_sigma * c.sigma_x_px, c.centre_x_px + n_sigma * c.sigma_x_px,
              c.centre_y_px - n_sigma * c.sigma_y_px, c.centre_y_px + n_sigma * c.sigma_y_px)
             for c in clouds]
    return exclusion_fit_mask(shape, boxes)


@dataclass(frozen=True)
class ImageStack:
    """Atom-number images of S shots, (S, H, W) per state, and bad-pixel counts (S,) per state."""

    n1: NDArray[np.floating]
    n2: NDArray[np.floating]
    bad_pixels_1: NDArray[np.int64]
    bad_pixels_2: NDArray[np.int64]

    def mean_images(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        return self.n1.mean(axis=0, dtype=np.float64), self.n2.mean(axis=0, dtype=np.float64)


def image_stack(shots: Iterable[ArrayLike | Mapping[str, ArrayLike]], imager: AtomImager, *,
                dtype: type = np.float64) -> ImageStack:
    """Apply ``imager`` to every shot's frames, in order (optimal-reference bases roll along)."""
    n1: list[NDArray[np.float64]] = []
    n2: list[NDArray[np.float64]] = []
    b1: list[int] = []
    b2: list[int] = []
    for frames in shots:
        im = imager(frames)
        n1.append(im.n1.atoms.astype(dtype, copy=False))
        n2.append(im.n2.atoms.astype(dtype, copy=False))
        b1.append(int(im.n1.n_bad))
        b2.append(int(im.n2.n_bad))
    if not n1:
        raise ValueError("no shots given")
    return ImageStack(np.stack(n1), np.stack(n2), np.array(b1), np.array(b2))


GeometrySource = Sequence[Geometry] | Callable[[CloudShape, tuple[float, float]], Sequence[Geometry]]


class LiveRegionMonitor:
    """Live counts and criteria for many geometries; masks fixed from the first shots' average.

    ``geometries``: a list, or a callable (|2> cloud shape, ROI half-sizes px) -> list, called once
    when the masks are centred (e.g. to lay a splitting-ratio scan across the measured cloud).
    """

    def __init__(self, imager: AtomImager, geometries: GeometrySource, *, warmup_shots: int = 20,
                 roi_sigmas: float = 3.5, detection_noise: DetectionNoise | None = None,
                 confidence: float = 0.95) -> None:
        if warmup_shots < 1:
            raise ValueError(f"warmup_shots must be >= 1, got {warmup_shots}")
        self.imager = imager
        self._geometries = geometries
        self.warmup_shots = int(warmup_shots)
        self.roi_sigmas = roi_sigmas
        self._detection_noise = detection_noise
        self._confidence = confidence
        self._buffer: list[tuple[str, ShotImages]] = []
        self.counter: RegionCounter | None = None
        self.criteria: StreamingCriteria | None = None
        self.counts: list[RegionCounts] = []
        self.directions: list[str] = []

    @property
    def ready(self) -> bool:
        return self.criteria is not None and self.criteria.ready()

    def add_shot(self, direction: str, frames: ArrayLike | Mapping[str, ArrayLike]) -> ShotImages:
        """Image one shot and count it (after the warm-up); returns its atom-number images."""
        if str(direction).strip().lower() not in ("x", "y", "z"):
            raise ValueError(f"unknown direction {direction!r}: expected x, y or z")
        images = self.imager(frames)
        if self.counter is None:
            self._buffer.append((direction, images))
            if len(self._buffer) >= self.warmup_shots:
                self._centre_masks()
        else:
            self._count(direction, images)
        return images

    def _centre_masks(self) -> None:
        m1 = np.mean([im.n1.atoms for _, im in self._buffer], axis=0)
        m2 = np.mean([im.n2.atoms for _, im in self._buffer], axis=0)
        clouds = {1: cloud_shape(m1), 2: cloud_shape(m2)}
        roi = (self.roi_sigmas * clouds[2].sigma_x_px, self.roi_sigmas * clouds[2].sigma_y_px)
        geoms = (self._geometries(clouds[2], roi) if callable(self._geometries)
                 else self._geometries)
        self.counter = RegionCounter(list(geoms), clouds, m1.shape, roi_half_px=roi)
        self.criteria = StreamingCriteria(self.counter.n_geometries,
                                          detection_noise=self._detection_noise,
                                          confidence=self._confidence)
        buffered, self._buffer = self._buffer, []
        for d, im in buffered:
            self._count(d, im)

    def _count(self, direction: str, images: ShotImages) -> None:
        assert self.counter is not None and self.criteria is not None
        c = self.counter.count(images.n1.atoms, images.n2.atoms)
        self.criteria.add(direction, c.n1a, c.n2a, c.n1b, c.n2b)
        self.counts.append(c)
        self.directions.append(direction)

    def result(self) -> CriteriaResult:
        """Current criteria (raises analysis.criteria.CriteriaError while too few shots)."""
        if self.criteria is None:
            raise RuntimeError(f"masks not centred yet: {len(self._buffer)} of "
                               f"{self.warmup_shots} warm-up shots received")
        return self.criteria.result()
