"""The run monitor: shots -> atom-number images -> region counts for a set of geometries -> criteria.

Used live by the run session (and, through its snapshots, the GUI and the run server's clients), per
scan point (app/scan_monitor.py) and to recount a run from its file (app/monitoring.recount_file).
The geometries of one monitor (:class:`RegionPlan`): index 0 is the chosen split, then the
splitting-ratio scan (every gap position across the cloud along the split axis) and the gap-width
scan at the chosen position, so one pass over the shots gives the numbers of every view
(Fig. 2a/3a, 3b/3c). Masks are centred on the average of the first ``warmup_shots`` shots and then
stay fixed, so every shot of a run is counted with the same masks. Imports only analysis (and
numpy): no Qt, no drivers, no files.

Detection noise (``detection_noise=True``, default): the same masks, moved sideways onto an empty
part of each state's image (no atoms there), count every shot's atom-number images a second time.
Those counts are atom-free images through the same pipeline and masks: photon, read and fringe
noise of the same exposures, minus the extra photon noise where atoms absorb, so the estimate
errs on the small side (a slight under-correction, never a false violation from over-subtraction).
Per geometry: Var(S^A), Var(S^B), Cov(S^A, S^B) of S = (c1 - c2)/2 over the shots (ddof = 1).
The optical point-spread function also spreads each atom over a region edge deterministically,
which lowers Var(S^R) by D_R/4 and raises Cov(S^A, S^B) by W_AB/4 compared with whole atoms
(analysis.crosstalk.partition_terms, from the warm-up's mean images and the calibration's PSF;
with the PSF's standard errors, their uncertainty joins the noise's: analysis.crosstalk.imaging_terms).
The correction subtracted is detection noise - D/4 (variances) and detection noise + W_AB/4
(covariance) (analysis.crosstalk.ImagingTerms.apply); the criteria are reported raw and
corrected, side by side.
The estimate needs room beside the clouds (a frame at least ~3 ROI widths wide); otherwise only
raw values are reported.
"""
from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from analysis.criteria import CriteriaError, CriteriaResult, DetectionNoise, StreamingCriteria
from analysis.crosstalk import (Crosstalk, ImagingTerms, guard_blur_px, imaging_crosstalk_bounds,
                                imaging_terms, region_crosstalk)
from analysis.geometries import Geometry, Split, gap_width_scan, splitting_ratio_scan
from analysis.imaging import ImagingCalibration, ImagingUncertainty, ShotImages
from analysis.pipeline import AtomImager, fit_mask_around_clouds
from analysis.regions import CloudShape, RegionCounter, atom_free_clouds, cloud_shape

KINDS = ("chosen", "ratio_scan", "gap_scan")


@dataclass(frozen=True)
class RegionPlan:
    """Which geometries a monitor counts: the chosen split (or pattern) and the two scans.

    Positions and gaps in pixels of the |2> image, relative to the |2> cloud centre.
    ``scan_gap_px``: gap of the splitting-ratio scan (None: no ratio scan); ``gap_widths_px``:
    widths of the gap-width scan at the chosen split's position (empty: none).
    """

    #: default gap 3 px, the paper's (N_AB < 4 atoms; a 1 px gap counts ~20 atoms in both regions)
    chosen: Geometry = field(default_factory=lambda: Split("x", 0.0, 3.0))
    scan_gap_px: float | None = 3.0
    gap_widths_px: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)

    @property
    def axis(self) -> str:
        return self.chosen.axis if isinstance(self.chosen, Split) else "x"

    def geometries(self, roi_half_px: tuple[float, float]) -> tuple[list[Geometry], list[str]]:
        """The geometries (index 0 = chosen, 1 = the whole cloud) and the kind of each ('chosen',
        'whole_cloud', 'ratio_scan', 'gap_scan'). The whole cloud is a split without gap along the
        chosen axis: A and B together cover the whole ROI, so its xi_R^2 is the whole cloud's
        Wineland parameter (the chosen geometry's xi_R^2 is that of A and B only)."""
        geoms: list[Geometry] = [self.chosen, Split(self.axis, 0.0, 0.0)]
        kinds = ["chosen", "whole_cloud"]
        half = roi_half_px[0] if self.axis == "x" else roi_half_px[1]
        if self.scan_gap_px is not None:
            scan = splitting_ratio_scan(self.axis, half, self.scan_gap_px)
            geoms += scan
            kinds += ["ratio_scan"] * len(scan)
        if self.gap_widths_px and isinstance(self.chosen, Split):
            gaps = gap_width_scan(self.axis, self.chosen.position_px, self.gap_widths_px,
                                  self.chosen.a_side)
            geoms += gaps
            kinds += ["gap_scan"] * len(gaps)
        return geoms, kinds


@dataclass
class MonitorSnapshot:
    """The monitor's state at one moment (arrays are copies; safe to hand to another thread)."""

    shots_seen: int
    shots_counted: int
    warmup_shots: int
    result: CriteriaResult | None
    error: str
    geometries: list[Geometry]
    kinds: list[str]
    splitting_ratios: NDArray[np.float64]
    crosstalk: Crosstalk | None
    latest_images: ShotImages | None
    latest_direction: str
    latest_index: int
    mean_n1: NDArray[np.float64] | None
    mean_n2: NDArray[np.float64] | None
    clouds: dict[int, CloudShape] | None
    roi_half_px: tuple[float, float] | None
    counter: RegionCounter | None = None
    history: dict[str, NDArray[np.float64]] = field(default_factory=dict)

    def indices(self, kind: str) -> NDArray[np.intp]:
        """Geometry indices of one kind ('chosen', 'ratio_scan', 'gap_scan')."""
        return np.flatnonzero(np.asarray(self.kinds) == kind)


class RunMonitor:
    """Live criteria of a run for the geometries of a :class:`RegionPlan`. Thread-safe.

    ``reference_basis`` > 0 uses optimal references (a basis of that many recent reference frames,
    fitted outside the clouds found in the warm-up). ``history_every``: the chosen geometry's
    criteria are recorded every that many counted shots (convergence plots). ``uncertainty``:
    the standard errors of the calibrated blurs (the PSF's go into the corrected errors, the
    blur's into the crosstalk guard; analysis.crosstalk.imaging_terms, guard_blur_px).
    """

    def __init__(self, calibration: ImagingCalibration, regions: RegionPlan | None = None, *,
                 warmup_shots: int = 20, reference_basis: int = 0, confidence: float = 0.95,
                 roi_sigmas: float = 3.5, history_every: int = 5,
                 detection_noise: bool = True, uncertainty: ImagingUncertainty | None = None) -> None:
        if warmup_shots < 3:
            raise ValueError(f"warmup_shots = {warmup_shots}: expected >= 3")
        self.calibration = calibration
        self.uncertainty = uncertainty
        self.regions = regions or RegionPlan()
        self.warmup_shots = int(warmup_shots)
        self.reference_basis = int(reference_basis)
        self.confidence = confidence
        self.roi_sigmas = roi_sigmas
        self.history_every = max(1, int(history_every))
        self.use_detection_noise = detection_noise
        self._det_sums: NDArray[np.float64] | None = None   # (n, sums of S^A S^B, squares, product)
        self._empty: RegionCounter | None = None
        self._terms: ImagingTerms | None = None
        self._lock = threading.RLock()
        self._plain = AtomImager(calibration)
        self._imager = self._plain
        self._buffer: list[tuple[int, str, Mapping[str, NDArray[Any]]]] = []
        self._counter: RegionCounter | None = None
        self._kinds: list[str] = []
        self._criteria: StreamingCriteria | None = None
        self._clouds: dict[int, CloudShape] | None = None
        self._roi: tuple[float, float] | None = None
        self._sum1: NDArray[np.float64] | None = None
        self._sum2: NDArray[np.float64] | None = None
        self._n_images = 0
        self._seen = 0
        self._counted = 0
        self.last_index = -1
        self._latest: tuple[int, str, ShotImages] | None = None
        self._history: dict[str, list[float]] = {}
        self._shot_counts: list[tuple[float, ...]] = []
        self._ratios = np.zeros(0)

    # --- input ------------------------------------------------------------------------------------
    def add(self, index: int, direction: str, frames: Mapping[str, NDArray[Any]]) -> None:
        """One ok shot: its run index, direction ('x'|'y'|'z') and frames by name (counts)."""
        if direction not in ("x", "y", "z"):
            raise ValueError(f"shot {index}: direction {direction!r}: expected x, y or z")
        with self._lock:
            self._seen += 1
            self.last_index = max(self.last_index, int(index))
            if self._counter is None:
                self._buffer.append((index, direction, frames))
                images = self._plain(frames)
                self._accumulate(images)
                self._latest = (index, direction, images)
                if len(self._buffer) >= self.warmup_shots:
                    self._centre()
                return
            images = self._imager(frames)
            self._accumulate(images)
            self._count(index, direction, images, frames)

    def _accumulate(self, images: ShotImages) -> None:
        if self._sum1 is None:
            self._sum1 = np.zeros_like(images.n1.atoms, dtype=np.float64)
            self._sum2 = np.zeros_like(images.n2.atoms, dtype=np.float64)
        assert self._sum2 is not None
        self._sum1 += images.n1.atoms
        self._sum2 += images.n2.atoms
        self._n_images += 1

    def _centre(self) -> None:
        assert self._sum1 is not None and self._sum2 is not None
        m1, m2 = self._sum1 / self._n_images, self._sum2 / self._n_images
        clouds = {1: cloud_shape(m1), 2: cloud_shape(m2)}
        roi = (self.roi_sigmas * clouds[2].sigma_x_px, self.roi_sigmas * clouds[2].sigma_y_px)
        geoms, kinds = self.regions.geometries(roi)
        self._counter = RegionCounter(geoms, clouds, m1.shape, roi_half_px=roi)
        self._kinds = kinds
        self._clouds, self._roi = clouds, roi
        self._ratios = self._counter.splitting_ratios(m1, m2)
        self._empty = self._empty_counter(self._counter) if self.use_detection_noise else None
        if self._empty is not None:
            # the deterministic smear (optics PSF and the recoil's share), with its uncertainty
            self._terms = imaging_terms(self._counter, m1, m2, self.calibration, self.uncertainty)
        # the crosstalk guard of every verdict: what a coherent state shows through this imaging
        bounds = imaging_crosstalk_bounds(self._counter, m1, m2,
                                          guard_blur_px(self.calibration, self.uncertainty),
                                          psf_terms=self._terms.partition if self._terms else None)
        self._criteria = StreamingCriteria(len(geoms), confidence=self.confidence,
                                           crosstalk_bounds=dict(bounds.raw),
                                           corrected_crosstalk_bounds=dict(bounds.corrected))
        if self.reference_basis > 0:
            mask = fit_mask_around_clouds(m1.shape, clouds.values())
            self._imager = AtomImager(self.calibration, basis_frames=self.reference_basis,
                                      fit_mask=mask)
        # re-image the warm-up shots with the final imager (and count them), in order
        self._sum1 = self._sum2 = None
        self._n_images = 0
        buffered, self._buffer = self._buffer, []
        for index, direction, frames in buffered:
            images = self._imager(frames)
            self._accumulate(images)
            self._count(index, direction, images, frames)

    def _count(self, index: int, direction: str, images: ShotImages,
               frames: Mapping[str, NDArray[Any]]) -> None:
        assert self._counter is not None and self._criteria is not None
        c = self._counter.count(images.n1.atoms, images.n2.atoms)
        self._criteria.add(direction, c.n1a, c.n2a, c.n1b, c.n2b)
        det = self._add_atom_free(images) if self.use_detection_noise else (math.nan, math.nan)
        self._shot_counts.append((int(index), float(c.n1a[0]), float(c.n2a[0]), float(c.n1b[0]),
                                  float(c.n2b[0]), *det))
        self._counted += 1
        self._latest = (index, direction, images)
        if self._counted % self.history_every == 0 and self._criteria.ready():
            self._record_history()

    def _empty_counter(self, counter: RegionCounter) -> RegionCounter | None:
        """The masks shifted sideways (along x) onto atom-free pixels of each state's image."""
        hx = counter.roi_half_px[0]
        shifted = atom_free_clouds(counter.clouds, counter.image_shape,
                                   {s: hx * counter.scale(s)[0] for s in counter.clouds})
        if shifted is None:
            return None
        return RegionCounter(counter.geometries, shifted, counter.image_shape,
                             roi_half_px=counter.roi_half_px)

    def _add_atom_free(self, images: ShotImages) -> tuple[float, float]:
        """Adds the shot's atom-free counts; returns its S^A, S^B there for geometry 0 (atoms)."""
        if self._empty is None:
            return math.nan, math.nan
        c = self._empty.count(images.n1.atoms, images.n2.atoms)
        v = np.stack([(c.n1a - c.n2a) / 2, (c.n1b - c.n2b) / 2])    # (2, G): S^A, S^B
        row = np.concatenate([v, v * v, v[:1] * v[1:]])               # (5, G)
        if self._det_sums is None:
            self._det_sums = np.zeros((6,) + v.shape[1:])
        self._det_sums[0] += 1
        self._det_sums[1:] += row
        return float(v[0, 0]), float(v[1, 0])

    def shot_counts(self) -> dict[str, NDArray[Any]]:
        """Per counted shot, geometry 0 (the chosen regions): shot index, N1A, N2A, N1B, N2B and
        the atom-free detection-noise samples det_SA, det_SB (atoms; NaN without room)."""
        with self._lock:
            rows = np.array(self._shot_counts, dtype=np.float64).reshape(-1, 7)
        out: dict[str, NDArray[Any]] = {"index": rows[:, 0].astype(np.int64)}
        for k, name in enumerate(("N1A", "N2A", "N1B", "N2B", "det_SA", "det_SB"), start=1):
            out[name] = rows[:, k]
        return out

    def detection_noise(self) -> DetectionNoise | None:
        """Per geometry, hbar^2: detection-noise (co)variance of S^A, S^B combined with the PSF
        partition terms (what the corrected criteria subtract); None before 3 shots or without
        room for the atom-free masks. :meth:`raw_detection_noise` is the noise alone."""
        det = self.raw_detection_noise()
        if det is None or self._terms is None:
            return det
        return self._terms.apply(det)

    def raw_detection_noise(self) -> DetectionNoise | None:
        """Per-geometry detection-noise (co)variance of S^A, S^B from the atom-free masks, hbar^2,
        with its sampling uncertainty (DetectionNoise.from_samples)."""
        with self._lock:
            s = self._det_sums
            if s is None or s[0, 0] < 3:
                return None
            n = s[0]
            mean = s[1:3] / n
            var = np.maximum((s[3:5] - n * mean ** 2) / (n - 1), 0.0)
            cov = (s[5] - n * mean[0] * mean[1]) / (n - 1)
            return DetectionNoise.from_samples(n, var[0], var[1], cov)

    def _record_history(self) -> None:
        assert self._criteria is not None
        try:
            res = self.result()
        except CriteriaError:
            return
        h = self._history
        h.setdefault("shots", []).append(float(self._counted))
        for prefix, r in (("", res), ("corrected.", res.corrected)):
            if r is None:
                continue
            for name in ("N", "xi_R2_dB", "E_Ent", "E_EPR_AB", "E_EPR_BA"):
                est = r[name]
                h.setdefault(prefix + name, []).append(float(est.value[0]))
                h.setdefault(prefix + name + ".error", []).append(float(est.error[0]))
                if est.test_error is not None:     # minimised over the gains: about one error low
                    value, error = est.shown()
                    h.setdefault(prefix + name + ".bias_corrected", []).append(float(value[0]))
                    h.setdefault(prefix + name + ".bias_corrected_error", []).append(float(error[0]))

    # --- output -----------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True once criteria can be computed (>= 3 counted shots per direction)."""
        with self._lock:
            return self._criteria is not None and self._criteria.ready()

    @property
    def shots_counted(self) -> int:
        with self._lock:
            return self._counted

    def result(self) -> CriteriaResult:
        """The criteria now; CriteriaError while too few shots are counted."""
        with self._lock:
            if self._criteria is None:
                raise CriteriaError(f"masks not centred yet: {len(self._buffer)} of "
                                    f"{self.warmup_shots} warm-up shots received")
            self._criteria.detection_noise = self.detection_noise()
            return self._criteria.result()

    def snapshot(self, *, crosstalk: bool = True) -> MonitorSnapshot:
        """Everything a display needs, computed now."""
        with self._lock:
            result, error = None, ""
            try:
                result = self.result()
            except CriteriaError as exc:
                error = str(exc)
            mean1 = None if self._sum1 is None else self._sum1 / max(1, self._n_images)
            mean2 = None if self._sum2 is None else self._sum2 / max(1, self._n_images)
            xt = None
            if crosstalk and self._counter is not None and mean1 is not None and mean2 is not None:
                chosen = RegionCounter([self._counter.geometries[0]], self._counter.clouds,
                                       self._counter.image_shape, roi_half_px=self._roi)
                xt = region_crosstalk(chosen, mean1, mean2, self.calibration.sigma_blur_px)
            index, direction, images = self._latest if self._latest else (-1, "", None)
            return MonitorSnapshot(
                shots_seen=self._seen, shots_counted=self._counted, warmup_shots=self.warmup_shots,
                result=result, error=error,
                geometries=list(self._counter.geometries) if self._counter else [self.regions.chosen],
                kinds=list(self._kinds) or ["chosen"], splitting_ratios=self._ratios.copy(),
                crosstalk=xt, latest_images=images, latest_direction=direction, latest_index=index,
                mean_n1=mean1, mean_n2=mean2, clouds=dict(self._clouds) if self._clouds else None,
                roi_half_px=self._roi, counter=self._counter,
                history={k: np.asarray(v) for k, v in self._history.items()})

    def results_json(self, snap: MonitorSnapshot | None = None) -> dict[str, Any]:
        """The results for the run file: regions (with splitting ratios) and every geometry's
        criteria (of ``snap``, default: a snapshot now)."""
        snap = snap if snap is not None else self.snapshot()
        regions = []
        for i, g in enumerate(snap.geometries):
            entry: dict[str, Any] = {"index": i, "kind": snap.kinds[i], "name": g.name}
            if isinstance(g, Split):
                entry.update(axis=g.axis, position_px=g.position_px, gap_px=g.gap_px,
                             a_side=g.a_side)
            if i < snap.splitting_ratios.size:
                r = float(snap.splitting_ratios[i])
                entry["splitting_ratio"] = r if math.isfinite(r) else None
            regions.append(entry)
        out: dict[str, Any] = {
            "shots_seen": snap.shots_seen, "shots_counted": snap.shots_counted,
            "warmup_shots": snap.warmup_shots, "reference_basis": self.reference_basis,
            "regions": regions, "frame": "pixels of the |2> image relative to the |2> cloud centre",
            "criteria": [snap.result.to_dict(i) for i in range(len(snap.geometries))]
            if snap.result is not None else [], "error": snap.error,
        }
        if snap.clouds:
            out["clouds"] = {str(s): dataclasses.asdict(c) for s, c in snap.clouds.items()}
        if snap.crosstalk is not None:
            xt = snap.crosstalk
            out["crosstalk_chosen"] = {"n_ab": float(xt.n_ab[0]),
                                       "epr_bound_ab": float(xt.epr_bound_ab[0]),
                                       "epr_bound_ba": float(xt.epr_bound_ba[0])}
        return out


def monitor_shots(shots: Iterable[tuple[int, str, Mapping[str, NDArray[Any]]]],
                  calibration: ImagingCalibration, regions: RegionPlan | None = None,
                  **kwargs: Any) -> RunMonitor:
    """A monitor fed with ``(index, direction, frames)`` of every ok shot (e.g. from a run file)."""
    mon = RunMonitor(calibration, regions, **kwargs)
    for index, direction, frames in shots:
        mon.add(index, direction, frames)
    return mon


def frames_by_name(frames: NDArray[Any], names: Sequence[str]) -> dict[str, NDArray[Any]]:
    """A shot's (F, H, W) frame stack as {name: frame}."""
    if len(names) != frames.shape[0]:
        raise ValueError(f"{frames.shape[0]} frames but {len(names)} names {list(names)}")
    return {n: frames[i] for i, n in enumerate(names)}
