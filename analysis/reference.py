"""Optimal reference images (Ockeloen et al., PRA 82, 061606 (2010)).

The probe intensity I_in behind the atoms is not the shot's own reference exposure: fringes move
and the reference has its own photon shot noise. The optimal reference for an atom frame A is the
linear combination R_opt = sum_k c_k R_k of a basis of recent reference frames R_k that best matches
A in least squares on the pixels *outside* the atoms (the fit mask):
    c = argmin sum_{p in fit mask} (A_p - sum_k c_k R_k,p)^2,   i.e.  G c = y,
    G_jk = sum_p R_j,p R_k,p,   y_k = sum_p R_k,p A_p.
The Gram matrix G is updated incrementally when a frame enters or leaves the rolling basis of the
last ``max_frames`` references (O(K P) per new frame), so one atom frame costs O(K P) (P fit pixels).
All frames are dark-subtracted intensities in counts.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


class ReferenceBasisError(ValueError):
    """The reference basis cannot produce a reference (empty, wrong shape, bad mask)."""


class ReferenceBasis:
    """A rolling basis of the last ``max_frames`` reference frames and their Gram matrix."""

    def __init__(self, max_frames: int, fit_mask: ArrayLike, *, rcond: float = 1e-11) -> None:
        if int(max_frames) < 1:
            raise ReferenceBasisError(f"max_frames must be >= 1, got {max_frames}")
        mask = np.asarray(fit_mask, dtype=bool)
        if mask.ndim != 2:
            raise ReferenceBasisError(f"fit_mask must be a 2-D boolean image, got shape {mask.shape}")
        if mask.sum() < int(max_frames):
            raise ReferenceBasisError(f"fit_mask has {int(mask.sum())} pixels, fewer than the "
                                      f"{max_frames} basis frames: the fit is underdetermined")
        self.max_frames = int(max_frames)
        self.rcond = float(rcond)
        self._mask = mask
        self._flat_mask = np.flatnonzero(mask.ravel())
        self._frames = np.zeros((self.max_frames, mask.size))
        self._fit = np.zeros((self.max_frames, self._flat_mask.size))
        self._sat = np.zeros((self.max_frames, mask.size), dtype=bool)
        self._gram = np.zeros((self.max_frames, self.max_frames))
        self._n = 0           # frames held
        self._next = 0        # slot the next frame overwrites
        self._solver: NDArray[np.float64] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self._mask.shape

    @property
    def fit_mask(self) -> NDArray[np.bool_]:
        return self._mask

    def __len__(self) -> int:
        return self._n

    def add(self, ref: ArrayLike, *, saturated: ArrayLike | None = None) -> None:
        """Add a dark-subtracted reference frame (counts); the oldest leaves when full."""
        r = np.asarray(ref, dtype=np.float64)
        if r.shape != self.shape:
            raise ReferenceBasisError(f"reference frame has shape {r.shape}, basis expects "
                                      f"{self.shape}")
        if not np.all(np.isfinite(r)):
            raise ReferenceBasisError("reference frame contains non-finite values")
        flat = r.ravel()
        fit = flat[self._flat_mask]
        slot = self._next
        self._frames[slot] = flat
        self._fit[slot] = fit
        self._sat[slot] = (False if saturated is None
                           else np.asarray(saturated, dtype=bool).ravel())
        row = self._fit @ fit
        self._gram[slot, :] = row
        self._gram[:, slot] = row
        self._n = min(self._n + 1, self.max_frames)
        self._next = (slot + 1) % self.max_frames
        self._solver = None

    def _active(self) -> NDArray[np.intp]:
        return np.arange(self._n)

    def _pinv(self) -> NDArray[np.float64]:
        if self._solver is None:
            act = self._active()
            g = self._gram[np.ix_(act, act)]
            # eigen-decomposition pseudo-inverse: references are nearly collinear
            w, v = np.linalg.eigh(g)
            keep = w > self.rcond * w.max()
            self._solver = (v[:, keep] / w[keep]) @ v[:, keep].T
        return self._solver

    def coefficients(self, atoms: ArrayLike) -> NDArray[np.float64]:
        """Least-squares coefficients c (K,) of the basis for a dark-subtracted atom frame."""
        if self._n == 0:
            raise ReferenceBasisError("the reference basis is empty: add reference frames first")
        a = np.asarray(atoms, dtype=np.float64)
        if a.shape != self.shape:
            raise ReferenceBasisError(f"atom frame has shape {a.shape}, basis expects {self.shape}")
        y = self._fit[: self._n] @ a.ravel()[self._flat_mask]
        return self._pinv() @ y

    def reference(self, atoms: ArrayLike) -> NDArray[np.float64]:
        """The optimal reference image (counts) for a dark-subtracted atom frame."""
        c = self.coefficients(atoms)
        return (c @ self._frames[: self._n]).reshape(self.shape)

    def saturated(self) -> NDArray[np.bool_]:
        """Pixels saturated in any basis frame (their optimal reference is unreliable)."""
        return self._sat[: self._n].any(axis=0).reshape(self.shape)

    def residual_rms(self, atoms: ArrayLike) -> float:
        """rms of atoms - optimal reference over the fit mask (counts): a fringe-removal diagnostic."""
        a = np.asarray(atoms, dtype=np.float64)
        d = (a - self.reference(a)).ravel()[self._flat_mask]
        return float(np.sqrt(np.mean(d * d)))

    def info(self) -> dict[str, Any]:
        return {"frames": self._n, "max_frames": self.max_frames,
                "fit_pixels": int(self._flat_mask.size)}


def exclusion_fit_mask(shape: tuple[int, int], boxes: list[tuple[float, float, float, float]]
                       ) -> NDArray[np.bool_]:
    """Fit mask = True outside every box (x0, x1, y0, y1 in pixel coordinates, inclusive bounds)."""
    h, w = shape
    mask = np.ones((h, w), dtype=bool)
    y, x = np.arange(h)[:, None], np.arange(w)[None, :]
    for x0, x1, y0, y1 in boxes:
        mask &= ~((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))
    if not mask.any():
        raise ReferenceBasisError(f"the atom boxes {boxes} cover the whole {shape} frame: no pixel "
                                  f"is left to fit the reference")
    return mask
