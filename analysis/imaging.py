"""Absorption images -> atom-number images (atoms per pixel), from a calibration record.

Conventions
-----------
* Frames of one shot come in the fixed order :data:`FRAME_ORDER` = ("atoms2", "atoms1", "ref2",
  "ref1", "dark"): raw camera counts (uint16). ``atoms_s`` is the probe image of state |s> with atoms,
  ``ref_s`` the probe without atoms, ``dark`` no probe. I_out = atoms_s - dark, I_in = ref_s - dark
  (counts per pixel per probe pulse).
* Reinaudi et al., Opt. Lett. 32, 3143 (2007):
  sigma_0 n_col = alpha (-ln(I_out/I_in)) + (I_in - I_out)/I_sat, sigma_0 = 3 lambda^2/(2 pi),
  alpha = sigma_0/sigma_eff. Raw atoms per pixel = n_col * (pixel area in the object plane).
* Calibrated atoms per pixel of state s = raw / (detectivity_s * projection_noise_slope):
  ``detectivity_s`` is the detected-to-true atom-number ratio of state s relative to the absolute
  scale (paper: |1> ~5 % above |2>), fixed so that the detected total does not depend on the
  population ratio; ``projection_noise_slope`` is the slope k of Var(N1 - N2) vs N measured on the
  detectivity-corrected numbers of a coherent state split equally. Numbers scaled by a factor k give
  Var = k^2 N_true = k N, so dividing by k restores the projection-noise slope 1.
* Bad pixels (never NaN in the output): *saturated* where a raw atoms or reference count is at or
  above ``saturation_counts``; *no light* where I_in <= 0 or I_out <= 0. Their value is replaced by
  the median of the good pixels in their 3x3 neighbourhood (0 if there is none: ``unrecoverable``).
  Counts per frame are reported in :class:`AtomImage`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from conventions.frames import FRAME_NAMES

FRAME_ORDER: tuple[str, ...] = FRAME_NAMES
FRAME_INDEX: dict[str, int] = {name: i for i, name in enumerate(FRAME_ORDER)}
STATES: tuple[int, int] = (1, 2)


class CalibrationError(ValueError):
    """An imaging calibration record is missing a field or holds an invalid value."""


class FrameError(ValueError):
    """Frames of a shot have the wrong number, names, shapes or values."""


MAX_BLUR_PX = 50.0   # rms (image pixels) of the PSF and the total blur, at most
#: Fraction of the photon-recoil image variance that smears each atom's own signal (and so splits
#: it between regions deterministically); the rest displaces the atom at random. During a pulse of
#: length T the recoil kicks make the velocity a random walk, x(t) = int_0^t v, Var x(t) = k t^3/3.
#: The image of one atom is its time-averaged trace: the spread of the trace about its mean has
#: expectation k T^3/30, the mean's own variance is k T^3/20 (total k T^3/12), so 0.4 of the
#: recoil variance is deterministic smear and 0.6 random displacement.
RECOIL_SMEAR_FRACTION = 0.4


@dataclass(frozen=True)
class ImagingCalibration:
    """Every constant that turns camera counts into atom numbers (pure data, SI or named units)."""

    camera_pixel_size_m: float          #: pixel pitch on the camera chip, m
    magnification: float                #: imaging magnification (image / object)
    alpha: float                        #: sigma_0 / sigma_eff (paper: 1/0.68)
    isat_counts: float                  #: saturation intensity in counts per pixel per probe pulse
    wavelength_m: float                 #: probe wavelength, m (780.24e-9 for the Rb D2 line)
    detectivity_1: float                #: relative detectivity of |1> (detected / true)
    detectivity_2: float                #: relative detectivity of |2>
    projection_noise_slope: float       #: fitted slope of Var(N1 - N2) vs N (paper: 1.031)
    psf_sigma_x_px: float               #: optical PSF rms, horizontal, image pixels
    psf_sigma_y_px: float               #: optical PSF rms, vertical, image pixels
    sigma_blur_px: float                #: total position uncertainty (optics + recoil), pixels
    detection_noise_1_atoms: float      #: detection noise of |1> per whole picture, atoms rms
    detection_noise_2_atoms: float      #: detection noise of |2> per whole picture, atoms rms
    saturation_counts: float = 65535.0  #: raw count at or above which a pixel is saturated

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise CalibrationError(f"imaging calibration field {f.name!r} must be a number, "
                                       f"got {v!r}")
            if not math.isfinite(v):
                raise CalibrationError(f"imaging calibration field {f.name!r} must be finite, "
                                       f"got {v!r}")
            lo = 0.0 if f.name.startswith(("detection_noise", "psf", "sigma_blur")) else None
            if lo is None and v <= 0:
                raise CalibrationError(f"imaging calibration field {f.name!r} must be > 0, "
                                       f"got {v!r}")
            if lo is not None and v < lo:
                raise CalibrationError(f"imaging calibration field {f.name!r} must be >= 0, "
                                       f"got {v!r}")
        for name in ("psf_sigma_x_px", "psf_sigma_y_px", "sigma_blur_px"):
            # a blur wider than MAX_BLUR_PX is no imaging resolution (and its partition and
            # crosstalk terms would need kernels larger than any frame)
            if getattr(self, name) > MAX_BLUR_PX:
                raise CalibrationError(f"imaging calibration field {name!r} = {getattr(self, name)!r}: "
                                       f"expected an rms blur of at most {MAX_BLUR_PX:g} pixels")
        if not 1e-7 < self.wavelength_m < 1e-5:
            raise CalibrationError(f"imaging calibration field 'wavelength_m' = "
                                   f"{self.wavelength_m!r} is not an optical wavelength in metres")
        if not 1e-8 < self.pixel_size_m < 1e-3:
            raise CalibrationError(f"object-plane pixel size {self.pixel_size_m!r} m (camera pixel "
                                   f"/ magnification) is outside 10 nm..1 mm: check the units")
        if self.saturation_counts > 65535:
            raise CalibrationError(f"imaging calibration field 'saturation_counts' must be <= 65535 "
                                   f"(16-bit camera), got {self.saturation_counts!r}")

    @property
    def recoil_variance_px2(self) -> float:
        """The photon-recoil image variance per axis, px^2: sigma_blur^2 minus the mean PSF
        variance (sigma_blur is the total of optics and recoil; the recoil is isotropic)."""
        return max(self.sigma_blur_px ** 2
                   - 0.5 * (self.psf_sigma_x_px ** 2 + self.psf_sigma_y_px ** 2), 0.0)

    @property
    def partition_sigma_px(self) -> tuple[float, float]:
        """Deterministic smear of each atom's signal, (x, y) px rms: the optics PSF and the
        RECOIL_SMEAR_FRACTION of the recoil variance (the blur of the partition terms)."""
        r = RECOIL_SMEAR_FRACTION * self.recoil_variance_px2
        return (math.sqrt(self.psf_sigma_x_px ** 2 + r), math.sqrt(self.psf_sigma_y_px ** 2 + r))

    @property
    def pixel_size_m(self) -> float:
        """Pixel size in the object plane, m (camera pixel / magnification)."""
        return self.camera_pixel_size_m / self.magnification

    @property
    def pixel_area_m2(self) -> float:
        return self.pixel_size_m ** 2

    @property
    def sigma0_m2(self) -> float:
        """Resonant cross-section of the cycling transition, 3 lambda^2 / (2 pi), m^2."""
        return 3.0 * self.wavelength_m ** 2 / (2.0 * math.pi)

    def detectivity(self, state: int) -> float:
        return {1: self.detectivity_1, 2: self.detectivity_2}[_check_state(state)]

    def atoms_per_unit(self, state: int) -> float:
        """Calibrated atoms per pixel for sigma_0 n_col = 1 in state ``state``."""
        return self.pixel_area_m2 / self.sigma0_m2 / (self.detectivity(state)
                                                      * self.projection_noise_slope)

    def detection_noise_atoms(self, state: int) -> float:
        return {1: self.detection_noise_1_atoms,
                2: self.detection_noise_2_atoms}[_check_state(state)]

    def to_dict(self) -> dict[str, float]:
        """Plain dict of the stored fields (derived quantities are not stored)."""
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "imaging calibration"
                  ) -> "ImagingCalibration":
        """Validate and build; every field except ``saturation_counts`` is required."""
        if not isinstance(data, Mapping):
            raise CalibrationError(f"{source}: expected a table of fields, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise CalibrationError(f"{source}: unknown field(s) {unknown}; expected {names}")
        missing = [n for n in names if n not in data and n != "saturation_counts"]
        if missing:
            raise CalibrationError(f"{source}: missing field(s) {missing}")
        try:
            return cls(**{k: data[k] for k in names if k in data})
        except CalibrationError as exc:
            raise CalibrationError(f"{source}: {exc}") from None

    @classmethod
    def paper_defaults(cls, **overrides: float) -> "ImagingCalibration":
        """The paper's values (physics.md); camera-specific ones are plausible placeholders.

        6.5 um camera pixels at magnification 5 give the paper's 1.3 um object-plane pixel;
        I_sat = 2000 counts per pixel per pulse is a placeholder that a Reinaudi calibration replaces.
        """
        values: dict[str, float] = dict(
            camera_pixel_size_m=6.5e-6, magnification=5.0, alpha=1 / 0.68, isat_counts=2000.0,
            wavelength_m=780.24e-9, detectivity_1=1.05, detectivity_2=1.0,
            projection_noise_slope=1.031, psf_sigma_x_px=1.1, psf_sigma_y_px=1.2,
            sigma_blur_px=1.4, detection_noise_1_atoms=5.3, detection_noise_2_atoms=5.0)
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class ImagingUncertainty:
    """Standard errors (px) of the calibrated blurs, taken as independent. The PSF's enter the
    corrected criteria's errors (through the partition terms, analysis.crosstalk.imaging_terms);
    sigma_blur's makes the crosstalk guard conservative (bounds at sigma_blur + its error)."""

    psf_sigma_x_px: float = 0.0
    psf_sigma_y_px: float = 0.0
    sigma_blur_px: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise CalibrationError(f"imaging uncertainty {f.name!r} must be a finite number >= 0 "
                                       f"(one standard error, px), got {v!r}")

    @classmethod
    def from_record(cls, uncertainty: Any, *, source: str = "calibration uncertainty"
                    ) -> "ImagingUncertainty":
        """From a calibration record's ``uncertainty`` table (``{"imaging": {name: error}}``; other
        names and sections are for other uses); absent: every blur known exactly."""
        imaging = uncertainty.get("imaging") if isinstance(uncertainty, Mapping) else None
        if imaging is None:
            return cls()
        if not isinstance(imaging, Mapping):
            raise CalibrationError(f"{source}: uncertainty.imaging = {imaging!r}: expected a table")
        try:
            return cls(**{f.name: imaging[f.name] for f in fields(cls) if f.name in imaging})
        except CalibrationError as exc:
            raise CalibrationError(f"{source}: {exc}") from None

    @property
    def psf_known(self) -> bool:
        """True if the PSF carries no uncertainty (nothing to propagate)."""
        return self.psf_sigma_x_px == 0 and self.psf_sigma_y_px == 0


def _check_state(state: int) -> int:
    if state not in STATES:
        raise ValueError(f"state must be 1 or 2, got {state!r}")
    return int(state)


@dataclass(frozen=True)
class AtomImage:
    """Calibrated atoms per pixel (float64, never NaN) and the bad-pixel counts per frame.

    For input of shape (..., H, W) the counts have shape (...) (0-d for one frame).
    """

    atoms: NDArray[np.float64]
    n_saturated: NDArray[np.int64]
    n_no_light: NDArray[np.int64]
    n_unrecoverable: NDArray[np.int64]

    @property
    def n_bad(self) -> NDArray[np.int64]:
        return self.n_saturated + self.n_no_light

    def report(self) -> dict[str, Any]:
        """Bad-pixel counts as plain Python values (lists for stacks of frames)."""
        return {"saturated": self.n_saturated.tolist(), "no_light": self.n_no_light.tolist(),
                "unrecoverable": self.n_unrecoverable.tolist()}


def sigma0_column_density(i_out: ArrayLike, i_in: ArrayLike, alpha: float,
                          isat_counts: float) -> NDArray[np.float64]:
    """sigma_0 n_col (dimensionless) by Reinaudi's formula; intensities in counts, both > 0."""
    i_out = np.asarray(i_out, dtype=np.float64)
    i_in = np.asarray(i_in, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return alpha * np.log(i_in / i_out) + (i_in - i_out) / isat_counts


def _replace_bad(values: NDArray[np.float64], bad: NDArray[np.bool_]) -> NDArray[np.int64]:
    """In place: bad pixels <- median of good 3x3 neighbours (0 if none). Returns counts of the latter."""
    lead = values.shape[:-2]
    unrecoverable = np.zeros(lead, dtype=np.int64)
    idx = np.nonzero(bad)
    if idx[0].size == 0:
        return unrecoverable
    pad = [(0, 0)] * (values.ndim - 2) + [(1, 1), (1, 1)]
    padded = np.pad(np.where(bad, np.nan, values), pad, constant_values=np.nan)
    rows, cols = idx[-2] + 1, idx[-1] + 1
    neigh = np.empty((rows.size, 9))
    k = 0
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            neigh[:, k] = padded[idx[:-2] + (rows + dr, cols + dc)]
            k += 1
    ok = ~np.isnan(neigh)
    has = ok.any(axis=1)
    repl = np.zeros(rows.size)
    if has.any():
        repl[has] = np.nanmedian(neigh[has], axis=1)
    values[idx] = repl
    lost = ~has
    if lost.any():
        if lead:
            flat = np.ravel_multi_index(tuple(i[lost] for i in idx[:-2]), lead)
            unrecoverable = np.bincount(flat, minlength=int(np.prod(lead))).reshape(lead)
        else:
            unrecoverable = np.asarray(int(lost.sum()), dtype=np.int64)
    return unrecoverable


def atoms_from_intensities(i_out: ArrayLike, i_in: ArrayLike, cal: ImagingCalibration, state: int,
                           *, saturated: ArrayLike | None = None) -> AtomImage:
    """Atoms per pixel of state ``state`` from dark-subtracted intensities (counts), shape (..., H, W).

    ``saturated`` (bool, broadcastable) marks pixels whose raw counts reached the saturation level.
    """
    i_out = np.asarray(i_out, dtype=np.float64)
    i_in = np.asarray(i_in, dtype=np.float64)
    if i_out.shape != i_in.shape or i_out.ndim < 2:
        raise FrameError(f"I_out and I_in must be images of the same shape, got {i_out.shape} "
                         f"and {i_in.shape}")
    sat = (np.zeros(i_out.shape, dtype=bool) if saturated is None
           else np.broadcast_to(np.asarray(saturated, dtype=bool), i_out.shape))
    finite = np.isfinite(i_out) & np.isfinite(i_in)
    no_light = ~sat & ((i_out <= 0) | (i_in <= 0) | ~finite)
    bad = sat | no_light
    od = sigma0_column_density(np.where(bad, 1.0, i_out), np.where(bad, 1.0, i_in),
                               cal.alpha, cal.isat_counts)
    atoms = od * cal.atoms_per_unit(state)
    unrecoverable = _replace_bad(atoms, bad)
    return AtomImage(atoms, sat.sum(axis=(-2, -1)), no_light.sum(axis=(-2, -1)), unrecoverable)


def atom_number_image(atoms_frame: ArrayLike, ref_frame: ArrayLike, dark_frame: ArrayLike,
                      cal: ImagingCalibration, state: int) -> AtomImage:
    """Atoms per pixel from raw frames (counts) with the shot's own reference (plain reference)."""
    a = np.asarray(atoms_frame)
    r = np.asarray(ref_frame)
    d = np.asarray(dark_frame, dtype=np.float64)
    sat = (a >= cal.saturation_counts) | (r >= cal.saturation_counts)
    return atoms_from_intensities(a - d, r - d, cal, state, saturated=sat)


def split_frames(frames: ArrayLike | Mapping[str, ArrayLike]) -> dict[str, NDArray[Any]]:
    """The five frames of a shot by name, from an array (5, H, W) in FRAME_ORDER or a mapping."""
    if isinstance(frames, Mapping):
        missing = [n for n in FRAME_ORDER if n not in frames]
        if missing:
            raise FrameError(f"shot frames are missing {missing}; expected {list(FRAME_ORDER)}")
        out = {n: np.asarray(frames[n]) for n in FRAME_ORDER}
    else:
        arr = np.asarray(frames)
        if arr.ndim != 3 or arr.shape[0] != len(FRAME_ORDER):
            raise FrameError(f"shot frames must have shape (5, H, W) in the order "
                             f"{list(FRAME_ORDER)}, got {arr.shape}")
        out = {n: arr[i] for i, n in enumerate(FRAME_ORDER)}
    shapes = {v.shape for v in out.values()}
    if len(shapes) != 1 or out["dark"].ndim != 2:
        raise FrameError(f"the frames of a shot must be 2-D images of one shape, got "
                         f"{ {n: v.shape for n, v in out.items()} }")
    return out


@dataclass(frozen=True)
class ShotImages:
    """The two atom-number images of one shot (atoms per pixel) with their bad-pixel reports."""

    n1: AtomImage
    n2: AtomImage

    def image(self, state: int) -> AtomImage:
        return self.n1 if _check_state(state) == 1 else self.n2


def shot_atom_images(frames: ArrayLike | Mapping[str, ArrayLike], cal: ImagingCalibration
                     ) -> ShotImages:
    """Both states' atom-number images of a shot with the plain (own) references."""
    f = split_frames(frames)
    return ShotImages(atom_number_image(f["atoms1"], f["ref1"], f["dark"], cal, 1),
                      atom_number_image(f["atoms2"], f["ref2"], f["dark"], cal, 2))
