"""Grouped power-sum accumulators of region spin components, vectorised over region geometries.

Conventions
-----------
* The spin component of region R measured along the shot's direction d is
  S^R_d = (N^R_1 - N^R_2) / 2, in units of hbar (atom numbers may be floats).
* Each shot is assigned to one of ``n_groups`` jackknife groups: the k-th shot of a direction
  (k = 0, 1, ...) goes to group ``k % n_groups``. The same rule is used in batch and in streaming
  form, so both give identical estimates *and* identical jackknife errors.
* Per direction, group and geometry the accumulator holds the power sums
  [n, sum SA, sum SB, sum SA^2, sum SB^2, sum SA*SB, sum N_total] (N_total = N1A+N2A+N1B+N2B).

Memory is O(3 directions x n_groups x geometries x 7), independent of the number of shots.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

DIRECTIONS: tuple[str, str, str] = ("x", "y", "z")
DIRECTION_INDEX: dict[str, int] = {d: i for i, d in enumerate(DIRECTIONS)}
N_FIELDS = 7
(F_N, F_SA, F_SB, F_SAA, F_SBB, F_SAB, F_NTOT) = range(N_FIELDS)
DEFAULT_GROUPS = 20


def spin_components(n1a: ArrayLike, n2a: ArrayLike, n1b: ArrayLike, n2b: ArrayLike
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Return (S^A, S^B, N_total) from the four atom numbers: S = (N1 - N2)/2 (units of hbar)."""
    n1a, n2a, n1b, n2b = (np.asarray(v, dtype=np.float64) for v in (n1a, n2a, n1b, n2b))
    return 0.5 * (n1a - n2a), 0.5 * (n1b - n2b), n1a + n2a + n1b + n2b


def _fields(sa: NDArray[np.float64], sb: NDArray[np.float64], ntot: NDArray[np.float64]
            ) -> NDArray[np.float64]:
    """Stack the seven per-shot contributions along a new last axis."""
    return np.stack([np.ones_like(sa), sa, sb, sa * sa, sb * sb, sa * sb, ntot], axis=-1)


@dataclass
class GroupedSums:
    """Power sums per (direction, jackknife group, geometry, field); see the module docstring."""

    sums: NDArray[np.float64]  # shape (3, n_groups, G, N_FIELDS)
    counts: NDArray[np.int64]  # shots seen per direction, shape (3,)

    @classmethod
    def empty(cls, n_geometries: int, n_groups: int = DEFAULT_GROUPS) -> "GroupedSums":
        """Accumulators for ``n_geometries`` geometries with no shot yet."""
        if n_geometries < 1:
            raise ValueError(f"n_geometries must be >= 1, got {n_geometries}")
        if n_groups < 2:
            raise ValueError(f"n_groups must be >= 2 for a jackknife, got {n_groups}")
        return cls(np.zeros((3, n_groups, n_geometries, N_FIELDS)), np.zeros(3, dtype=np.int64))

    @property
    def n_groups(self) -> int:
        return self.sums.shape[1]

    @property
    def n_geometries(self) -> int:
        return self.sums.shape[2]

    def add_shot(self, direction: str, sa: NDArray[np.float64], sb: NDArray[np.float64],
                 ntot: NDArray[np.float64]) -> None:
        """Add one shot (arrays of shape (G,)) measured along ``direction``: O(G) work."""
        d = DIRECTION_INDEX[direction]
        g = int(self.counts[d] % self.n_groups)
        self.sums[d, g] += _fields(sa, sb, ntot)
        self.counts[d] += 1

    def add_shots(self, dir_index: NDArray[np.intp], sa: NDArray[np.float64],
                  sb: NDArray[np.float64], ntot: NDArray[np.float64]) -> None:
        """Add many shots at once: ``dir_index`` (S,), values (S, G), in shot order."""
        for d in range(3):
            sel = np.flatnonzero(dir_index == d)
            if sel.size == 0:
                continue
            groups = (self.counts[d] + np.arange(sel.size)) % self.n_groups
            contrib = _fields(sa[sel], sb[sel], ntot[sel])  # (s_d, G, F)
            np.add.at(self.sums[d], groups, contrib)
            self.counts[d] += sel.size

    def total(self) -> NDArray[np.float64]:
        """Sums over all groups: shape (3, G, N_FIELDS)."""
        return self.sums.sum(axis=1)

    def leave_one_group_out(self) -> NDArray[np.float64]:
        """Sums with each group removed in turn: shape (n_groups, 3, G, N_FIELDS)."""
        return self.total()[None] - np.moveaxis(self.sums, 1, 0)


@dataclass(frozen=True)
class Moments:
    """Sample moments per geometry derived from power sums (variances with ddof=1).

    Every array has shape (..., G). ``z``/``y`` hold (Var SA, Var SB, Cov(SA, SB)) for the shots of
    that direction; ``mean_x_a``/``mean_x_b`` the means of S^A_x, S^B_x over x shots; ``n_mean`` the
    mean total atom number over all shots; ``n_shots`` the shots per direction (x, y, z).
    """

    var_z_a: NDArray[np.float64]
    var_z_b: NDArray[np.float64]
    cov_z: NDArray[np.float64]
    var_y_a: NDArray[np.float64]
    var_y_b: NDArray[np.float64]
    cov_y: NDArray[np.float64]
    mean_x_a: NDArray[np.float64]
    mean_x_b: NDArray[np.float64]
    n_mean: NDArray[np.float64]
    n_shots: NDArray[np.float64]

    @classmethod
    def from_sums(cls, sums: NDArray[np.float64]) -> "Moments":
        """Moments from power sums of shape (..., 3, G, N_FIELDS)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            def second(d: int) -> tuple[NDArray, NDArray, NDArray]:
                s = sums[..., d, :, :]
                n = s[..., F_N]
                ma, mb = s[..., F_SA] / n, s[..., F_SB] / n
                va = (s[..., F_SAA] - n * ma * ma) / (n - 1)
                vb = (s[..., F_SBB] - n * mb * mb) / (n - 1)
                cab = (s[..., F_SAB] - n * ma * mb) / (n - 1)
                return va, vb, cab

            vza, vzb, cz = second(DIRECTION_INDEX["z"])
            vya, vyb, cy = second(DIRECTION_INDEX["y"])
            sx = sums[..., DIRECTION_INDEX["x"], :, :]
            mxa, mxb = sx[..., F_SA] / sx[..., F_N], sx[..., F_SB] / sx[..., F_N]
            n_all = sums[..., :, :, F_N].sum(axis=-2)
            n_mean = sums[..., :, :, F_NTOT].sum(axis=-2) / n_all
        return cls(vza, vzb, cz, vya, vyb, cy, mxa, mxb, n_mean, sums[..., :, 0, F_N])

    def corrected(self, det_var_a: float | NDArray[np.float64], det_var_b: float | NDArray[np.float64],
                  det_cov: float | NDArray[np.float64] = 0.0) -> "Moments":
        """Moments with a detection-noise (co)variance subtracted, in hbar^2 (same for y and z);
        floats, or arrays of one value per geometry."""
        return Moments(self.var_z_a - det_var_a, self.var_z_b - det_var_b, self.cov_z - det_cov,
                       self.var_y_a - det_var_a, self.var_y_b - det_var_b, self.cov_y - det_cov,
                       self.mean_x_a, self.mean_x_b, self.n_mean, self.n_shots)
