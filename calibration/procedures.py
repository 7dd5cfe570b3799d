"""The calibration procedures: acquisition (a sequence of shots with one parameter varied) + a fit
+ a plot + the record's updated values.

Acquisition goes through an :class:`AtomSource`: the virtual lab's (drivers.simulated.atom_source,
built by app.lab) renders shots of the simulated atoms with the parameter set directly (probe intensity, atom number, pulse, cloud size, no atoms);
the Rabi scan can also run through the instruments (calibration.instrument_rabi). Atom numbers are
counted with the record being calibrated (analysis.imaging), in boxes of +-4 rms around each
state's cloud found on the mean image. Units: seconds, hertz, pixels, atoms, camera counts.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from analysis.cloud import cloud_shape
from analysis.imaging import FRAME_ORDER, ImagingCalibration, atom_number_image
from calibration import fits
from calibration.record import CalibrationRecord

FrameStack = NDArray[np.uint16]   # (S, 5, H, W) in FRAME order atoms2, atoms1, ref2, ref1, dark


@dataclass
class Result:
    """What a procedure found: record updates (section, name, value, uncertainty), details, plot."""

    name: str
    updates: list[tuple[str, str, float, float]]
    details: dict[str, Any] = field(default_factory=dict)
    plot: Path | None = None

    def apply(self, record: CalibrationRecord, source: str) -> None:
        for section, key, value, err in self.updates:
            record.set(section, key, value, err, f"steerlab calibrate {self.name}: {source}")


class AtomSource(Protocol):
    """Where a procedure gets its shots (the virtual lab's atoms: drivers.simulated.atom_source):
    ``shots(n, pulses=..., config=..., atoms_loaded=..., exposures=...)`` -> (n, 5, H, W) counts;
    ``with_spin/with_imaging/with_cloud(**fields)`` -> a config with those fields changed;
    ``rabi_pulse(area_rad)`` -> the pulse of that area about y."""

    config: Any

    def shots(self, n: int, *, pulses: Sequence[Any] = (), config: Any = None,
              atoms_loaded: bool = True, exposures: Any = None) -> FrameStack: ...

    def with_spin(self, **kw: Any) -> Any: ...

    def with_imaging(self, **kw: Any) -> Any: ...

    def with_cloud(self, **kw: Any) -> Any: ...

    def rabi_pulse(self, area_rad: float) -> Any: ...


def _split(frames: FrameStack) -> dict[str, NDArray[np.uint16]]:
    """A stack (S, 5, H, W) as {frame name: (S, H, W)}."""
    return {name: frames[:, i] for i, name in enumerate(FRAME_ORDER)}


def _images(frames: FrameStack, cal: ImagingCalibration) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    f = _split(frames)
    n1 = atom_number_image(f["atoms1"], f["ref1"], f["dark"], cal, 1).atoms
    n2 = atom_number_image(f["atoms2"], f["ref2"], f["dark"], cal, 2).atoms
    return n1, n2


def _box(mean: NDArray[np.float64], sigmas: float = 4.0) -> tuple[slice, slice]:
    c = cloud_shape(mean)
    h, w = mean.shape
    x0, x1 = int(max(0, c.centre_x_px - sigmas * c.sigma_x_px)), int(min(w, c.centre_x_px + sigmas * c.sigma_x_px + 1))
    y0, y1 = int(max(0, c.centre_y_px - sigmas * c.sigma_y_px)), int(min(h, c.centre_y_px + sigmas * c.sigma_y_px + 1))
    return slice(y0, y1), slice(x0, x1)


def cloud_region(mean: NDArray[np.float64], blur_px: float, margin_blur_rms: float = 1.5
                 ) -> NDArray[np.bool_]:
    """The cloud's counting region (boolean, H x W) on a mean atom-number image: the ellipse of
    its Thomas-Fermi half-widths, sqrt(7 (rms^2 - blur^2)) per axis (centre and rms: the image's
    moments in the +-4 rms box around it), widened by
    ``margin_blur_rms`` x the blur rms ``blur_px`` (pixels): the region the virtual lab's truth
    counts in (drivers.simulated.atoms.counting_region) and where a cloud's atoms are."""
    by, bx = _box(mean)
    img = mean[by, bx]
    h, w = mean.shape
    y, x = np.mgrid[0:h, 0:w].astype(float)
    ys, xs = y[by, bx] + 0.5, x[by, bx] + 0.5
    total = img.sum()
    cx, cy = (img * xs).sum() / total, (img * ys).sum() / total
    rms = (math.sqrt(max((img * (xs - cx) ** 2).sum() / total, 0.0)),
           math.sqrt(max((img * (ys - cy) ** 2).sum() / total, 0.0)))
    half = [math.sqrt(7.0 * max(r * r - blur_px * blur_px, 0.0)) + margin_blur_rms * blur_px
            for r in rms]
    return (((x + 0.5 - cx) / half[0]) ** 2 + ((y + 0.5 - cy) / half[1]) ** 2) < 1.0


def state_totals(frames: FrameStack, cal: ImagingCalibration, boxes: tuple[Any, Any] | None = None
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64], tuple[Any, Any]]:
    """Atoms of |1> and |2> per shot (boxes around each cloud, from the mean images unless given)."""
    n1, n2 = _images(frames, cal)
    if boxes is None:
        boxes = (_box(n1.mean(axis=0)), _box(n2.mean(axis=0)))
    b1, b2 = boxes
    return n1[:, b1[0], b1[1]].sum(axis=(1, 2)), n2[:, b2[0], b2[1]].sum(axis=(1, 2)), boxes


def _plot(path: Path | None, draw: Callable[[Any], None], title: str) -> Path | None:
    if path is None:
        return None
    fig = Figure(figsize=(6, 4))      # object API: no pyplot state, no backend switch
    ax = fig.subplots()
    draw(ax)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path



# --- 1. Rabi frequency ---------------------------------------------------------------------------
def rabi_from_populations(t_s: NDArray[np.float64], p1: NDArray[np.float64], record: CalibrationRecord,
                          plot: Path | None, source: str) -> Result:
    """Fit P1(t) of a pulse-length scan; Rabi frequency and pi/2 pulse lengths (x and y)."""
    guess = float(record.microwave.get("rabi_frequency_hz", 1.0 / (4 * record.microwave["x"]["pulse_s"])))
    fit = fits.rabi(t_s, p1, guess)
    f, df = abs(fit["f_hz"]), fit.errors["f_hz"]
    t90, dt90 = 1 / (4 * f), df / (4 * f * f)
    tt = np.linspace(0, t_s.max(), 400)

    def draw(ax: Any) -> None:
        ax.plot(t_s * 1e6, p1, "o", ms=3, label=f"data ({source})")
        ax.plot(tt * 1e6, fit["c"] + fit["a"] * np.sin(2 * np.pi * fit["f_hz"] * tt + fit["phi"]), "-",
                label=f"fit: Omega/2pi = {f:.1f} +- {df:.1f} Hz")
        ax.set(xlabel="pulse length (us)", ylabel="P(|1>)")
        ax.legend(fontsize=8)

    return Result("rabi", [("microwave", "rabi_frequency_hz", f, df), ("microwave", "x.pulse_s", t90, dt90),
                           ("microwave", "y.pulse_s", t90, dt90)],
                  {"rabi_frequency_hz": f, "pi2_pulse_s": t90, "rms_residual": float(fit.residuals.std())},
                  _plot(plot, draw, "Rabi oscillation"))


def rabi_virtual(src: AtomSource, record: CalibrationRecord, plot: Path | None = None, *,
                 rabi_hz: float = 2000.0, points: int = 25, shots: int = 3) -> Result:
    """Pulse-length scan on the simulated atoms (Rabi frequency ``rabi_hz``: the virtual lab's truth)."""
    cal = record.imaging_calibration()
    t = np.linspace(0, 2.0 / rabi_hz, points)
    coh = src.with_spin(state="coherent")
    frames = np.concatenate([src.shots(shots, pulses=(src.rabi_pulse(2 * math.pi * rabi_hz * ti),),
                                       config=coh) for ti in t])
    n1, n2, _ = state_totals(frames, cal)
    p1 = (n1 / (n1 + n2)).reshape(points, shots).mean(axis=1)
    return rabi_from_populations(t, p1, record, plot, "virtual atoms")


# --- 2. Effective cross-section (Reinaudi) ----------------------------------------------------------
def reinaudi(src: AtomSource, record: CalibrationRecord, plot: Path | None = None, *,
             saturations: Sequence[float] = (0.3, 0.6, 1.0, 2.0, 4.0), shots: int = 12) -> Result:
    """alpha = sigma_0/sigma_eff from the same clouds imaged at several probe intensities."""
    groups = [src.shots(shots, config=src.with_imaging(probe_saturation=s)) for s in saturations]
    return reinaudi_from_frames(groups, saturations, record, plot)


def reinaudi_from_frames(groups: Sequence[FrameStack], saturations: Sequence[float] | None,
                         record: CalibrationRecord, plot: Path | None = None) -> Result:
    """``reinaudi`` from shots of the same clouds at each probe intensity (one stack each);
    ``saturations``: the nominal I/I_sat of each, None where only the reference frames tell
    (the measured mean I_in / I_sat over the cloud's box is reported and plotted either way)."""
    cal = record.imaging_calibration()
    a_sums, b_sums, measured = [], [], []
    box = None
    for frames in groups:
        f = _split(frames)
        i_out = (f["atoms2"] - f["dark"].astype(float))
        i_in = (f["ref2"] - f["dark"].astype(float))
        if box is None:
            box = _box(_images(frames, cal)[1].mean(axis=0))
        od = -np.log(np.clip(i_out, 1e-3, None) / np.clip(i_in, 1e-3, None))[:, box[0], box[1]].sum(axis=(1, 2))
        di = (i_in - i_out)[:, box[0], box[1]].sum(axis=(1, 2))
        a_sums.append(od.mean())
        b_sums.append(di.mean())
        measured.append(float(i_in[:, box[0], box[1]].mean()) / cal.isat_counts)
    a, b = np.array(a_sums), np.array(b_sums)
    if saturations is None:
        saturations = measured
    order = np.argsort(saturations)
    fit = fits.reinaudi_alpha(a, b, cal.isat_counts)
    alpha, dalpha = fit["alpha"], fit.errors["alpha"]

    def draw(ax: Any) -> None:
        s_ = np.asarray(saturations)[order]
        ax.plot(s_, (alpha * a / fit["n"] + b / cal.isat_counts / fit["n"])[order], "o-",
                label=f"fitted alpha = {alpha:.4f} +- {dalpha:.4f}")
        ax.plot(s_, (cal.alpha * a / fit["n"] + b / cal.isat_counts / fit["n"])[order], "s--",
                label=f"record's alpha = {cal.alpha:.4f}")
        ax.set(xlabel="probe intensity (I/I_sat)", ylabel="relative atom number")
        ax.legend(fontsize=8)

    return Result("reinaudi", [("imaging", "alpha", alpha, dalpha)],
                  {"alpha": alpha, "sigma_eff_over_sigma0": 1 / alpha, "saturations": list(saturations),
                   "measured_saturations": measured},
                  _plot(plot, draw, "Reinaudi: atom number independent of intensity"))


# --- 3. Differential detectivity ---------------------------------------------------------------------
def detectivity(src: AtomSource, record: CalibrationRecord, plot: Path | None = None, *,
                points: int = 12, shots: int = 6) -> Result:
    """d1/d2 such that the detected total does not depend on the population (Rabi-rotated states)."""
    coh = src.with_spin(state="coherent", atom_number_rms=0.0)
    areas = detectivity_areas(points)
    groups = [src.shots(shots, pulses=(src.rabi_pulse(th),), config=coh) for th in areas]
    return detectivity_from_frames(groups, areas, record, plot)


def detectivity_areas(points: int = 12) -> NDArray[np.float64]:
    """The Rabi pulse areas (rad) of the detectivity scan: populations from ~0.1 to ~0.9."""
    return np.linspace(0.2, math.pi - 0.2, points)


def detectivity_from_frames(groups: Sequence[FrameStack], areas_rad: Sequence[float] | NDArray[np.float64],
                            record: CalibrationRecord, plot: Path | None = None) -> Result:
    """``detectivity`` from shots of coherent states rotated to several populations: one stack
    of frames per Rabi pulse area (rad) of the scan.

    n1 = d1 N - (d1/d2) n2 holds for every shot, but N fluctuates from shot to shot on a real
    lab and moves n1 and n2 together, which biases a least-squares slope (by about
    -(d1/d2) sigma_N^2 <p> / (N^2 var p): -0.045 at the paper's 40 atoms rms). The slope is
    therefore fitted with an instrumental variable that follows the population but not a shot's
    own noise: the mean n2 of the other shots of the same scan point (a jackknife instrument;
    it needs no model of how the pulse area sets the population, and at least 2 shots per point)."""
    if len(groups) != len(areas_rad):
        raise ValueError(f"detectivity: {len(groups)} frame stacks for {len(areas_rad)} pulse areas")
    cal = record.imaging_calibration()
    raw = dataclasses.replace(cal, detectivity_1=1.0, detectivity_2=1.0)
    sizes = [len(g) for g in groups]
    if min(sizes) < 2:
        raise ValueError("detectivity: every scan point needs at least 2 shots")
    n1, n2, _ = state_totals(np.concatenate(groups), raw)   # the regions from all the shots
    parts = np.split(n2, np.cumsum(sizes)[:-1])
    others = np.concatenate([(q.sum() - q) / (len(q) - 1) for q in parts])
    fit = fits.instrumental_linear(n2, n1, others)   # n1 = d1 N - (d1/d2) n2
    ratio, dratio = -fit["slope"], fit.errors["slope"]

    def draw(ax: Any) -> None:
        ax.plot(n2, n1, "o", ms=3)
        x = np.linspace(n2.min(), n2.max(), 2)
        ax.plot(x, fit["slope"] * x + fit["intercept"], "-", label=f"d1/d2 = {ratio:.4f} +- {dratio:.4f}")
        ax.set(xlabel="detected |2> atoms", ylabel="detected |1> atoms")
        ax.legend(fontsize=8)

    return Result("detectivity", [("imaging", "detectivity_1", ratio * cal.detectivity_2, dratio * cal.detectivity_2)],
                  {"d1_over_d2": ratio}, _plot(plot, draw, "Differential detectivity"))


# --- 4. Projection-noise slope ---------------------------------------------------------------------------
def projection_noise(src: AtomSource, record: CalibrationRecord, plot: Path | None = None, *,
                     atom_numbers: Sequence[int] = (100, 300, 500, 800, 1200), shots: int = 150) -> Result:
    """Var(N1 - N2) vs N of coherent states split equally; the slope k (1 for calibrated numbers)."""
    groups = [src.shots(shots, config=src.with_spin(state="coherent", atom_number_mean=int(n),
                                                    atom_number_rms=0.0)) for n in atom_numbers]
    return projection_noise_from_frames(groups, record, plot)


def projection_noise_from_frames(groups: Sequence[FrameStack], record: CalibrationRecord,
                                 plot: Path | None = None) -> Result:
    """``projection_noise`` from shots of coherent states split equally, one stack per atom number."""
    cal = dataclasses.replace(record.imaging_calibration(), projection_noise_slope=1.0)
    means, variances, errs = [], [], []
    for frames in groups:
        shots = int(frames.shape[0])
        n1, n2, _ = state_totals(frames, cal)
        means.append(float((n1 + n2).mean()))
        variances.append(float(np.var(n1 - n2, ddof=1)))
        errs.append(variances[-1] * math.sqrt(2 / (shots - 1)))
    fit = fits.linear(means, variances, sigma=errs)
    k, dk = fit["slope"], fit.errors["slope"]

    def draw(ax: Any) -> None:
        ax.errorbar(means, variances, yerr=errs, fmt="o")
        x = np.linspace(0, max(means) * 1.05, 2)
        ax.plot(x, k * x + fit["intercept"], "-", label=f"slope {k:.4f} +- {dk:.4f}, offset "
                f"{fit['intercept']:.0f} atoms^2 (detection noise)")
        ax.set(xlabel="detected atom number N", ylabel="Var(N1 - N2)")
        ax.legend(fontsize=8)

    return Result("projection-noise", [("imaging", "projection_noise_slope", k, dk)],
                  {"slope": k, "offset_atoms2": fit["intercept"]}, _plot(plot, draw, "Projection-noise slope"))


# --- 5. Point-spread function ------------------------------------------------------------------------------
def psf(src: AtomSource, record: CalibrationRecord, plot: Path | None = None, *, shots: int = 40,
        recoil_sigma_px: float | None = None) -> Result:
    """Gaussian fit of the mean image of a very small cloud; the PSF is its width with the cloud's own
    size, the photon-recoil blur and the pixel integration (1/12 px^2) removed in quadrature."""
    tiny = src.with_cloud(half_width_um=(POINT_CLOUD_UM, POINT_CLOUD_UM), growth_at_delay=(1.0, 1.0))
    cfg = dataclasses.replace(tiny, spin=dataclasses.replace(tiny.spin, state="coherent", atom_number_rms=0.0))
    if recoil_sigma_px is None:
        im = cfg.imaging
        recoil_sigma_px = fits.joffe_recoil_sigma_px(im.linewidth_rad_per_s, im.probe_saturation,
                                                     im.recoil_velocity_m_per_s, 50e-6, im.pixel_size_um * 1e-6)
    return psf_from_frames(src.shots(shots, config=cfg), record, plot,
                           cloud_rms_px=POINT_CLOUD_UM / math.sqrt(7) / cfg.cloud.pixel_size_um,
                           recoil_sigma_px=recoil_sigma_px)


POINT_CLOUD_UM = 0.3
"""Thomas-Fermi half-width (um) of the point-like cloud the PSF is measured on."""


#: Lags (px, each axis) of the atom shot-noise correlation the PSF is fitted on.
NOISE_LAGS_PX = 4
#: Smallest counting region (px) the shot-noise PSF accepts: the density must vary slowly over
#: one atom's image (a point-like cloud gives nonsense, measured: 0.44 px for 1.1).
NOISE_MIN_REGION_PX = 100
#: Fraction of the photon-recoil image variance that smears one atom's own image (the rest, 12/20,
#: is the random offset of its time-averaged position, which moves the atom but does not widen
#: its image; drivers/simulated/imaging.py, after Joffe et al.).
RECOIL_SMEAR_FRACTION = 0.4


def _pixel_gaussian_autocorrelation(lag: NDArray[np.float64], sigma: float) -> NDArray[np.float64]:
    """The autocorrelation at integer ``lag`` (px) of a Gaussian of rms ``sigma`` (px) integrated
    over pixels, averaged over the sub-pixel position: a triangle of half-width 1 convolved with
    a Gaussian of variance 2 sigma^2 (normalised to unit area)."""
    s = math.sqrt(2.0) * max(sigma, 1e-6)
    t = np.linspace(-1.0, 1.0, 81)
    w = (1.0 - np.abs(t)) * (t[1] - t[0])
    d = np.asarray(lag, float)[..., None] - t
    return np.asarray((w * np.exp(-0.5 * (d / s) ** 2) / (s * math.sqrt(2 * math.pi))).sum(axis=-1))


def _noise_correlation(images: NDArray[np.float64], region: NDArray[np.bool_], lags: int
                       ) -> NDArray[np.float64]:
    """Mean product of the shot-to-shot residuals at each lag (dy, dx) in -lags..lags, over the
    pixels of ``region`` (shape (2 lags + 1, 2 lags + 1)); residual = image - its shot's scale x
    the mean image (the scale absorbs atom-number fluctuations)."""
    mean = images.mean(axis=0)
    scale = images[:, region].sum(axis=1) / max(float(mean[region].sum()), 1e-12)
    d = images - scale[:, None, None] * mean[None]
    rms = d.std(axis=0)
    region = region & (rms < 5 * float(np.median(rms[region])))     # no hot or dead pixels
    ys, xs = np.nonzero(region)
    h, w = region.shape
    # the region's box, padded by the lags (zeros beyond the frame), as contiguous slices
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    pad = np.zeros((d.shape[0], y1 - y0 + 2 * lags, x1 - x0 + 2 * lags))
    inside = np.zeros((y1 - y0 + 2 * lags, x1 - x0 + 2 * lags), dtype=bool)
    sy0, sy1, sx0, sx1 = max(y0 - lags, 0), min(y1 + lags, h), max(x0 - lags, 0), min(x1 + lags, w)
    pad[:, sy0 - (y0 - lags):sy1 - (y0 - lags), sx0 - (x0 - lags):sx1 - (x0 - lags)] = d[:, sy0:sy1, sx0:sx1]
    inside[sy0 - (y0 - lags):sy1 - (y0 - lags), sx0 - (x0 - lags):sx1 - (x0 - lags)] = True
    core = region[y0:y1, x0:x1]
    centre = pad[:, lags:lags + y1 - y0, lags:lags + x1 - x0] * core
    out = np.zeros((2 * lags + 1, 2 * lags + 1))
    for dy in range(-lags, lags + 1):
        for dx in range(-lags, lags + 1):
            window = (slice(None), slice(lags + dy, lags + dy + y1 - y0), slice(lags + dx, lags + dx + x1 - x0))
            valid = core & inside[window[1:]]
            out[dy + lags, dx + lags] = float((centre * pad[window]).sum() / (valid.sum() * d.shape[0]))
    return out


def _fit_noise_kernel(corr: NDArray[np.float64], lags: int) -> tuple[float, float]:
    """rms widths (x, y) in px of the one-atom image kernel from the lag correlation (lag 0
    excluded: photon and read noise are white), model A T(dx; sx) T(dy; sy) + c."""
    from scipy.optimize import curve_fit
    yy, xx = np.mgrid[-lags:lags + 1, -lags:lags + 1]
    keep = ~((yy == 0) & (xx == 0))

    def model(p: tuple[NDArray[np.float64], NDArray[np.float64]], a: float, sx: float, sy: float,
              c: float) -> NDArray[np.float64]:
        y, x = p
        return np.asarray(a * _pixel_gaussian_autocorrelation(x, sx) * _pixel_gaussian_autocorrelation(y, sy) + c)

    guess_a = float(corr[lags, lags + 1]) * 4 * math.pi * 1.5
    scale = float(np.abs(corr[keep]).max()) or 1.0
    popt, _ = curve_fit(model, (yy[keep].astype(float), xx[keep].astype(float)), corr[keep] / scale,
                        p0=(max(guess_a / scale, 1e-3), 1.2, 1.2, 0.0), maxfev=20000,
                        bounds=((0.0, 0.2, 0.2, -1.0), (np.inf, 6.0, 6.0, 1.0)))
    return abs(float(popt[1])), abs(float(popt[2]))


def psf_from_noise(frames: FrameStack, record: CalibrationRecord, plot: Path | None = None, *,
                   recoil_sigma_px: float, resamples: int = 40, seed: int = 0) -> Result:
    """``psf`` from the atoms' own shot noise, for any lab: atoms are independent points, so the
    shot-to-shot fluctuations of an atom-number image are correlated between pixels over exactly
    the width of one atom's image (optics PSF, pixel, and the recoil smear along each atom's
    path), whatever the cloud's shape (cf. Hung et al., NJP 13, 075019 (2011)). Per state, the
    residual correlation at lags up to NOISE_LAGS_PX inside the cloud's counting region is
    fitted with the pixel-integrated Gaussian kernel model and an offset (lag 0, where photon
    and read noise add, left out; probe fringes, correlated over many pixels, are assumed
    removed by the references: their residual correlation in atom-free regions of the virtual
    lab is below the fit's noise); PSF^2 = kernel^2 - RECOIL_SMEAR_FRACTION x recoil^2 (``recoil_sigma_px``,
    the Joffe bound, px). The two states' estimates are averaged; errors: bootstrap over shots.
    Needs shots of one prepared cloud (e.g. z shots of a coherent state), >= 100."""
    cal = record.imaging_calibration()
    images = _images(frames, cal)
    n_shots = int(frames.shape[0])
    if n_shots < 20:
        raise ValueError(f"psf from noise: {n_shots} shots; expected at least 20 (better >= 100)")
    lags = NOISE_LAGS_PX
    regions = [cloud_region(img.mean(axis=0), cal.sigma_blur_px) for img in images]
    smallest = min(int(r.sum()) for r in regions)
    if smallest < NOISE_MIN_REGION_PX:
        raise ValueError(f"psf from noise: a cloud's counting region covers {smallest} px; the method "
                         f"needs clouds much larger than one atom's image (>= {NOISE_MIN_REGION_PX} px)")

    def estimate(idx: NDArray[np.intp]) -> tuple[float, float]:
        widths = []
        for img, region in zip(images, regions):
            widths.append(_fit_noise_kernel(_noise_correlation(img[idx], region, lags), lags))
        kx = float(np.mean([w[0] for w in widths]))
        ky = float(np.mean([w[1] for w in widths]))
        smear = RECOIL_SMEAR_FRACTION * recoil_sigma_px ** 2
        return (math.sqrt(max(kx * kx - smear, 0.0)), math.sqrt(max(ky * ky - smear, 0.0)))

    best = estimate(np.arange(n_shots))
    rng = np.random.default_rng(seed)
    boots = np.array([estimate(rng.integers(0, n_shots, n_shots)) for _ in range(resamples)])
    errs = boots.std(axis=0, ddof=1)

    def draw(ax: Any) -> None:
        ax.hist(boots[:, 0], bins=12, alpha=0.6, label=f"PSF x {best[0]:.3f} +- {errs[0]:.3f} px")
        ax.hist(boots[:, 1], bins=12, alpha=0.6, label=f"PSF y {best[1]:.3f} +- {errs[1]:.3f} px")
        ax.set(xlabel="PSF rms (px), bootstrap over shots", ylabel="resamples")
        ax.legend(fontsize=8)

    return Result("psf", [("imaging", "psf_sigma_x_px", best[0], float(errs[0])),
                          ("imaging", "psf_sigma_y_px", best[1], float(errs[1]))],
                  {"method": "atom shot-noise correlation", "recoil_sigma_px": recoil_sigma_px,
                   "shots": n_shots},
                  _plot(plot, draw, "PSF from the atoms' shot-noise correlation"))


def psf_from_frames(frames: FrameStack, record: CalibrationRecord, plot: Path | None = None, *,
                    cloud_rms_px: float, recoil_sigma_px: float) -> Result:
    """``psf`` from shots of a point-like cloud of rms ``cloud_rms_px`` (px); the recoil blur
    ``recoil_sigma_px`` (px, the Joffe bound) removed in quadrature."""
    cal = record.imaging_calibration()
    n2 = _images(frames, cal)[1].mean(axis=0)
    box = _box(n2, 6.0)
    fit = fits.gaussian_2d(n2[box])
    out = []
    for axis in ("x", "y"):
        s, ds = fit[f"sigma_{axis}"], fit.errors[f"sigma_{axis}"]
        # integrating over a pixel adds 1/12 px^2 to the variance of a sampled Gaussian
        psf_sq = s * s - cloud_rms_px ** 2 - recoil_sigma_px ** 2 - 1.0 / 12.0
        p = math.sqrt(max(psf_sq, 0.0))
        out.append((p, ds * s / max(p, 1e-9)))

    def draw(ax: Any) -> None:
        prof = n2[box].sum(axis=0)
        ax.plot(prof, "o", label="column sum (x)")
        xs = np.arange(prof.size)
        ax.plot(xs, fit["amp"] * math.sqrt(2 * math.pi) * fit["sigma_y"] *
                np.exp(-0.5 * ((xs - fit["x0"]) / fit["sigma_x"]) ** 2), "-",
                label=f"PSF x {out[0][0]:.3f}, y {out[1][0]:.3f} px")
        ax.set(xlabel="pixel", ylabel="atoms")
        ax.legend(fontsize=8)

    return Result("psf", [("imaging", "psf_sigma_x_px", out[0][0], out[0][1]),
                          ("imaging", "psf_sigma_y_px", out[1][0], out[1][1])],
                  {"fitted_sigma_px": (fit["sigma_x"], fit["sigma_y"]), "recoil_sigma_px": recoil_sigma_px,
                   "cloud_rms_px": cloud_rms_px, "rms_residual_atoms": float(fit.residuals.std())},
                  _plot(plot, draw, "Point-spread function"))


# --- 6. Detection noise ----------------------------------------------------------------------------------------
#: Shots with atoms whose mean image gives the clouds' counting regions (detection noise). The
#: region's size comes from the image's second moments, whose noise grows with the distance from the
#: centre: from 20 shots the |2> region of the default virtual lab ranged over 332-417 px (8 seeds,
#: truth 376 px), i.e. +-5 % in the noise; 40 shots halve the variance.
REGION_SHOTS = 40


def detection_noise(src: AtomSource, record: CalibrationRecord, plot: Path | None = None, *,
                    shots: int = 120) -> Result:
    """Atom-free shots through the full pipeline: rms 'atoms' per whole picture of each state,
    i.e. summed over the cloud's counting region (``cloud_region`` on the mean image of
    REGION_SHOTS shots with atoms). The noise grows as the square root of the pixels summed, so the region is the
    cloud's own (452 px for |1>, 376 px for |2> on the default virtual lab), not the +-4 rms box
    the other procedures sum atoms in (1426 and 1015 px: 10.1 and 8.1 'atoms' there)."""
    return detection_noise_from_frames(src.shots(REGION_SHOTS), src.shots(shots, atoms_loaded=False),
                                       record, plot)


def detection_noise_from_frames(with_atoms: FrameStack, atom_free: FrameStack,
                                record: CalibrationRecord, plot: Path | None = None) -> Result:
    """``detection_noise`` from its shots: some with atoms (where the clouds are), atom-free ones
    (from the simulated atoms, or through the instruments: calibration/plan_shots.py)."""
    cal = record.imaging_calibration()
    shots = int(atom_free.shape[0])
    regions = [cloud_region(img.mean(axis=0), cal.sigma_blur_px) for img in _images(with_atoms, cal)]
    e1, e2 = _images(atom_free, cal)
    n1, n2 = e1[:, regions[0]].sum(axis=1), e2[:, regions[1]].sum(axis=1)
    r1, r2 = float(np.std(n1, ddof=1)), float(np.std(n2, ddof=1))
    e = 1 / math.sqrt(2 * (shots - 1))

    def draw(ax: Any) -> None:
        ax.hist(n1, bins=25, alpha=0.6, label=f"|1> rms {r1:.2f} atoms")
        ax.hist(n2, bins=25, alpha=0.6, label=f"|2> rms {r2:.2f} atoms")
        ax.set(xlabel="atoms counted without atoms", ylabel="shots")
        ax.legend(fontsize=8)

    return Result("detection-noise", [("imaging", "detection_noise_1_atoms", r1, r1 * e),
                                      ("imaging", "detection_noise_2_atoms", r2, r2 * e)],
                  {"rms_1": r1, "rms_2": r2, "region_px": (int(regions[0].sum()),
                                                            int(regions[1].sum()))}, _plot(plot, draw, "Detection noise (atom-free shots)"))


# --- 7. Blur bound ------------------------------------------------------------------------------------------
def blur(record: CalibrationRecord, plot: Path | None = None, *, linewidth_rad_s: float = 2 * math.pi * 6.065e6,
         saturation: float = 1.0, recoil_velocity_m_s: float = 5.88e-3, pulse_s: float = 50e-6) -> Result:
    """sigma_blur = sqrt(PSF^2 + recoil^2) (mean of x and y), the recoil from the Joffe bound."""
    cal = record.imaging_calibration()
    recoil = fits.joffe_recoil_sigma_px(linewidth_rad_s, saturation, recoil_velocity_m_s, pulse_s,
                                        cal.pixel_size_m)
    sx = math.hypot(cal.psf_sigma_x_px, recoil)
    sy = math.hypot(cal.psf_sigma_y_px, recoil)
    total = 0.5 * (sx + sy)
    unc = record.uncertainty.get("imaging", {})
    err = 0.5 * math.hypot(unc.get("psf_sigma_x_px", 0.0) * cal.psf_sigma_x_px / sx,
                           unc.get("psf_sigma_y_px", 0.0) * cal.psf_sigma_y_px / sy)

    def draw(ax: Any) -> None:
        ax.bar(["PSF x", "PSF y", "recoil", "blur x", "blur y"],
               [cal.psf_sigma_x_px, cal.psf_sigma_y_px, recoil, sx, sy])
        ax.set(ylabel="rms (pixels)")

    return Result("blur", [("imaging", "sigma_blur_px", total, err)],
                  {"recoil_sigma_px": recoil, "blur_x_px": sx, "blur_y_px": sy},
                  _plot(plot, draw, "Blur: PSF and photon recoil (Joffe bound)"))
