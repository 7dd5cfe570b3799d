"""Absorption images of the simulated atoms: saturated absorption, blur, probe fringes, camera noise.

Per exposure, from atom positions (x, y) in pixels (see cloud.py for the pixel convention):

1. Photon-recoil blur (two-level, resonant, constant intensity; Joffe et al. as in the paper's
   supplement): during a pulse of length T the atom's transverse position random-walks; the image of
   one atom has variance x2 = (Gamma/72) s/(1+s) v_rec^2 T^3 per axis about its start. Of this, the
   part 12/20 = 0.6 is the variance of the atom's time-averaged position (drawn at random per atom);
   the rest, the smear along its own path, is folded into the deterministic point-spread function.
2. Optics PSF: Gaussian (1.1 px horizontal, 1.2 px vertical rms), integrated exactly over each pixel
   (separable normal CDF differences), applied to the column density (valid at the low optical depth
   of these clouds, peak OD ~ 0.1, where transmission is linear in the column density).
3. Transmission from the Reinaudi relation, per pixel, in saturation units t = I/I_sat:
   D = sigma_0 n_col d_state = alpha ln(t_in/t_out) + t_in - t_out, alpha = sigma_0/sigma_eff,
   solved exactly: t_out = alpha * omega(ln(t_in/alpha) + (t_in - D)/alpha) (Wright omega, W(e^z)).
   d_state is the state's detected/true ratio: its relative detectivity (paper: ~5 % more for |1>)
   times a common absolute scale (paper: projection-noise slope 1.031).
4. Probe: Gaussian beam envelope with a few sinusoidal fringe components whose phases drift from shot
   to shot (uniform) and jitter (rms fringe_phase_jitter_rad) between the four light exposures.
5. Camera: Poisson photoelectrons, Gaussian read noise (electrons), gain (counts per photoelectron),
   offset (counts), rounding and clipping to 0..65535 (uint16).
Intensities are photoelectrons per pixel per pulse; I_sat scales with the pulse length.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr, wrightomega

from conventions.frames import FRAME_NAMES

__all__ = ["FringeComponent", "ImagingConfig", "ExposurePlan", "recoil_variance_px2", "column_atoms_image",
           "transmitted_intensity", "probe_intensity", "camera_counts", "atom_number_image",
           "sigma0_m2", "render_absorption_frames", "FRAME_NAMES", "photons_per_pixel_at_isat"]


_H = 6.62607015e-34
_C = 299792458.0
_ISAT_SIGMA_PLUS_W_PER_M2 = 16.69  # 87Rb D2 cycling transition, sigma+ light (Steck)


@dataclass(frozen=True)
class FringeComponent:
    """One sinusoidal probe fringe: relative amplitude, period (px) and wave-vector angle (rad from +x)."""

    amplitude: float
    period_px: float
    angle_rad: float

    def __post_init__(self) -> None:
        if not 0 <= self.amplitude < 1:
            raise ValueError(f"FringeComponent.amplitude must be in [0, 1), got {self.amplitude!r}")
        if not self.period_px > 0:
            raise ValueError(f"FringeComponent.period_px must be > 0, got {self.period_px!r}")


@dataclass(frozen=True)
class ImagingConfig:
    """Absorption imaging and camera constants (paper defaults where the paper gives them).

    Detection-noise defaults: a probe at saturation (s = 1, which also reproduces the paper's total
    blur of 1.4 px) with I_sat worth 5000 photoelectrons per pixel per 50 us (the sigma+ saturation
    intensity 1.67 mW/cm^2 delivers 5545 photons to a 1.3 um pixel in 50 us; 90 % detection
    efficiency), gain 0.5 counts/e-, read noise 8 e-: ~6 atoms rms per whole picture (see docs).
    """

    frame_shape: tuple[int, int] = (256, 256)
    """(H rows, W columns)."""
    pixel_size_um: float = 1.3
    wavelength_m: float = 780.24e-9
    sigma_eff_ratio: float = 0.68
    """sigma_eff / sigma_0 = 1/alpha (Reinaudi)."""
    detectivity: tuple[float, float] = (1.05, 1.0)
    """Relative absorption strength of (|1>, |2>) atoms; the paper finds ~5 % in favour of |1>."""
    absolute_scale: float = 1.031
    """Common detected/true atom-number ratio (the true sigma_eff is this much above the nominal one);
    the paper's projection-noise slope Var(N1 - N2)/N = 1.031 is this calibration factor."""
    psf_rms_px: tuple[float, float] = (1.1, 1.2)
    """Optics point-spread function rms (x horizontal, y vertical)."""
    recoil_blur_enabled: bool = True
    linewidth_rad_per_s: float = 2 * math.pi * 6.065e6
    recoil_velocity_m_per_s: float = 5.88e-3
    probe_saturation: float = 1.0
    """Probe intensity at the beam centre in units of I_sat."""
    isat_photoelectrons: float = 5000.0
    """I_sat expressed as photoelectrons per pixel in a pulse of isat_reference_pulse_s."""
    isat_reference_pulse_s: float = 50e-6
    probe_waist_px: float = 400.0
    """Probe 1/e^2 intensity radius."""
    probe_centre_px: tuple[float, float] = (128.0, 128.0)
    fringes: tuple[FringeComponent, ...] = field(default_factory=lambda: (
        FringeComponent(0.03, 13.0, 0.35), FringeComponent(0.02, 21.0, 1.9), FringeComponent(0.015, 37.0, 4.1)))
    fringe_phase_jitter_rad: float = 0.02
    camera_gain: float = 0.5
    """Counts per photoelectron."""
    read_noise_e: float = 8.0
    camera_offset_counts: float = 200.0
    full_scale_counts: int = 65535

    def __post_init__(self) -> None:
        h, w = self.frame_shape
        if not (isinstance(h, (int, np.integer)) and isinstance(w, (int, np.integer)) and h >= 8 and w >= 8):
            raise ValueError(f"ImagingConfig.frame_shape must be two integers >= 8 (H, W), got {self.frame_shape!r}")
        for name in ("pixel_size_um", "wavelength_m", "probe_waist_px", "camera_gain", "isat_photoelectrons",
                     "absolute_scale", "isat_reference_pulse_s", "linewidth_rad_per_s", "recoil_velocity_m_per_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ImagingConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 < self.sigma_eff_ratio <= 1:
            raise ValueError(f"ImagingConfig.sigma_eff_ratio must be in (0, 1], got {self.sigma_eff_ratio!r}")
        for name in ("probe_saturation", "read_noise_e", "camera_offset_counts", "fringe_phase_jitter_rad"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"ImagingConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if len(self.detectivity) != 2 or not all(d > 0 for d in self.detectivity):
            raise ValueError(f"ImagingConfig.detectivity must be two positive numbers (|1>, |2>), "
                             f"got {self.detectivity!r}")
        if len(self.psf_rms_px) != 2 or not all(v >= 0 for v in self.psf_rms_px):
            raise ValueError(f"ImagingConfig.psf_rms_px must be two numbers >= 0 (x, y), got {self.psf_rms_px!r}")
        if not 0 < self.full_scale_counts <= 65535:
            raise ValueError(f"ImagingConfig.full_scale_counts must be in 1..65535, got {self.full_scale_counts!r}")

    @property
    def alpha(self) -> float:
        """Reinaudi alpha = sigma_0 / sigma_eff."""
        return 1.0 / self.sigma_eff_ratio

    def isat_for(self, pulse_s: float) -> float:
        """I_sat in photoelectrons per pixel for a probe pulse of pulse_s seconds."""
        return self.isat_photoelectrons * pulse_s / self.isat_reference_pulse_s

    def state_detectivity(self, state: int) -> float:
        """Detected/true atom-number ratio of state 1 or 2: detectivity of the state x absolute_scale."""
        if state not in (1, 2):
            raise ValueError(f"state must be 1 or 2, got {state!r}")
        return (self.detectivity[0] if state == 1 else self.detectivity[1]) * self.absolute_scale


@dataclass(frozen=True)
class ExposurePlan:
    """Probe pulse lengths (s) of the four light exposures, in FRAME_NAMES order."""

    atoms2_s: float = 50e-6
    atoms1_s: float = 50e-6
    ref2_s: float = 50e-6
    ref1_s: float = 50e-6

    def __post_init__(self) -> None:
        for name in ("atoms2_s", "atoms1_s", "ref2_s", "ref1_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"probe pulse length {name} must be > 0 s, got {getattr(self, name)!r}")


def photons_per_pixel_at_isat(config: ImagingConfig, pulse_s: float) -> float:
    """Photons reaching one object-plane pixel in pulse_s at the sigma+ saturation intensity 1.669 mW/cm^2."""
    energy_j = _ISAT_SIGMA_PLUS_W_PER_M2 * (config.pixel_size_um * 1e-6) ** 2 * pulse_s
    return energy_j / (_H * _C / config.wavelength_m)


def sigma0_m2(config: ImagingConfig) -> float:
    """Resonant cross-section sigma_0 = 3 lambda^2 / (2 pi) in m^2."""
    return 3.0 * config.wavelength_m**2 / (2.0 * math.pi)


def recoil_variance_px2(config: ImagingConfig, saturation: float, pulse_s: float) -> float:
    """Photon-recoil image variance per axis, (Gamma/72) s/(1+s) v_rec^2 T^3, in px^2 (0 if disabled)."""
    if not config.recoil_blur_enabled:
        return 0.0
    var_m2 = (config.linewidth_rad_per_s / 72.0) * saturation / (1.0 + saturation) \
        * config.recoil_velocity_m_per_s**2 * pulse_s**3
    return var_m2 / (config.pixel_size_um * 1e-6) ** 2


def column_atoms_image(positions: np.ndarray, frame_shape: tuple[int, int], blur_rms_px: tuple[float, float],
                       weight: float = 1.0) -> np.ndarray:
    """Atoms per pixel (H, W): each (x, y) position spread by a Gaussian of blur_rms_px, integrated per pixel.

    Only the window within 8 blur rms (+ 2 px) of the atoms is computed; outside it the image is 0.
    """
    height, width = frame_shape
    out = np.zeros(frame_shape)
    positions = np.asarray(positions, dtype=float).reshape(-1, 2)
    if positions.shape[0] == 0:
        return out

    def window(coord: np.ndarray, n: int, sigma: float) -> tuple[int, int]:
        reach = 8.0 * sigma + 2.0
        return max(int(math.floor(coord.min() - reach)), 0), min(int(math.ceil(coord.max() + reach)), n)

    def weights(coord: np.ndarray, lo: int, hi: int, sigma: float) -> np.ndarray:
        if sigma == 0:
            w = np.zeros((coord.size, hi - lo))
            idx = np.floor(coord).astype(np.int64) - lo
            ok = (idx >= 0) & (idx < hi - lo)
            w[np.nonzero(ok)[0], idx[ok]] = 1.0
            return w
        edges = np.arange(lo, hi + 1, dtype=float)
        return np.diff(ndtr((edges[None, :] - coord[:, None]) / sigma), axis=1)

    c0, c1 = window(positions[:, 0], width, blur_rms_px[0])
    r0, r1 = window(positions[:, 1], height, blur_rms_px[1])
    if c0 >= c1 or r0 >= r1:
        return out
    wx = weights(positions[:, 0], c0, c1, blur_rms_px[0])
    wy = weights(positions[:, 1], r0, r1, blur_rms_px[1])
    out[r0:r1, c0:c1] = weight * (wy.T @ wx)
    return out


def transmitted_intensity(i_in: np.ndarray, optical_depth: np.ndarray, isat: float, alpha: float) -> np.ndarray:
    """I_out solving sigma_0 n = alpha ln(I_in/I_out) + (I_in - I_out)/I_sat exactly (same units as i_in).

    optical_depth is D = sigma_0 n_col (times the state's detectivity), dimensionless.
    """
    i_in = np.asarray(i_in, dtype=float)
    depth = np.broadcast_to(np.asarray(optical_depth, dtype=float), i_in.shape)
    out = i_in.copy()
    absorbing = (depth > 0) & (i_in > 0)
    if np.any(absorbing):
        t_in = i_in[absorbing] / isat
        z = np.log(t_in / alpha) + (t_in - depth[absorbing]) / alpha
        out[absorbing] = alpha * np.real(wrightomega(z)) * isat
    return out


def probe_intensity(config: ImagingConfig, isat: float, fringe_phases: np.ndarray) -> np.ndarray:
    """Incident probe (H, W) in the units of isat: s * isat * envelope * (1 + sum of fringes).

    Envelope and fringes are separable in x and y (evaluated at pixel centres as outer products).
    """
    height, width = config.frame_shape
    x = np.arange(width) + 0.5
    y = np.arange(height) + 0.5
    cx, cy = config.probe_centre_px
    w2 = config.probe_waist_px**2
    modulation = np.ones(config.frame_shape)
    for fringe, phase in zip(config.fringes, fringe_phases):
        k = 2.0 * math.pi / fringe.period_px
        wave = np.outer(np.exp(1j * (k * math.sin(fringe.angle_rad) * y + phase)),
                        np.exp(1j * k * math.cos(fringe.angle_rad) * x))
        modulation += fringe.amplitude * wave.real
    envelope = np.outer(np.exp(-2.0 * (y - cy) ** 2 / w2), np.exp(-2.0 * (x - cx) ** 2 / w2))
    return (config.probe_saturation * isat) * envelope * modulation


def camera_counts(photoelectrons: np.ndarray, config: ImagingConfig, rng: np.random.Generator) -> np.ndarray:
    """Camera frame (uint16): Poisson(photoelectrons) + read noise, times gain, plus offset, clipped to full scale."""
    electrons = rng.poisson(np.clip(photoelectrons, 0, None)).astype(float)
    electrons += rng.standard_normal(electrons.shape) * config.read_noise_e
    counts = np.rint(electrons * config.camera_gain + config.camera_offset_counts)
    return np.clip(counts, 0, config.full_scale_counts).astype(np.uint16)


def render_absorption_frames(config: ImagingConfig, positions1: np.ndarray, positions2: np.ndarray,
                             plan: ExposurePlan, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Frames (5, H, W) uint16 in FRAME_NAMES order for atoms of |1> and |2> at their image positions (x, y) px.

    Returns the frames and the random imaging parameters drawn (fringe phases per exposure, imaged
    positions after the random part of the recoil walk) for the shot truth.
    """
    n_fringes = len(config.fringes)
    base = rng.random(n_fringes) * (2.0 * math.pi)
    jitter = rng.standard_normal((4, n_fringes)) * config.fringe_phase_jitter_rad
    phases = base[None, :] + jitter  # rows: atoms2, atoms1, ref2, ref1
    pulses = (plan.atoms2_s, plan.atoms1_s, plan.ref2_s, plan.ref1_s)
    area_m2 = (config.pixel_size_um * 1e-6) ** 2
    frames = np.empty((5,) + tuple(config.frame_shape), dtype=np.uint16)
    imaged: dict[int, np.ndarray] = {}
    for slot, (state, positions) in enumerate(((2, positions2), (1, positions1))):
        pulse_s = pulses[slot]
        isat = config.isat_for(pulse_s)
        var_recoil = recoil_variance_px2(config, config.probe_saturation, pulse_s)
        positions = np.asarray(positions, dtype=float).reshape(-1, 2)
        walked = positions + rng.standard_normal(positions.shape) * math.sqrt(0.6 * var_recoil)
        imaged[state] = walked
        blur = tuple(math.sqrt(p**2 + 0.4 * var_recoil) for p in config.psf_rms_px)
        atoms = column_atoms_image(walked, config.frame_shape, blur)  # type: ignore[arg-type]
        depth = atoms * (sigma0_m2(config) / area_m2) * config.state_detectivity(state)
        i_in = probe_intensity(config, isat, phases[slot])
        frames[slot] = camera_counts(transmitted_intensity(i_in, depth, isat, config.alpha), config, rng)
    for slot in (2, 3):
        frames[slot] = camera_counts(probe_intensity(config, config.isat_for(pulses[slot]), phases[slot]), config, rng)
    frames[4] = camera_counts(np.zeros(config.frame_shape), config, rng)
    info = {"fringe_phases_rad": phases, "imaged_positions1": imaged[1], "imaged_positions2": imaged[2]}
    return frames, info


def atom_number_image(atoms_frame: np.ndarray, ref_frame: np.ndarray, dark_frame: np.ndarray,
                      config: ImagingConfig, *, state: int, pulse_s: float) -> np.ndarray:
    """Atoms per pixel (H, W) from one absorption exposure (plain Reinaudi OD, known calibration).

    N_pix = (A_pix / sigma_0) [alpha ln(I_in/I_out) + (I_in - I_out)/I_sat] / d_state with dark-subtracted
    counts, I_sat in counts for the pulse length pulse_s; non-positive intensities are clipped to 1 count.
    """
    frames = [np.asarray(f, dtype=float) for f in (atoms_frame, ref_frame, dark_frame)]
    if not frames[0].shape == frames[1].shape == frames[2].shape:
        raise ValueError(f"atoms, reference and dark frames differ in shape: {[f.shape for f in frames]}")
    i_out = np.clip(frames[0] - frames[2], 1.0, None)
    i_in = np.clip(frames[1] - frames[2], 1.0, None)
    isat_counts = config.isat_for(pulse_s) * config.camera_gain
    depth = config.alpha * np.log(i_in / i_out) + (i_in - i_out) / isat_counts
    area_m2 = (config.pixel_size_um * 1e-6) ** 2
    return depth * area_m2 / sigma0_m2(config) / config.state_detectivity(state)
