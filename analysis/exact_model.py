"""Closed forms of physics.md's exact model of split collective spins, extended with technical noise.

The model (exact for it; the virtual lab's region counts realise it, tests/simulated):

1. N atoms (fixed) in a collective state. Before the readout pulse the spin is rotated about z by a
   random angle phi ~ Normal(0, phase_var) per shot (common-mode phase noise: shot-to-shot dephasing
   and the readout pulse's microwave phase noise add up, phase_var = dephasing_rms^2 + pulse_phase_rms^2);
   the readout then measures m = S_z (z), +S_y (y) or -S_x (x) of the rotated spin (the paper's pulses,
   docs/virtual-lab-atoms.md). :func:`readout` gives <m> and Var(m) in closed form.
2. Each |1> (|2>) atom lands in region A with probability pa[0] (pa[1]) and in B with pb[0] (pb[1]),
   independently of its spin and of the other atoms (pa + pb < 1: a gap or the outside loses atoms).
   This is physics.md's binomial partition with per-state mask probabilities (|1> and |2> clouds
   differ in size); with pa = (p, p), pb = (1 - p, 1 - p) it is physics.md's formulas exactly.
3. Local noise: each region's measured spin S^R = (N^R_1 - N^R_2)/2 gets an additive noise e_R of
   mean 0, independent of the atoms, with Var(e_A) = local_var_a, Var(e_B) = local_var_b and
   Cov(e_A, e_B) = local_cov (hbar^2), the same for every readout direction. Its variance does not
   shrink with the region's atom number (e.g. detection noise the atom-free calibration does not
   remove).

Units: spin moments in hbar (variances hbar^2), atom numbers in atoms, angles in rad. The criteria are
evaluated with the same engine as the measured data (:mod:`analysis.formulas`).

Why the noise terms shape Fig. 3a (docs/offline-analysis.md): common-mode noise in S_y (extra
anti-squeezing) enters B's inferred variance through A's estimate of B's share of the common
fluctuation, which is good only when A is large, so steering A -> B is best at N_A/N > 1/2 and the
symmetric split no longer steers in either direction; local noise adds to the steered party's inferred
variance while <S^B_x>^2 shrinks as N_B^2, so it penalises a *small* steered region: the opposite
asymmetry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from analysis.formulas import e_ent, epr

__all__ = ["StateMoments", "Readout", "RegionMoments", "Noise", "readout", "region_moments",
           "split_moments", "criteria", "split_criteria", "physics_md_e_epr"]


class SpinState(Protocol):
    """What :meth:`StateMoments.of` reads of a computed state (hbar, hbar^2); a ``mean_y`` or
    ``mean_z`` attribute, where present, is checked to be 0."""

    @property
    def n_atoms(self) -> int: ...
    @property
    def mean_x(self) -> float: ...
    @property
    def var_x(self) -> float: ...
    @property
    def var_y(self) -> float: ...
    @property
    def var_z(self) -> float: ...


@dataclass(frozen=True)
class StateMoments:
    """Moments of the prepared collective spin (hbar, hbar^2), before any technical noise.

    mean_x = <S_x>, var_x, var_y, var_z = Var(S_i); the state is assumed to have <S_y> = <S_z> = 0
    (spin along +x, as the virtual lab's coherent and squeezed states). Cov(S_x, S_y) is not needed:
    a rotation by a symmetrically distributed angle averages it out of every second moment used here.
    """

    n_atoms: int
    mean_x: float
    var_x: float
    var_y: float
    var_z: float

    @classmethod
    def of(cls, moments: "SpinState") -> "StateMoments":
        """The moments of a computed state (e.g. the virtual lab's prepared state), which must point
        along +x: |<S_y>|, |<S_z>| below 1e-9 N (hbar), else ValueError."""
        n = int(moments.n_atoms)
        for name in ("mean_y", "mean_z"):
            value = float(getattr(moments, name, 0.0))
            if abs(value) > 1e-9 * max(n, 1):
                raise ValueError(f"StateMoments needs a state along +x: {name} = {value!r} (hbar), "
                                 "expected 0")
        return cls(n, float(moments.mean_x), float(moments.var_x), float(moments.var_y),
                   float(moments.var_z))

    @classmethod
    def gaussian(cls, n_atoms: int, xi2: float, eta2: float, contrast: float) -> "StateMoments":
        """physics.md's parametrisation: Var(S_z) = xi2 N/4, Var(S_y) = eta2 N/4, <S_x> = C N/2.

        Var(S_x) is set to 0 (it enters only the x readout's variance, never the criteria)."""
        n = float(n_atoms)
        return cls(int(n_atoms), contrast * n / 2.0, 0.0, eta2 * n / 4.0, xi2 * n / 4.0)


@dataclass(frozen=True)
class Readout:
    """Mean and variance (hbar, hbar^2) of the collective readout m of one direction."""

    mean: float
    var: float


@dataclass(frozen=True)
class RegionMoments:
    """Means, variances and covariance of S^A, S^B of one readout direction (hbar, hbar^2)."""

    mean_a: float
    mean_b: float
    var_a: float
    var_b: float
    cov: float

    @property
    def inferred_b(self) -> float:
        """min_g Var(g S^A + S^B) = Var(S^B) - Cov^2 / Var(S^A) (hbar^2)."""
        return self.var_b - self.cov * self.cov / self.var_a

    @property
    def inferred_a(self) -> float:
        """min_g Var(S^A + g S^B) = Var(S^A) - Cov^2 / Var(S^B) (hbar^2)."""
        return self.var_a - self.cov * self.cov / self.var_b


@dataclass(frozen=True)
class Noise:
    """The technical-noise terms of the model (see the module docstring).

    phase_var: variance of the common-mode rotation angle about z (rad^2), dephasing_rms^2 +
    pulse_phase_rms^2; local_var_a, local_var_b, local_cov: the local noise of S^A, S^B (hbar^2).
    """

    phase_var: float = 0.0
    local_var_a: float = 0.0
    local_var_b: float = 0.0
    local_cov: float = 0.0

    def __post_init__(self) -> None:
        for name in ("phase_var", "local_var_a", "local_var_b"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"Noise.{name} must be a finite number >= 0, got {v!r}")
        if not (math.isfinite(self.local_cov)
                and self.local_cov ** 2 <= self.local_var_a * self.local_var_b * (1 + 1e-12)):
            raise ValueError(f"Noise.local_cov must satisfy cov^2 <= var_a var_b, got {self.local_cov!r}")


def readout(state: StateMoments, direction: str, phase_var: float = 0.0) -> Readout:
    """<m>, Var(m) of the collective readout after a rotation about z by phi ~ Normal(0, phase_var).

    The rotated spin is S_x' = S_x cos phi - S_y sin phi, S_y' = S_x sin phi + S_y cos phi, S_z' = S_z;
    with E[cos phi] = exp(-s/2), E[cos^2 phi] = (1 + exp(-2 s))/2, E[sin^2 phi] = (1 - exp(-2 s))/2,
    E[sin phi cos phi] = E[sin phi] = 0 (s = phase_var):
    z: <m> = 0, Var = Var(S_z);  y (reads +S_y'): <m> = 0, Var = <S_x^2> E[sin^2] + <S_y^2> E[cos^2];
    x (reads -S_x'): <m> = -<S_x> exp(-s/2), Var = <S_x^2> E[cos^2] + <S_y^2> E[sin^2] - <m>^2.
    """
    if not (math.isfinite(phase_var) and phase_var >= 0):
        raise ValueError(f"phase_var must be a finite number >= 0 (rad^2), got {phase_var!r}")
    cos2 = (1.0 + math.exp(-2.0 * phase_var)) / 2.0
    sin2 = 1.0 - cos2
    sx2 = state.var_x + state.mean_x ** 2
    sy2 = state.var_y
    if direction == "z":
        return Readout(0.0, state.var_z)
    if direction == "y":
        return Readout(0.0, sx2 * sin2 + sy2 * cos2)
    if direction == "x":
        mean = -state.mean_x * math.exp(-phase_var / 2.0)
        return Readout(mean, sx2 * cos2 + sy2 * sin2 - mean * mean)
    raise ValueError(f"direction must be 'x', 'y' or 'z', got {direction!r}")


def region_moments(n_atoms: float, m: Readout, pa: tuple[float, float], pb: tuple[float, float],
                   noise: Noise = Noise()) -> RegionMoments:
    """Moments of S^A, S^B for N atoms, collective readout m, per-state probabilities pa, pb = (|1>, |2>).

    Given N1 = N/2 + m, N2 = N/2 - m: N^R_s ~ multinomial share of N_s, so
    Var(S^R | m) = [p1 (1 - p1) N1 + p2 (1 - p2) N2]/4, Cov(S^A, S^B | m) = -(pa1 pb1 N1 + pa2 pb2 N2)/4,
    E[S^R | m] = (p1 - p2) N/4 + (p1 + p2) m/2; averaging over m (law of total (co)variance) and adding
    the local noise gives the result.
    """
    (pa1, pa2), (pb1, pb2) = pa, pb
    for p in (pa1, pa2, pb1, pb2):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"region probabilities must lie in [0, 1], got pa={pa}, pb={pb}")
    if pa1 + pb1 > 1.0 + 1e-12 or pa2 + pb2 > 1.0 + 1e-12:
        raise ValueError(f"an atom cannot be in A and B: pa + pb must be <= 1, got pa={pa}, pb={pb}")
    n, mu = float(n_atoms), m.mean
    a, b = (pa1 + pa2) / 2.0, (pb1 + pb2) / 2.0
    var_a = (n / 2 * (pa1 * (1 - pa1) + pa2 * (1 - pa2)) + mu * (pa1 * (1 - pa1) - pa2 * (1 - pa2))) / 4
    var_b = (n / 2 * (pb1 * (1 - pb1) + pb2 * (1 - pb2)) + mu * (pb1 * (1 - pb1) - pb2 * (1 - pb2))) / 4
    cov = -(n / 2 * (pa1 * pb1 + pa2 * pb2) + mu * (pa1 * pb1 - pa2 * pb2)) / 4
    return RegionMoments(
        mean_a=(pa1 - pa2) * n / 4 + a * mu, mean_b=(pb1 - pb2) * n / 4 + b * mu,
        var_a=var_a + a * a * m.var + noise.local_var_a, var_b=var_b + b * b * m.var + noise.local_var_b,
        cov=cov + a * b * m.var + noise.local_cov)


def split_moments(state: StateMoments, pa: tuple[float, float], pb: tuple[float, float],
                  noise: Noise = Noise()) -> dict[str, RegionMoments]:
    """Region moments of the x, y and z readouts for one geometry (a dict keyed by direction)."""
    return {d: region_moments(state.n_atoms, readout(state, d, noise.phase_var), pa, pb, noise) for d in "xyz"}


def criteria(mom: dict[str, RegionMoments]) -> dict[str, float]:
    """E_EPR_AB, E_EPR_BA, E_Ent, product_A, product_B of physics.md from the x, y, z region moments.

    Uses analysis.formulas (the engine of the measured criteria); |<S^R_x>| from the x readout.
    """
    z, y, x = mom["z"], mom["y"], mom["x"]

    def f(v: float) -> NDArray[np.float64]:
        return np.array(v, dtype=np.float64)
    e_ab = epr(f(z.var_a), f(z.var_b), f(z.cov), f(y.var_a), f(y.var_b), f(y.cov), f(x.mean_b))[0]
    e_ba = epr(f(z.var_b), f(z.var_a), f(z.cov), f(y.var_b), f(y.var_a), f(y.cov), f(x.mean_a))[0]
    ent = e_ent(f(z.var_a), f(z.var_b), f(z.cov), f(y.var_a), f(y.var_b), f(y.cov), f(x.mean_a),
                f(x.mean_b)).value
    return {"E_EPR_AB": float(e_ab), "E_EPR_BA": float(e_ba), "E_Ent": float(ent),
            "product_A": 4 * z.var_a * y.var_a / x.mean_a ** 2,
            "product_B": 4 * z.var_b * y.var_b / x.mean_b ** 2}


def split_criteria(state: StateMoments, p: float, noise: Noise = Noise()) -> dict[str, float]:
    """criteria() for a split without gap: every atom in A with probability p, otherwise in B."""
    return criteria(split_moments(state, (p, p), (1.0 - p, 1.0 - p), noise))


def physics_md_e_epr(xi2: float, eta2: float, contrast: float, p: float) -> float:
    """physics.md's E_EPR(A -> B) = xi2 eta2 / (C^2 (1 - p + p xi2)(1 - p + p eta2)) (no technical noise)."""
    q = 1.0 - p
    return xi2 * eta2 / (contrast ** 2 * (q + p * xi2) * (q + p * eta2))
