"""Shots -> atom-number images (plain or optimal references) -> region counts -> criteria.

* :class:`AtomImager` turns each shot's five frames (FRAME_ORDER) into the two atom-number images.
  With ``basis_frames = K > 0`` it keeps a rolling basis of the last K reference exposures (both
  states' references of recent shots, dark-subtracted; the current shot's references enter first)
  and uses the optimal reference of each atom exposure (analysis.reference) instead of its own.
* :func:`image_stack` runs an imager over many shots (offline, two-pass analyses: the masks need the
  ensemble average first).
* The streaming form is the run's monitor (analysis.monitor.RunMonitor: masks centred on the warm-up's
  mean images, then every shot counted once for all geometries into
  :class:`analysis.criteria.StreamingCriteria`), tested equal to a batch analysis.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analysis.geometries import Geometry
from analysis.imaging import (AtomImage, ImagingCalibration, ShotImages, atoms_from_intensities,
                              shot_atom_images, split_frames)
from analysis.reference import ReferenceBasis, exclusion_fit_mask
from analysis.regions import CloudShape


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
