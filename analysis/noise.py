"""The detection noise the corrected criteria subtract, with the uncertainty of its estimate.

Used through :mod:`analysis.criteria` (which re-exports :class:`DetectionNoise`). Conventions: hbar^2
for the (co)variances of the spin components S^R = (N^R_1 - N^R_2)/2, hbar^4 for their covariance.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class DetectionNoise:
    """The (co)variance to subtract from Var(S^A), Var(S^B), Cov(S^A, S^B), in hbar^2: detection
    noise, possibly combined with imaging terms (a negative variance adds a deficit back, e.g.
    analysis.crosstalk.ImagingTerms). Scalars (the same for every geometry) or arrays
    of shape (G,), one value per geometry.
    """

    var_a: float | NDArray[np.float64]
    var_b: float | NDArray[np.float64]
    cov_ab: float | NDArray[np.float64] = 0.0
    #: the uncertainty of (var_a, var_b, cov_ab): their 3 x 3 covariance matrix, hbar^4, shape
    #: (3, 3) or (G, 3, 3) (None: known exactly). Propagated into the corrected errors.
    covariance: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        for name in ("var_a", "var_b", "cov_ab"):
            v = np.asarray(getattr(self, name), dtype=np.float64)
            if v.ndim > 1 or not np.all(np.isfinite(v)):
                raise ValueError(f"detection noise {name} must be finite (a number or one per "
                                 f"geometry), got {getattr(self, name)}")
        if self.covariance is not None:
            c = np.asarray(self.covariance, dtype=np.float64)
            if c.shape[-2:] != (3, 3) or c.ndim > 3 or not np.all(np.isfinite(c)):
                raise ValueError(f"detection noise covariance must be finite, shape (3, 3) or "
                                 f"(G, 3, 3), got shape {c.shape}")

    @classmethod
    def from_samples(cls, k: ArrayLike, var_a: ArrayLike, var_b: ArrayLike, cov_ab: ArrayLike
                     ) -> "DetectionNoise":
        """Sample (co)variances of ``k`` atom-free readings (ddof = 1), with their sampling
        covariance for Gaussian noise (Wishart): Var(s_a^2) = 2 s_a^4/(k-1), Var(s_b^2) =
        2 s_b^4/(k-1), Var(c) = (s_a^2 s_b^2 + c^2)/(k-1), Cov(s_a^2, s_b^2) = 2 c^2/(k-1),
        Cov(s_a^2, c) = 2 s_a^2 c/(k-1), Cov(s_b^2, c) = 2 s_b^2 c/(k-1)."""
        k_, va, vb, c = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64)
                                              for v in (k, var_a, var_b, cov_ab)))
        f = 1.0 / (k_ - 1.0)
        m = np.stack([np.stack([2 * va * va, 2 * c * c, 2 * va * c], -1),
                      np.stack([2 * c * c, 2 * vb * vb, 2 * vb * c], -1),
                      np.stack([2 * va * c, 2 * vb * c, va * vb + c * c], -1)], -2) * f[..., None, None]
        return cls(va, vb, c, m)

    def shifted(self, var_a: ArrayLike = 0.0, var_b: ArrayLike = 0.0, cov_ab: ArrayLike = 0.0,
                covariance: NDArray[np.float64] | None = None) -> "DetectionNoise":
        """The same noise with terms added, e.g. minus the PSF partition terms; ``covariance``
        (hbar^4, (3, 3) or (G, 3, 3)): the added terms' own uncertainty, independent of the
        noise's, so the two covariances add (None: the added terms are exact)."""
        total = self.covariance
        if covariance is not None:
            total = np.asarray(covariance, dtype=np.float64) if total is None else total + covariance
        return DetectionNoise(np.asarray(self.var_a) + np.asarray(var_a),
                              np.asarray(self.var_b) + np.asarray(var_b),
                              np.asarray(self.cov_ab) + np.asarray(cov_ab), total)

    def at(self, geometry: int) -> tuple[float, float, float]:
        """(var_a, var_b, cov_ab) of one geometry."""
        def one(v: Any) -> float:
            a = np.asarray(v, dtype=np.float64)
            return float(a if a.ndim == 0 else a[geometry])
        return one(self.var_a), one(self.var_b), one(self.cov_ab)
