"""Collective spin states of N two-level atoms in the Dicke basis, exact Rabi rotations, z measurement.

Conventions (used everywhere in the virtual lab):

- Symmetric Dicke basis |S, m>, S = N/2, m = -S..S, stored as a complex vector of length N + 1 whose
  index k equals N1, the number of atoms in |1>: m = k - S, so S_z = (N1 - N2)/2.
- S_+ raises m (moves one atom from |2> to |1>): S_+|S,m> = sqrt(S(S+1) - m(m+1)) |S,m+1>,
  S_x = (S_+ + S_-)/2, S_y = (S_+ - S_-)/(2i). All spin moments are in units of hbar (dimensionless).
- A Rabi pulse of area theta (rad), phase phi (rad) and detuning area delta (rad, = detuning x duration)
  is U = exp(-i [theta (cos phi S_x + sin phi S_y) + delta S_z]). With |2> the upper state and
  detuning = omega_drive - omega_atom, this is the rotating-frame evolution for S_z = (N1 - N2)/2.
- Heisenberg pictures of the measurement pulses (what a z measurement after the pulse reads):
  phase 0, area pi/2 (rotation about x): U^dag S_z U = +S_y (the paper's y measurement);
  phase pi/2, area pi/2 (rotation about y): U^dag S_z U = -S_x (the paper's x measurement: a state
  along +x ends with every atom in |2>, N1 - N2 = -N). Phase -pi/2 would read +S_x.
"""
from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from scipy.linalg import eigh_tridiagonal
from scipy.optimize import brentq
from scipy.special import gammaln

__all__ = [
    "RabiPulse", "SpinMoments", "coherent_state_x", "twisted_state", "squeezed_state",
    "solve_twist_for_wineland", "rotate", "rotate_z", "spin_moments", "outcome_probabilities",
    "sample_n1", "wineland_xi2",
]


@dataclass(frozen=True)
class RabiPulse:
    """One Rabi pulse: area = Rabi frequency x gate duration (rad), microwave phase (rad), detuning area (rad)."""

    area_rad: float
    phase_rad: float = 0.0
    detuning_area_rad: float = 0.0

    def __post_init__(self) -> None:
        for name in ("area_rad", "phase_rad", "detuning_area_rad"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.floating, np.integer)) or not math.isfinite(value):
                raise ValueError(f"RabiPulse.{name} must be a finite number, got {value!r}")


@dataclass(frozen=True)
class SpinMoments:
    """First and second moments of the collective spin (units of hbar; cov_yz is the symmetrised covariance)."""

    n_atoms: int
    mean_x: float
    mean_y: float
    mean_z: float
    var_x: float
    var_y: float
    var_z: float
    cov_yz: float


def _check_n(n_atoms: int) -> int:
    if isinstance(n_atoms, bool) or not isinstance(n_atoms, (int, np.integer)) or n_atoms < 1:
        raise ValueError(f"atom number must be a positive integer, got {n_atoms!r}")
    return int(n_atoms)


def _check_state(psi: np.ndarray) -> np.ndarray:
    psi = np.asarray(psi)
    if psi.ndim != 1 or psi.size < 2:
        raise ValueError(f"a spin state is a 1-D Dicke vector of length N + 1 >= 2, got shape {psi.shape}")
    return psi


@functools.lru_cache(maxsize=64)
def _ladder(n_atoms: int) -> np.ndarray:
    """Off-diagonal elements c_k = <k+1| S_+ |k> = sqrt(S(S+1) - m(m+1)), k = 0..N-1 (read-only)."""
    s = n_atoms / 2.0
    m = np.arange(n_atoms) - s
    c = np.sqrt(np.maximum(s * (s + 1.0) - m * (m + 1.0), 0.0))
    c.flags.writeable = False
    return c


def _m_values(n_atoms: int) -> np.ndarray:
    return np.arange(n_atoms + 1) - n_atoms / 2.0


EIGEN_CACHE_BYTES = 256 * 2**20
"""Memory kept for S_x eigen-systems (bytes): 1.1 MB per atom number at N = 530; every N of 430..630
(the paper's 530 +- 2.5 rms of 40) together take 220 MB and stay cached; beyond the budget the least
recently used atom number is dropped (and recomputed, ~8 ms, if it comes back)."""


@dataclass(frozen=True)
class _ParityBlock:
    """Eigen-system of S_x restricted to one reversal parity: eigenvalues w, orthogonal columns u."""

    w: np.ndarray
    u: np.ndarray

    def apply(self, x: np.ndarray, angle: float) -> np.ndarray:
        """exp(-i angle S_x) on coordinates x of this parity block (complex vector)."""
        coeff = self.u.T @ x.real + 1j * (self.u.T @ x.imag)
        coeff *= np.exp(-1j * angle * self.w)
        return self.u @ coeff.real + 1j * (self.u @ coeff.imag)


@dataclass(frozen=True)
class _SxEigensystem:
    """S_x of N atoms split by the reversal J|k> = |N - k>, which commutes with S_x.

    Pairs k = 0..h-1 (h = (N + 1) // 2) give the coordinates a_k = (psi_k + psi_{N-k})/sqrt 2 (even,
    plus psi_{N/2} last when N is even) and b_k = (psi_k - psi_{N-k})/sqrt 2 (odd). S_x is
    tridiagonal in both, with off-diagonals c_k/2; N odd: the last diagonal element is +c_{h-1}/2
    (even) and -c_{h-1}/2 (odd); N even: the middle state couples to the last even pair with
    c_{h-1}/sqrt 2. Two half-size problems: about 4x less work and half the memory of the full one.
    """

    n_atoms: int
    even: _ParityBlock
    odd: _ParityBlock

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for b in (self.even, self.odd) for a in (b.w, b.u))

    def exp(self, psi: np.ndarray, angle: float) -> np.ndarray:
        """exp(-i angle S_x) psi for a complex Dicke vector psi of length N + 1."""
        n = self.n_atoms
        h = (n + 1) // 2
        r = math.sqrt(0.5)
        low, high = psi[:h], psi[::-1][:h]             # psi_k and psi_{N-k}, k < h
        a = (low + high) * r
        if n % 2 == 0:
            a = np.append(a, psi[h])
        a = self.even.apply(a, angle)
        b = self.odd.apply((low - high) * r, angle)
        out = np.empty_like(psi)
        out[:h] = (a[:h] + b) * r
        out[::-1][:h] = (a[:h] - b) * r
        if n % 2 == 0:
            out[h] = a[h]
        return out


def _tridiagonal_eigen(diagonal: np.ndarray, off: np.ndarray) -> _ParityBlock:
    """Eigen-system of a real symmetric tridiagonal matrix, eigenvalues rounded to the half-integers."""
    if diagonal.size == 1:
        w, u = diagonal.copy(), np.ones((1, 1))
    else:
        w, u = eigh_tridiagonal(diagonal, off, lapack_driver="stemr")
    w = np.round(w * 2.0) / 2.0  # exact spectrum m = -S..S; removes ~1e-13 rounding from the phases
    w.flags.writeable = False
    u.flags.writeable = False
    return _ParityBlock(w, u)


def _compute_sx_eigensystem(n_atoms: int) -> _SxEigensystem:
    c = 0.5 * _ladder(n_atoms)
    h = (n_atoms + 1) // 2
    if n_atoms % 2:
        end = np.zeros(h)
        end[-1] = c[h - 1]
        even = _tridiagonal_eigen(end, c[:h - 1])
        odd = _tridiagonal_eigen(-end, c[:h - 1])
    else:
        even = _tridiagonal_eigen(np.zeros(h + 1), np.append(c[:h - 1], math.sqrt(2.0) * c[h - 1]))
        odd = _tridiagonal_eigen(np.zeros(h), c[:h - 1])
    return _SxEigensystem(n_atoms, even, odd)


class _EigenCache:
    """S_x eigen-systems by atom number, computed once and kept within EIGEN_CACHE_BYTES (LRU). Thread-safe."""

    def __init__(self) -> None:
        self._systems: OrderedDict[int, _SxEigensystem] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.misses = 0

    def get(self, n_atoms: int) -> _SxEigensystem:
        with self._lock:
            system = self._systems.get(n_atoms)
            if system is not None:
                self._systems.move_to_end(n_atoms)
                return system
        system = _compute_sx_eigensystem(n_atoms)      # outside the lock: other N stay available
        with self._lock:
            if n_atoms not in self._systems:
                self.misses += 1
                self._systems[n_atoms] = system
                self._bytes += system.nbytes
                while self._bytes > EIGEN_CACHE_BYTES and len(self._systems) > 1:
                    _, dropped = self._systems.popitem(last=False)
                    self._bytes -= dropped.nbytes
            return self._systems[n_atoms]

    @property
    def nbytes(self) -> int:
        """Bytes of the eigen-systems held."""
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._systems)

    def clear(self) -> None:
        with self._lock:
            self._systems.clear()
            self._bytes = 0


_EIGEN = _EigenCache()


def _sx_eigensystem(n_atoms: int) -> _SxEigensystem:
    """The eigen-system of S_x for n_atoms (cached, see EIGEN_CACHE_BYTES)."""
    return _EIGEN.get(n_atoms)


def _exp_sx(psi: np.ndarray, angle: float) -> np.ndarray:
    """exp(-i angle S_x) psi, exactly (cached eigen-decomposition of S_x, split by reversal parity)."""
    return _sx_eigensystem(psi.size - 1).exp(np.asarray(psi, dtype=complex), angle)


def rotate_z(psi: np.ndarray, angle_rad: float) -> np.ndarray:
    """exp(-i angle S_z) psi (a rotation of the Bloch vector by angle about +z)."""
    psi = _check_state(psi)
    return psi * np.exp(-1j * angle_rad * _m_values(psi.size - 1))


def rotate(psi: np.ndarray, pulse: RabiPulse) -> np.ndarray:
    """Apply the Rabi pulse U = exp(-i [area (cos phase S_x + sin phase S_y) + detuning_area S_z]) to psi."""
    psi = _check_state(psi).astype(complex)
    theta, phi, delta = float(pulse.area_rad), float(pulse.phase_rad), float(pulse.detuning_area_rad)
    if delta == 0.0:
        # exp(-i theta n.S) = Rz(phi) exp(-i theta S_x) Rz(-phi)
        return rotate_z(_exp_sx(rotate_z(psi, -phi), theta), phi)
    # Axis n = cos(beta) (cos phi, sin phi, 0) + sin(beta) z; n.S = Rz(phi) Ry(-beta) S_x Ry(beta) Rz(-phi),
    # with Ry(b) = Rz(pi/2) exp(-i b S_x) Rz(-pi/2).
    beta = math.atan2(delta, theta)
    angle = math.hypot(theta, delta)
    out = rotate_z(psi, -phi)
    out = rotate_z(_exp_sx(rotate_z(out, -math.pi / 2), beta), math.pi / 2)
    out = _exp_sx(out, angle)
    out = rotate_z(_exp_sx(rotate_z(out, -math.pi / 2), -beta), math.pi / 2)
    return rotate_z(out, phi)


def coherent_state_x(n_atoms: int) -> np.ndarray:
    """Coherent spin state along +x (each atom (|1> + |2>)/sqrt 2): amplitudes sqrt(binom(N, N1)) / 2^(N/2)."""
    n_atoms = _check_n(n_atoms)
    k = np.arange(n_atoms + 1)
    log_amp = 0.5 * (gammaln(n_atoms + 1) - gammaln(k + 1) - gammaln(n_atoms - k + 1)) - 0.5 * n_atoms * math.log(2)
    return np.exp(log_amp).astype(complex)


def spin_moments(psi: np.ndarray) -> SpinMoments:
    """Exact moments <S_i>, Var(S_i) and the symmetrised Cov(S_y, S_z) of a pure Dicke-basis state."""
    psi = _check_state(psi)
    n_atoms = psi.size - 1
    norm = float(np.vdot(psi, psi).real)
    if not norm > 0:
        raise ValueError("spin state has zero norm")
    psi = psi / math.sqrt(norm)
    c = _ladder(n_atoms)
    m = _m_values(n_atoms)
    sp = np.zeros_like(psi)  # S_+ psi
    sp[1:] = c * psi[:-1]
    sm = np.zeros_like(psi)  # S_- psi
    sm[:-1] = c * psi[1:]
    sx = 0.5 * (sp + sm)
    sy = -0.5j * (sp - sm)
    sz = m * psi
    mean_x = float(np.vdot(psi, sx).real)
    mean_y = float(np.vdot(psi, sy).real)
    mean_z = float(np.vdot(psi, sz).real)
    return SpinMoments(
        n_atoms=n_atoms, mean_x=mean_x, mean_y=mean_y, mean_z=mean_z,
        var_x=float(np.vdot(sx, sx).real) - mean_x**2,
        var_y=float(np.vdot(sy, sy).real) - mean_y**2,
        var_z=float(np.vdot(sz, sz).real) - mean_z**2,
        cov_yz=float(np.vdot(sy, sz).real) - mean_y * mean_z,
    )


def wineland_xi2(moments: SpinMoments, contrast_factor: float = 1.0) -> float:
    """Wineland parameter xi_R^2 = N Var(S_z) / <S_x>^2 (linear, not dB); <S_x> scaled by contrast_factor."""
    return moments.n_atoms * moments.var_z / (moments.mean_x * contrast_factor) ** 2


def twisted_state(n_atoms: int, twist_mu: float) -> np.ndarray:
    """One-axis twisting exp(-i mu S_z^2 / 2) of the coherent state along +x (mu = 2 chi t, rad)."""
    m = _m_values(_check_n(n_atoms))
    return coherent_state_x(n_atoms) * np.exp(-0.5j * twist_mu * m**2)


def _squeezing_angle(moments: SpinMoments) -> float:
    """Angle nu of the x rotation exp(-i nu S_x) that puts the minimal y-z variance on S_z.

    After the rotation, S_z reads S_z cos nu + S_y sin nu of the twisted state, whose variance is
    (Vz + Vy)/2 + (Vz - Vy)/2 cos 2nu + Cov sin 2nu.
    """
    return 0.5 * math.atan2(-moments.cov_yz, -(moments.var_z - moments.var_y) / 2.0)


def squeezed_state(n_atoms: int, twist_mu: float) -> np.ndarray:
    """Spin-squeezed state: one-axis twisting by mu, then the x rotation that puts the minimal variance on z.

    Result: reduced Var(S_z), increased Var(S_y), large positive <S_x>.
    """
    psi = twisted_state(n_atoms, twist_mu)
    nu = _squeezing_angle(spin_moments(psi))
    return _exp_sx(psi, nu)


def _min_xi2(n_atoms: int, twist_mu: float) -> float:
    """Wineland xi_R^2 of the squeezed state for twist mu (from the twisted state's y-z covariance)."""
    mom = spin_moments(twisted_state(n_atoms, twist_mu))
    half_sum = 0.5 * (mom.var_y + mom.var_z)
    half_diff = 0.5 * (mom.var_z - mom.var_y)
    v_min = half_sum - math.hypot(half_diff, mom.cov_yz)
    return n_atoms * v_min / mom.mean_x**2


@functools.lru_cache(maxsize=64)
def solve_twist_for_wineland(n_atoms: int, xi2_target: float) -> float:
    """Twisting strength mu (rad) whose squeezed state has Wineland xi_R^2 = xi2_target (linear, 0 < xi2 <= 1).

    Uses the first crossing on the rising-mu branch (small twist, before over-twisting spoils the contrast).
    """
    n_atoms = _check_n(n_atoms)
    if not 0.0 < xi2_target <= 1.0:
        raise ValueError(f"Wineland xi_R^2 target must be in (0, 1], got {xi2_target!r}")
    if xi2_target == 1.0 or n_atoms < 2:
        return 0.0
    grid = np.geomspace(1e-6, math.pi, 400)
    previous = 0.0
    best = 1.0
    for mu in grid:
        xi2 = _min_xi2(n_atoms, float(mu))
        if xi2 <= xi2_target:
            return brentq(lambda x: _min_xi2(n_atoms, x) - xi2_target, previous, float(mu), xtol=1e-14)
        if xi2 > best * 1.5:  # past the optimum: the target is out of reach
            break
        best = min(best, xi2)
        previous = float(mu)
    raise ValueError(f"one-axis twisting cannot reach xi_R^2 = {xi2_target:.4g} with N = {n_atoms} "
                     f"(best {best:.4g})")


def outcome_probabilities(psi: np.ndarray) -> np.ndarray:
    """Probabilities of the z-measurement outcomes N1 = 0..N (|amplitude|^2, normalised)."""
    psi = _check_state(psi)
    p = np.abs(psi) ** 2
    total = p.sum()
    if not total > 0:
        raise ValueError("spin state has zero norm")
    return p / total


def sample_n1(psi: np.ndarray, rng: np.random.Generator, size: int | None = None) -> np.ndarray | int:
    """Projective z measurement: draw N1 (atoms in |1>) from |amplitudes|^2; size=None gives one int."""
    p = outcome_probabilities(psi)
    cdf = np.cumsum(p)
    cdf[-1] = 1.0
    u = rng.random(size)
    out = np.searchsorted(cdf, u, side="right")
    return int(out) if size is None else out.astype(np.int64)
