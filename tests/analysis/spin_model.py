"""Samplers and closed forms of physics.md's exact model, for the criteria tests.

N atoms in a symmetric collective state with Var(S_z) = xi2 N/4, Var(S_y) = eta2 N/4, <S_x> = C N/2;
each atom lands in A with probability p independently of its spin (N1A ~ Bin(N1, p), N2A ~ Bin(N2, p)).
The collective outcome m = S_d is drawn from a discretised Gaussian (z, y) or a binomial (x); the
*exact* variance of the discrete distribution is returned so closed forms are compared to it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.exact_model import Readout, physics_md_e_epr, region_moments


@dataclass(frozen=True)
class ModelState:
    """Collective state parameters; xi2, eta2 are Var(S_z), Var(S_y) in units of N/4."""

    n_atoms: int
    xi2: float
    eta2: float
    contrast: float


def coherent(n_atoms: int = 530) -> ModelState:
    return ModelState(n_atoms, 1.0, 1.0, 1.0)


def squeezed(n_atoms: int = 530, wineland_db: float = -3.2, contrast: float = 1.0,
             extra_anti: float = 1.0) -> ModelState:
    """Minimum-uncertainty state (xi2 eta2 = C^2) at the given Wineland squeezing, times extra_anti."""
    xi2 = 10 ** (wineland_db / 10) * contrast**2
    return ModelState(n_atoms, xi2, contrast**2 / xi2 * extra_anti, contrast)


def _discrete_gaussian(n_atoms: int, var: float) -> tuple[np.ndarray, np.ndarray]:
    m = np.arange(-n_atoms // 2, n_atoms // 2 + 1, dtype=float)
    w = np.exp(-0.5 * m**2 / var)
    return m, w / w.sum()


def exact_variance(n_atoms: int, var: float) -> float:
    m, w = _discrete_gaussian(n_atoms, var)
    return float((w * m * m).sum())


def effective(state: ModelState) -> ModelState:
    """The state with xi2, eta2 replaced by the exact variances of the sampled distributions."""
    n = state.n_atoms
    return ModelState(n, exact_variance(n, state.xi2 * n / 4) / (n / 4),
                      exact_variance(n, state.eta2 * n / 4) / (n / 4), state.contrast)


def sample(rng: np.random.Generator, state: ModelState, shots_per_direction: int, p: float,
           datasets: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Interleaved xyz shots; atom numbers of shape (S, datasets): independent data sets as columns."""
    n = state.n_atoms
    dirs = np.array(list("xyz") * shots_per_direction)
    m = np.empty((dirs.size, datasets))
    for d, var in (("z", state.xi2), ("y", state.eta2)):
        vals, w = _discrete_gaussian(n, var * n / 4)
        m[dirs == d] = rng.choice(vals, size=(shots_per_direction, datasets), p=w)
    m[dirs == "x"] = rng.binomial(n, (1 + state.contrast) / 2, (shots_per_direction, datasets)) - n / 2
    n1 = (n / 2 + m).astype(np.int64)
    n2 = n - n1
    n1a = rng.binomial(n1, p)
    n2a = rng.binomial(n2, p)
    return dirs, n1a, n2a, n1 - n1a, n2 - n2a


def model_moments(state: ModelState, p: float) -> dict[str, float]:
    """physics.md's closed forms for the region moments and E_EPR, from analysis.exact_model
    (region_moments for the moments, physics_md_e_epr for E_EPR). The x readout here is +S_x
    (the sampler's x outcomes have mean +C N/2)."""
    n, xi2, eta2, c = state.n_atoms, state.xi2, state.eta2, state.contrast
    q = 1 - p
    split = ((p, p), (q, q))
    z = region_moments(n, Readout(0.0, xi2 * n / 4), *split)
    y = region_moments(n, Readout(0.0, eta2 * n / 4), *split)
    x = region_moments(n, Readout(c * n / 2, 0.0), *split)
    return {
        "var_z_a": z.var_a, "var_z_b": z.var_b, "cov_z": z.cov,
        "var_y_a": y.var_a, "var_y_b": y.var_b, "cov_y": y.cov,
        "mean_x_a": x.mean_a, "mean_x_b": x.mean_b,
        "inferred_z_b": z.inferred_b,
        "E_EPR_AB": physics_md_e_epr(xi2, eta2, c, p),
        "E_EPR_BA": physics_md_e_epr(xi2, eta2, c, q),
        "product_B": 4 * z.var_b * y.var_b / x.mean_b ** 2,
        "xi_R2": xi2 / c**2,
    }
