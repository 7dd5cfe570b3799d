"""The simulated atoms of the virtual lab: one shot = state, Rabi pulse, projective measurement, images.

The virtual lab calls :func:`simulate_shot` (or :class:`SimulatedAtoms`) with the pulses the emulated
instruments really produced (area = Rabi frequency x gate duration, phase from the microwave
generator) and the exposure times the timing card really fired. Everything random is drawn from one
seed, so a shot's frames and truth are reproducible. Spin conventions: see spin.py; pixel
conventions: see cloud.py; imaging model: see imaging.py; overview: docs/virtual-lab-atoms.md.
"""
from __future__ import annotations

import dataclasses

import functools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from drivers.simulated.cloud import CloudConfig, CloudGeometry, cloud_geometry, sample_positions
from drivers.simulated.imaging import (FRAME_NAMES, ExposurePlan, ImagingConfig, atom_number_image,
                                       recoil_variance_px2, render_absorption_frames)
from drivers.simulated.spin import (RabiPulse, coherent_state_x, rotate, rotate_z, sample_n1, solve_twist_for_wineland,
                                    squeezed_state)

__all__ = ["PAPER_DEPHASING_RMS_RAD", "SpinConfig", "SimulationConfig", "Exposures", "ShotTruth", "Shot",
           "simulate_shot", "SimulatedAtoms", "paper_measurement_pulses", "prepared_state", "twist_strength",
           "counting_region", "count_atoms_plain", "apply_pulse_noise", "draw_atom_number", "FRAME_NAMES", "RabiPulse"]


#: Default common-mode phase noise (rad rms per shot, rotation about z before the readout pulse): a
#: realistic 10 mrad. With the paper's 3 px gap the closed-form E_EPR(A -> B) is then strongest at
#: N_A/N ~ 0.73 and no ratio steers both ways; above ~0.015 rad no ratio steers at all (the gap's atom
#: loss and this noise both weaken it). analysis.exact_model; docs/virtual-lab-atoms.md, "Technical
#: noise and the shape of Fig. 3a".
PAPER_DEPHASING_RMS_RAD = 0.01


@dataclass(frozen=True)
class SpinConfig:
    """The prepared collective state and the technical noise of state preparation and readout.

    state "squeezed": one-axis twisting of the coherent state along +x, then the x rotation putting the
    minimal variance on S_z; the twist is solved so that the ensemble (after dephasing) has
    Wineland squeezing wineland_squeezing_db. dephasing_rms_rad: the common-mode phase noise, a
    random rotation about z per shot (Gaussian angle, rad) between state preparation and the readout
    pulse, i.e. the mixture whose contrast is exp(-rms^2/2) and whose Var(S_y) grows by about
    <S_x>^2 rms^2 (extra anti-squeezing) while Var(S_z) is unchanged. Default
    PAPER_DEPHASING_RMS_RAD (0.01 rad, for both states): technical noise the detection-noise
    calibration cannot see (docs/virtual-lab-atoms.md, "Technical noise and the shape of Fig. 3a");
    set 0 for the noiseless model of physics.md. The other technical-noise terms are 0 by default:
    atom_number_rms (paper: 40; N = round(Normal(mean, rms)), at least 1), phase_noise_rms_rad (added
    to each pulse's phase: for the x and y readouts the same as dephasing, variances add),
    rabi_area_rel_rms (relative error of each area).
    """

    state: Literal["coherent", "squeezed"] = "squeezed"
    wineland_squeezing_db: float = -3.2
    dephasing_rms_rad: float = PAPER_DEPHASING_RMS_RAD
    atom_number_mean: int = 530
    atom_number_rms: float = 0.0
    phase_noise_rms_rad: float = 0.0
    rabi_area_rel_rms: float = 0.0

    def __post_init__(self) -> None:
        if self.state not in ("coherent", "squeezed"):
            raise ValueError(f"SpinConfig.state must be 'coherent' or 'squeezed', got {self.state!r}")
        if not (isinstance(self.atom_number_mean, (int, np.integer)) and self.atom_number_mean >= 1):
            raise ValueError(f"SpinConfig.atom_number_mean must be an integer >= 1, got {self.atom_number_mean!r}")
        for name in ("dephasing_rms_rad", "atom_number_rms", "phase_noise_rms_rad", "rabi_area_rel_rms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"SpinConfig.{name} must be a finite number >= 0, got {value!r}")
        if self.state == "squeezed" and not (math.isfinite(self.wineland_squeezing_db)
                                             and self.wineland_squeezing_db <= 0):
            raise ValueError(f"SpinConfig.wineland_squeezing_db must be <= 0 dB, got {self.wineland_squeezing_db!r}")
        if self.state == "squeezed":
            try:
                twist_strength(self)
            except ValueError as exc:
                raise ValueError(f"SpinConfig: no one-axis-twisted state has {self.wineland_squeezing_db} dB "
                                 f"with dephasing_rms_rad={self.dephasing_rms_rad} and N={self.atom_number_mean}: "
                                 f"{exc}") from exc

    @property
    def noiseless(self) -> bool:
        """True when every shot has the same N and the same (nominal) pulses and state."""
        return (self.atom_number_rms == 0 and self.phase_noise_rms_rad == 0 and self.rabi_area_rel_rms == 0
                and self.dephasing_rms_rad == 0)


@dataclass(frozen=True)
class SimulationConfig:
    """Every constant of the simulated atoms (paper defaults)."""

    spin: SpinConfig = field(default_factory=SpinConfig)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    imaging: ImagingConfig = field(default_factory=ImagingConfig)

    def __post_init__(self) -> None:
        if not math.isclose(self.cloud.pixel_size_um, self.imaging.pixel_size_um):
            raise ValueError(f"cloud.pixel_size_um ({self.cloud.pixel_size_um}) and imaging.pixel_size_um "
                             f"({self.imaging.pixel_size_um}) must be equal")


@dataclass(frozen=True)
class Exposures:
    """Timing of one shot's imaging, from the timing card: probe pulse starts after release, pulse lengths (s)."""

    atoms2_time_s: float = 2.2e-3
    atoms1_time_s: float = 3.7e-3
    atoms2_pulse_s: float = 50e-6
    atoms1_pulse_s: float = 50e-6
    ref2_pulse_s: float = 50e-6
    ref1_pulse_s: float = 50e-6

    def __post_init__(self) -> None:
        for name in ("atoms2_time_s", "atoms1_time_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Exposures.{name} must be > 0 s after release, got {getattr(self, name)!r}")
        for name in ("atoms2_pulse_s", "atoms1_pulse_s", "ref2_pulse_s", "ref1_pulse_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Exposures.{name} (probe pulse length) must be > 0 s, got {getattr(self, name)!r}")
        if not self.atoms1_time_s >= self.atoms2_time_s + self.atoms2_pulse_s:
            raise ValueError(f"Exposures: the |1> exposure ({self.atoms1_time_s} s) must start after the |2> pulse "
                             f"ends ({self.atoms2_time_s + self.atoms2_pulse_s} s)")

    @property
    def plan(self) -> ExposurePlan:
        """The probe pulse lengths as an imaging ExposurePlan."""
        return ExposurePlan(self.atoms2_pulse_s, self.atoms1_pulse_s, self.ref2_pulse_s, self.ref1_pulse_s)


@dataclass(frozen=True)
class ShotTruth:
    """Everything the simulation decided for one shot (positions as (x, y) pixels at each state's exposure)."""

    seed_entropy: int | Sequence[int]
    seed_spawn_key: tuple[int, ...]
    n_atoms: int
    n1: int
    n2: int
    state: str
    dephasing_rad: float
    pulses_requested: tuple[RabiPulse, ...]
    pulses_applied: tuple[RabiPulse, ...]
    exposures: Exposures
    geometry1: CloudGeometry
    geometry2: CloudGeometry
    positions1: np.ndarray
    positions2: np.ndarray
    imaged_positions1: np.ndarray | None
    imaged_positions2: np.ndarray | None
    fringe_phases_rad: np.ndarray | None

    @property
    def m(self) -> float:
        """Measured S_z = (N1 - N2)/2."""
        return (self.n1 - self.n2) / 2.0


@dataclass(frozen=True)
class Shot:
    """One shot: its truth and its frames (5, H, W) uint16 in FRAME_NAMES order (None if not rendered)."""

    truth: ShotTruth
    frames: np.ndarray | None

    def frame(self, name: str) -> np.ndarray:
        """The frame called name (one of FRAME_NAMES)."""
        if self.frames is None:
            raise ValueError("this shot was simulated with render=False: it has no frames")
        if name not in FRAME_NAMES:
            raise ValueError(f"unknown frame {name!r}; expected one of {FRAME_NAMES}")
        return self.frames[FRAME_NAMES.index(name)]


def paper_measurement_pulses(axis: str) -> tuple[RabiPulse, ...]:
    """Nominal pulses selecting the measured axis, as in the paper.

    "z": no pulse; "y": pi/2 at phase 0 (about x), reads +S_y; "x": pi/2 at phase pi/2 (about y), reads -S_x.
    """
    if axis == "z":
        return ()
    if axis == "y":
        return (RabiPulse(math.pi / 2, 0.0),)
    if axis == "x":
        return (RabiPulse(math.pi / 2, math.pi / 2),)
    raise ValueError(f"measurement axis must be 'x', 'y' or 'z', got {axis!r}")


def twist_strength(spin: SpinConfig) -> float:
    """One-axis twisting mu (rad) of the squeezed state for the mean atom number (0 for the coherent state)."""
    if spin.state == "coherent":
        return 0.0
    xi2_pure = 10.0 ** (spin.wineland_squeezing_db / 10.0) * math.exp(-spin.dephasing_rms_rad**2)
    if xi2_pure > 1.0:
        xi2_pure = 1.0
    return solve_twist_for_wineland(int(spin.atom_number_mean), xi2_pure)


@functools.lru_cache(maxsize=512)
def _cached_state(n_atoms: int, kind: str, mu: float) -> np.ndarray:
    """The prepared state, kept for 512 (N, kind, mu): 8.5 kB each at N = 530, 4.4 MB in all."""
    psi = coherent_state_x(n_atoms) if kind == "coherent" else squeezed_state(n_atoms, mu)
    psi.flags.writeable = False
    return psi


def prepared_state(spin: SpinConfig, n_atoms: int) -> np.ndarray:
    """Pure prepared state (Dicke vector, read-only) for n_atoms; the same twist mu for every N."""
    return _cached_state(int(n_atoms), spin.state, twist_strength(spin))


def draw_atom_number(spin: SpinConfig, rng: np.random.Generator) -> int:
    """This shot's N: the mean, or round(Normal(mean, rms)) (at least 1) when atom_number_rms > 0."""
    if spin.atom_number_rms == 0:
        return int(spin.atom_number_mean)
    return max(1, int(round(rng.normal(spin.atom_number_mean, spin.atom_number_rms))))


def apply_pulse_noise(spin: SpinConfig, pulse: RabiPulse, rng: np.random.Generator) -> RabiPulse:
    """The pulse the atoms actually see: phase noise and relative pulse-area (Rabi frequency) drift."""
    area, phase = pulse.area_rad, pulse.phase_rad
    if spin.rabi_area_rel_rms > 0:
        area *= 1.0 + rng.normal(0.0, spin.rabi_area_rel_rms)
    if spin.phase_noise_rms_rad > 0:
        phase += rng.normal(0.0, spin.phase_noise_rms_rad)
    return RabiPulse(float(area), float(phase), pulse.detuning_area_rad)


def _seed_sequence(seed: int | np.random.SeedSequence) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or a numpy SeedSequence, got {seed!r}")
    return np.random.SeedSequence(int(seed))


def _entropy(seq: np.random.SeedSequence) -> int:
    """The sequence's entropy (an int here: every sequence of this module is made from one)."""
    e = seq.entropy
    assert isinstance(e, int), e
    return e


def simulate_shot(config: SimulationConfig, *, seed: int | np.random.SeedSequence,
                  pulses: Sequence[RabiPulse] = (), exposures: Exposures | None = None,
                  atoms_loaded: bool = True, render: bool = True) -> Shot:
    """Simulate one shot reproducibly from seed: prepare, rotate by pulses (in order), measure, image.

    atoms_loaded=False gives an atom-free shot (N = 0: detection-noise calibration); render=False skips
    the frames (truth only).
    """
    exposures = exposures if exposures is not None else Exposures()
    pulses = tuple(pulses)
    for p in pulses:
        if not isinstance(p, RabiPulse):
            raise ValueError(f"pulses must be RabiPulse objects, got {p!r}")
    seq = _seed_sequence(seed)
    rng = np.random.default_rng(seq)
    spin = config.spin
    n_atoms = draw_atom_number(spin, rng) if atoms_loaded else 0
    dephasing = float(rng.normal(0.0, spin.dephasing_rms_rad)) if spin.dephasing_rms_rad > 0 else 0.0
    applied = tuple(apply_pulse_noise(spin, p, rng) for p in pulses)
    n1 = 0
    if n_atoms > 0:
        psi = prepared_state(spin, n_atoms)
        if dephasing:
            psi = rotate_z(psi, dephasing)
        for p in applied:
            psi = rotate(psi, p)
        n1 = int(sample_n1(psi, rng))
    n2 = n_atoms - n1
    geom2 = cloud_geometry(config.cloud, exposures.atoms2_time_s)
    geom1 = cloud_geometry(config.cloud, exposures.atoms1_time_s)
    positions2 = sample_positions(geom2, n2, rng)
    positions1 = sample_positions(geom1, n1, rng)
    frames: np.ndarray | None = None
    info: dict[str, np.ndarray] = {}
    if render:
        frames, info = render_absorption_frames(config.imaging, positions1, positions2, exposures.plan, rng)
    truth = ShotTruth(
        seed_entropy=_entropy(seq), seed_spawn_key=tuple(seq.spawn_key), n_atoms=n_atoms, n1=n1, n2=n2,
        state=spin.state, dephasing_rad=dephasing, pulses_requested=pulses, pulses_applied=applied,
        exposures=exposures, geometry1=geom1, geometry2=geom2, positions1=positions1, positions2=positions2,
        imaged_positions1=info.get("imaged_positions1"), imaged_positions2=info.get("imaged_positions2"),
        fringe_phases_rad=info.get("fringe_phases_rad"))
    return Shot(truth=truth, frames=frames)


class SimulatedAtoms:
    """A reproducible stream of shots: shot k uses SeedSequence(seed, spawn_key=(k,)). Thread-safe."""

    def __init__(self, config: SimulationConfig | None = None, *, seed: int = 0) -> None:
        self.config = config if config is not None else SimulationConfig()
        self.seed = int(_entropy(_seed_sequence(seed)))  # validates
        self._next = 0
        self._lock = threading.Lock()

    def with_atom_number(self, mean: float) -> SimulatedAtoms:
        """The same stream (seed) with ``mean`` atoms on average (rounded, at least 1); the
        shot-to-shot rms keeps its fraction of the mean."""
        spin = self.config.spin
        n = max(1, int(round(mean)))
        scaled = dataclasses.replace(spin, atom_number_mean=n,
                                     atom_number_rms=spin.atom_number_rms * n / spin.atom_number_mean)
        return SimulatedAtoms(dataclasses.replace(self.config, spin=scaled), seed=self.seed)

    def with_probe_saturation(self, saturation: float) -> SimulatedAtoms:
        """The same stream (seed) imaged at probe intensity ``saturation`` (I/I_sat)."""
        imaging = dataclasses.replace(self.config.imaging, probe_saturation=float(saturation))
        return SimulatedAtoms(dataclasses.replace(self.config, imaging=imaging), seed=self.seed)

    @property
    def shots_taken(self) -> int:
        """Number of shots handed out by next_shot."""
        return self._next

    def shot(self, index: int, *, pulses: Sequence[RabiPulse] = (), exposures: Exposures | None = None,
             atoms_loaded: bool = True, render: bool = True) -> Shot:
        """Shot number index (reproducible regardless of the order shots are requested in)."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise ValueError(f"shot index must be a non-negative integer, got {index!r}")
        seq = np.random.SeedSequence(self.seed, spawn_key=(int(index),))
        return simulate_shot(self.config, seed=seq, pulses=pulses, exposures=exposures,
                             atoms_loaded=atoms_loaded, render=render)

    def next_shot(self, *, pulses: Sequence[RabiPulse] = (), exposures: Exposures | None = None,
                  atoms_loaded: bool = True, render: bool = True) -> Shot:
        """The next shot of the stream."""
        with self._lock:
            index = self._next
            self._next += 1
        return self.shot(index, pulses=pulses, exposures=exposures, atoms_loaded=atoms_loaded, render=render)


def counting_region(config: SimulationConfig, state: int, exposures: Exposures | None = None,
                    margin_blur_rms: float = 1.5) -> np.ndarray:
    """Boolean (H, W) ellipse around state's cloud: Thomas-Fermi half-widths + margin_blur_rms x total blur rms."""
    exposures = exposures if exposures is not None else Exposures()
    time_s, pulse_s = ((exposures.atoms1_time_s, exposures.atoms1_pulse_s) if state == 1 else
                       (exposures.atoms2_time_s, exposures.atoms2_pulse_s))
    if state not in (1, 2):
        raise ValueError(f"state must be 1 or 2, got {state!r}")
    geom = cloud_geometry(config.cloud, time_s)
    imaging = config.imaging
    recoil = recoil_variance_px2(imaging, imaging.probe_saturation, pulse_s)
    half = [r + margin_blur_rms * math.sqrt(p**2 + recoil) for r, p in zip(geom.half_width_px, imaging.psf_rms_px)]
    height, width = imaging.frame_shape
    y, x = np.mgrid[0:height, 0:width].astype(float)
    return ((x + 0.5 - geom.centre_px[0]) / half[0]) ** 2 + ((y + 0.5 - geom.centre_px[1]) / half[1]) ** 2 < 1.0


def count_atoms_plain(frames: np.ndarray, config: SimulationConfig, exposures: Exposures | None = None,
                      regions: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[float, float]:
    """(N1, N2) from one shot's frames by a plain Reinaudi OD sum with the known calibration.

    regions: boolean masks (for |1>, for |2>); default: counting_region for each state.
    """
    exposures = exposures if exposures is not None else Exposures()
    frames = np.asarray(frames)
    expected = (len(FRAME_NAMES),) + tuple(config.imaging.frame_shape)
    if frames.shape != expected:
        raise ValueError(f"frames must have shape {expected} (FRAME_NAMES order), got {frames.shape}")
    if regions is None:
        regions = (counting_region(config, 1, exposures), counting_region(config, 2, exposures))
    atoms2, atoms1, ref2, ref1, dark = frames
    img2 = atom_number_image(atoms2, ref2, dark, config.imaging, state=2, pulse_s=exposures.atoms2_pulse_s)
    img1 = atom_number_image(atoms1, ref1, dark, config.imaging, state=1, pulse_s=exposures.atoms1_pulse_s)
    return float(img1[np.asarray(regions[0], dtype=bool)].sum()), float(img2[np.asarray(regions[1], dtype=bool)].sum())
