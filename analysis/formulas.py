"""The criteria as functions of sample moments (physics.md, clean forms of the paper's Eq. 1-3).

All inputs are arrays broadcasting together (any shape); spin moments in units of hbar (hbar^2 for
variances), atom numbers in atoms. Nothing here estimates errors: see :mod:`analysis.criteria`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from analysis.moments import Moments

Array = NDArray[np.float64]


def inferred_variance(var_a: Array, var_b: Array, cov: Array) -> tuple[Array, Array]:
    """min_g Var(g S_A + S_B) = Var(S_B) - Cov^2/Var(S_A), and the optimal g = -Cov/Var(S_A)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        g = -cov / var_a
        return var_b - cov * cov / var_a, g


def epr(var_z_a: Array, var_z_b: Array, cov_z: Array, var_y_a: Array, var_y_b: Array,
        cov_y: Array, mean_x_b: Array) -> tuple[Array, Array, Array]:
    """E_EPR for steering of B by A: 4 Var_inf(z) Var_inf(y) / <S_x^B>^2, with (g_z, g_y)."""
    vz, gz = inferred_variance(var_z_a, var_z_b, cov_z)
    vy, gy = inferred_variance(var_y_a, var_y_b, cov_y)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 4.0 * vz * vy / (mean_x_b * mean_x_b), gz, gy


def _quadratic_roots(a2: Array, a1: Array, a0: Array) -> tuple[Array, Array]:
    """Real roots of a2 s^2 + 2 a1 s + a0 = 0 (NaN where absent); handles a2 -> 0 (linear case)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        disc = a1 * a1 - a2 * a0
        sq = np.sqrt(np.where(disc >= 0, disc, np.nan))
        # numerically stable pair: q = -(a1 + sign(a1) sqrt(disc)); roots q/a2 and a0/q
        q = -(a1 + np.copysign(sq, a1))
        r1 = q / a2
        r2 = a0 / q
        linear = np.abs(a2) <= 1e-14 * (np.abs(a1) + np.abs(a0))
        r_lin = -a0 / (2.0 * a1)
        r1 = np.where(linear, r_lin, r1)
        r2 = np.where(linear, np.nan, r2)
    return r1, r2


@dataclass(frozen=True)
class EntResult:
    """Jointly minimised Giovannetti criterion with the optimal gains."""

    value: Array
    g_z: Array
    g_y: Array


def e_ent(var_z_a: Array, var_z_b: Array, cov_z: Array, var_y_a: Array, var_y_b: Array,
          cov_y: Array, mean_x_a: Array, mean_x_b: Array) -> EntResult:
    """E_Ent = min over real g_z, g_y of
    4 Var(g_z S_z^A + S_z^B) Var(g_y S_y^A + S_y^B) / (|g_z g_y| |<S_x^A>| + |<S_x^B>|)^2.

    The global minimum is found exactly, not by a local optimiser: the signs of g_z, g_y that
    minimise the numerator are -sign(Cov); for fixed s = |g_z| the minimum over t = |g_y| of a
    quadratic over a squared linear form is (det M_y)/(w^T adj(M_y) w) in closed form, which leaves a
    ratio of two quadratics in s whose stationary points are the roots of a quadratic. The candidates
    s = 0, the non-negative roots and s -> infinity are compared. g_z = +-inf is reported when the
    infimum is only approached as |g_z| -> infinity (possible only when <S_x^B> = 0).
    """
    a = np.abs(mean_x_a)
    b = np.abs(mean_x_b)
    cz, cy = np.abs(cov_z), np.abs(cov_y)
    alpha, beta, gamma = var_y_a, cy, var_y_b
    # geometries without atoms (empty regions at a scan's ends) give NaN moments: NaN results
    with np.errstate(invalid="ignore", over="ignore"):
        det_y = alpha * gamma - beta * beta
        # numerator f(s) = p2 s^2 + p1 s + p0; denominator q(s) = q2 s^2 + q1 s + q0
        p2, p1, p0 = var_z_a, -2.0 * cz, var_z_b
        q2, q1, q0 = gamma * a * a, 2.0 * beta * a * b, alpha * b * b
        r1, r2 = _quadratic_roots(p2 * q1 - p1 * q2, p2 * q0 - p0 * q2, p1 * q0 - p0 * q1)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        def ratio(s: Array) -> Array:
            v = (p2 * s * s + p1 * s + p0) / (q2 * s * s + q1 * s + q0)
            return np.where(np.isfinite(s) & (s >= 0), v, np.inf)

        cands = [np.zeros_like(a), r1, r2]
        vals = [ratio(c) for c in cands]
        vals[0] = np.where(q0 > 0, vals[0], np.inf)
        cands.append(np.full_like(a, np.inf))
        vals.append(np.where(q2 > 0, p2 / q2, np.inf))
        vals_arr = np.stack(np.broadcast_arrays(*vals))
        cands_arr = np.stack(np.broadcast_arrays(*cands))
        best = np.argmin(np.where(np.isnan(vals_arr), np.inf, vals_arr), axis=0)
        s = np.take_along_axis(cands_arr, best[None], axis=0)[0]
        fmin = np.take_along_axis(vals_arr, best[None], axis=0)[0]
        value = 4.0 * det_y * fmin
        c = s * a
        t = np.where(np.isinf(s), gamma / beta, (gamma * c + beta * b) / (beta * c + alpha * b))
        g_z = -np.where(cov_z < 0, -1.0, 1.0) * s
        g_y = -np.where(cov_y < 0, -1.0, 1.0) * t
    return EntResult(np.asarray(value, dtype=float), np.asarray(g_z, dtype=float),
                     np.asarray(g_y, dtype=float))


def all_criteria(m: Moments) -> dict[str, Array]:
    """Every reported quantity from one set of moments, as a dict of arrays of shape (..., G)."""
    ent = e_ent(m.var_z_a, m.var_z_b, m.cov_z, m.var_y_a, m.var_y_b, m.cov_y, m.mean_x_a, m.mean_x_b)
    e_ab, gz_ab, gy_ab = epr(m.var_z_a, m.var_z_b, m.cov_z, m.var_y_a, m.var_y_b, m.cov_y, m.mean_x_b)
    e_ba, gz_ba, gy_ba = epr(m.var_z_b, m.var_z_a, m.cov_z, m.var_y_b, m.var_y_a, m.cov_y, m.mean_x_a)
    with np.errstate(divide="ignore", invalid="ignore"):
        prod_b = 4.0 * m.var_z_b * m.var_y_b / (m.mean_x_b * m.mean_x_b)
        prod_a = 4.0 * m.var_z_a * m.var_y_a / (m.mean_x_a * m.mean_x_a)
        var_sz = m.var_z_a + m.var_z_b + 2.0 * m.cov_z
        mean_sx = m.mean_x_a + m.mean_x_b
        xi2 = m.n_mean * var_sz / (mean_sx * mean_sx)
        xi2_db = 10.0 * np.log10(xi2)
        ratio = np.abs(m.mean_x_a) / (np.abs(m.mean_x_a) + np.abs(m.mean_x_b))
    return {
        "E_Ent": ent.value, "E_Ent.g_z": ent.g_z, "E_Ent.g_y": ent.g_y,
        "E_EPR_AB": e_ab, "E_EPR_AB.g_z": gz_ab, "E_EPR_AB.g_y": gy_ab,
        "E_EPR_BA": e_ba, "E_EPR_BA.g_z": gz_ba, "E_EPR_BA.g_y": gy_ba,
        "product_A": prod_a, "product_B": prod_b,
        "xi_R2": xi2, "xi_R2_dB": xi2_db, "N": m.n_mean, "splitting_ratio_x": ratio,
    }
