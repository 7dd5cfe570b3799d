"""Detection noise of the regions' spin components, from atom-number images of atom-free shots.

Atom-free shots (probe and reference with no atoms) go through the same image pipeline and masks as
the real shots. Their region "atom numbers" are pure detection noise; the spin components
S^R = (N^R_1 - N^R_2)/2 then give, per geometry, the variances Var(S^A), Var(S^B) and Cov(S^A, S^B)
(units of hbar^2, ddof = 1 over the frames) that the criteria engine may subtract
(analysis.criteria.DetectionNoise, one geometry at a time); analysis.crosstalk.ImagingTerms adds
the partition-weight terms of the point-spread function to them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analysis.regions import RegionCounter


@dataclass(frozen=True)
class RegionDetectionNoise:
    """Per geometry (G,): Var(S^A), Var(S^B), Cov(S^A, S^B) in hbar^2, and the whole-ROI noise."""

    var_a: NDArray[np.float64]
    var_b: NDArray[np.float64]
    cov_ab: NDArray[np.float64]
    n_frames: int
    #: rms atom number per state over each geometry's A and B regions together (atoms)
    rms_atoms_1: NDArray[np.float64]
    rms_atoms_2: NDArray[np.float64]

    def for_geometry(self, index: int) -> dict[str, float]:
        """Keyword arguments for analysis.criteria.DetectionNoise of geometry ``index``."""
        return {"var_a": float(self.var_a[index]), "var_b": float(self.var_b[index]),
                "cov_ab": float(self.cov_ab[index])}


def region_detection_noise(counter: RegionCounter, n1_images: ArrayLike, n2_images: ArrayLike
                           ) -> RegionDetectionNoise:
    """Detection noise of every geometry from (F, H, W) atom images of F >= 2 atom-free shots."""
    im1, im2 = np.asarray(n1_images, float), np.asarray(n2_images, float)
    if im1.ndim != 3 or im1.shape != im2.shape:
        raise ValueError(f"atom-free images must be stacks (F, H, W) of one shape, got "
                         f"{im1.shape} and {im2.shape}")
    if im1.shape[0] < 2:
        raise ValueError(f"at least 2 atom-free frames are needed for a variance, got {im1.shape[0]}")
    c = counter.count(im1, im2)
    sa = 0.5 * (c.n1a - c.n2a)
    sb = 0.5 * (c.n1b - c.n2b)
    da, db = sa - sa.mean(axis=0), sb - sb.mean(axis=0)
    f = im1.shape[0]
    return RegionDetectionNoise(
        var_a=(da * da).sum(axis=0) / (f - 1), var_b=(db * db).sum(axis=0) / (f - 1),
        cov_ab=(da * db).sum(axis=0) / (f - 1), n_frames=f,
        rms_atoms_1=(c.n1a + c.n1b).std(axis=0, ddof=1),
        rms_atoms_2=(c.n2a + c.n2b).std(axis=0, ddof=1))
