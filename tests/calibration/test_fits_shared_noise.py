"""The detectivity fit under shot-to-shot atom-number fluctuations (a real lab's, 40 atoms rms of
530): least squares on n1 vs n2 is biased because N moves both; the jackknife instrumental
variable (the other shots' mean n2 at the same scan point) is not, and its error covers the
scatter. Monte Carlo with fixed seeds on the exact counting model (no images)."""
from __future__ import annotations

import numpy as np

from calibration import fits


def sample(rng: np.random.Generator, ratio: float = 1.05, points: int = 12, shots: int = 6,
           n_mean: float = 530, n_rms: float = 40.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p2 = np.repeat(np.linspace(0.05, 0.95, points), shots)
    n = np.rint(rng.normal(n_mean, n_rms, p2.size))
    k2 = rng.binomial(n.astype(int), p2)
    n2 = 1.0 * k2 + rng.normal(0, 6, p2.size)                 # d2 = 1, 6 atoms detection noise
    n1 = ratio * (n - k2) + rng.normal(0, 6, p2.size)
    groups = np.split(n2, points)
    others = np.concatenate([(g.sum() - g) / (len(g) - 1) for g in groups])
    return n1, n2, others


def test_instrumental_variables_remove_the_bias_of_shared_atom_number_noise() -> None:
    rng = np.random.default_rng(2026)
    ls, iv, iv_err = [], [], []
    for _ in range(400):
        n1, n2, z = sample(rng)
        ls.append(-fits.linear(n2, n1)["slope"])
        f = fits.instrumental_linear(n2, n1, z)
        iv.append(-f["slope"])
        iv_err.append(f.errors["slope"])
    ls_a, iv_a = np.array(ls), np.array(iv)
    sem = iv_a.std(ddof=1) / np.sqrt(iv_a.size)
    # least squares: biased by about -(d1/d2) sigma_N^2 <p> / (N^2 var p), here -0.04
    assert ls_a.mean() - 1.05 < -10 * ls_a.std(ddof=1) / np.sqrt(ls_a.size)
    assert abs(iv_a.mean() - 1.05) < 3 * sem + 0.002
    # the reported error is the scatter (within 15 %)
    assert abs(np.mean(iv_err) / iv_a.std(ddof=1) - 1) < 0.15


def test_without_fluctuations_both_fits_agree() -> None:
    rng = np.random.default_rng(7)
    n1, n2, z = sample(rng, n_rms=0.0, shots=20)
    a, b = -fits.linear(n2, n1)["slope"], -fits.instrumental_linear(n2, n1, z)["slope"]
    assert abs(a - 1.05) < 0.01 and abs(b - 1.05) < 0.01


def test_an_instrument_that_moves_nothing_is_refused() -> None:
    import pytest
    with pytest.raises(ValueError, match="does not move x"):
        fits.instrumental_linear([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
