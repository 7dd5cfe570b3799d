"""Split-sample values of the criteria whose gains g are optimised on the data.

Minimising over g on the same shots that estimate the variances biases the criteria low: on a
coherent state with a few hundred shots per direction the minimised E_Ent comes out about one
standard error below its true value (>= 1). The bias comes from a minimum over a nearly flat
valley, which the jackknife bias estimate misses. steerlab therefore reports a split-sample
value: the jackknife groups are split into two interleaved halves (even and odd groups, so slow
drifts affect both alike), the gains are fitted on one half and the criterion is evaluated with
them on the other half, and the two cross evaluations are averaged:

    E_split = [E(moments_odd; g_even) + E(moments_even; g_odd)] / 2.

Each evaluation uses gains independent of the data it is evaluated on, so E_split is not biased
low by the optimisation. Its error is a delete-a-group jackknife in which the gains of the half
that loses the group are refitted. ``plain - E_split`` is the reported optimisation bias, and the
significance of a violation is computed from E_split and its error. Everything comes from the
grouped power sums, so batch and streaming agree exactly.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from analysis.formulas import all_criteria
from analysis.moments import F_N, GroupedSums, Moments

Array = NDArray[np.float64]
OPTIMISED = ("E_Ent", "E_EPR_AB", "E_EPR_BA")


def _var_at(g: Array, var_a: Array, var_b: Array, cov: Array) -> Array:
    """Var(g S_A + S_B) in hbar^2 from the moments at a fixed gain g."""
    return g * g * var_a + 2 * g * cov + var_b


def criteria_at_gains(m: Moments, gains: dict[str, Array]) -> dict[str, Array]:
    """E_Ent, E_EPR_AB, E_EPR_BA evaluated on moments ``m`` at fixed gains (keys 'NAME.g_z/.g_y')."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = {}
        for name, swap, mean_x in (("E_EPR_AB", False, m.mean_x_b), ("E_EPR_BA", True, m.mean_x_a)):
            gz, gy = gains[f"{name}.g_z"], gains[f"{name}.g_y"]
            za, zb = (m.var_z_b, m.var_z_a) if swap else (m.var_z_a, m.var_z_b)
            ya, yb = (m.var_y_b, m.var_y_a) if swap else (m.var_y_a, m.var_y_b)
            out[name] = 4 * _var_at(gz, za, zb, m.cov_z) * _var_at(gy, ya, yb, m.cov_y) / mean_x**2
        gz, gy = gains["E_Ent.g_z"], gains["E_Ent.g_y"]
        den = (np.abs(gz * gy) * np.abs(m.mean_x_a) + np.abs(m.mean_x_b)) ** 2
        out["E_Ent"] = (4 * _var_at(gz, m.var_z_a, m.var_z_b, m.cov_z)
                        * _var_at(gy, m.var_y_a, m.var_y_b, m.cov_y) / den)
    return out


def _split_value(half0: Array, half1: Array, det: tuple[float | Array, ...]) -> dict[str, Array]:
    """E_split from the power sums of the two halves, each of shape (..., 3, G, F)."""
    m0 = Moments.from_sums(half0).corrected(*det)
    m1 = Moments.from_sums(half1).corrected(*det)
    g0, g1 = all_criteria(m0), all_criteria(m1)
    e10, e01 = criteria_at_gains(m1, g0), criteria_at_gains(m0, g1)
    return {k: 0.5 * (e10[k] + e01[k]) for k in OPTIMISED}


def split_sample_criteria(sums: GroupedSums, det: tuple[float | Array, ...] = (0.0, 0.0, 0.0)
                          ) -> dict[str, tuple[Array, Array]]:
    """Per optimised criterion: (E_split, its jackknife standard error), arrays of shape (G,)."""
    s = sums.sums  # (3, K, G, F)
    k_all = s.shape[1]
    half = np.arange(k_all) % 2
    tot = [s[:, half == h].sum(axis=1) for h in (0, 1)]  # each (3, G, F)
    full = _split_value(tot[0], tot[1], det)
    # leave group k out of its half: (K, 3, G, F) sums for each half
    groups = np.moveaxis(s, 1, 0)
    loo = [np.where((half == h)[:, None, None, None], tot[h][None] - groups, tot[h][None])
           for h in (0, 1)]
    rep = _split_value(loo[0], loo[1], det)
    used = s[:, :, 0, F_N].sum(axis=0) > 0
    k = int(used.sum())
    out = {}
    with np.errstate(invalid="ignore"):
        for name in OPTIMISED:
            r = rep[name][used]
            err = np.sqrt((k - 1) / k * ((r - r.mean(axis=0)) ** 2).sum(axis=0))
            out[name] = (full[name], err)
    return out
