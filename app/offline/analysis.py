"""Offline analysis of a run file: atom numbers and criteria for any regions, from the raw frames.

Two passes over the ok shots, in chunks (never all frames in memory): (1) the ensemble-average
atom-number images of |1> and |2> (the masks are centred on them, physics.md), (2) the region
counts of every geometry, accumulated as grouped power sums (analysis.moments.GroupedSums, the
k-th shot of a direction in jackknife group k % 20, as in the live monitor), plus the atom-free
counts of the same masks moved onto empty pixels (detection noise, see analysis.monitor). Pass (2)
counts several sets of geometries at once (``RunAnalysis.analyse_sets``: ratio scan, patterns and
gap scan of ``steerlab analyze`` in one pass) and computes the atom-number images only on the
pixels its masks read (the ROI boxes and a 1-pixel border for the bad-pixel repair). Each chunk's
partial sums are computed by a pure function of (file, rows, ...), so the chunks can run in this
process, in worker processes or on a Dask cluster, and are always combined in chunk order: every
execution path gives bit-identical numbers.
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from analysis.criteria import CriteriaResult, DetectionNoise, result_from_sums
from analysis.crosstalk import (Crosstalk, CrosstalkBounds, guard_blur_px, imaging_crosstalk_bounds, imaging_terms,
                                region_crosstalk)
from analysis.geometries import Geometry, Split, gap_width_scan, splitting_ratio_scan
from analysis.imaging import (CalibrationError, ImagingCalibration, ImagingUncertainty, atom_number_image,
                              shot_atom_images, split_frames)
from analysis.moments import DIRECTION_INDEX, GroupedSums, spin_components
from analysis.monitor import frames_by_name
from analysis.regions import CloudShape, RegionCounter, atom_free_clouds, cloud_shape, default_roi_half_px
from app.offline.exports import explicit_columns
from app.runfile import RunFileError, open_run

Progress = Callable[[int, int], None]
DEFAULT_CHUNK = 64


_READERS = threading.local()        # per thread: the open run file, the last counters built


@contextlib.contextmanager
def _run_file(path: str) -> Iterator[Any]:
    """The run file, opened once per thread and kept while it is unchanged (same inode, size and
    modification time): the chunks of a pass, and both passes, share one open and its checks of
    the whole file (tens of ms for a run of 600 shots, paid per chunk before)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    cached = getattr(_READERS, "run", None)
    if cached is None or cached[0] != key:
        _READERS.run = None
        if cached is not None:
            cached[1].close()
        _READERS.run = (key, open_run(path))
    yield _READERS.run[1]


def mean_images_chunk(path: str, rows: tuple[int, int], calibration: dict[str, float]
                      ) -> tuple[NDArray[np.float64], NDArray[np.float64], int]:
    """Sums of the |1> and |2> atom-number images over the ok shots of file rows [a, b)."""
    cal = ImagingCalibration.from_dict(calibration)
    s1: NDArray[np.float64] | None = None
    s2: NDArray[np.float64] | None = None
    n = 0
    with _run_file(path) as run:
        status = run.table()["status"][rows[0]:rows[1]]
        names = run.frame_names
        for k, frames in _shots(run, rows):
            if _status(status[k]) != "ok":
                continue
            im = shot_atom_images(frames_by_name(frames, names), cal)
            if s1 is None or s2 is None:
                s1, s2 = np.zeros_like(im.n1.atoms), np.zeros_like(im.n2.atoms)
            s1 += im.n1.atoms
            s2 += im.n2.atoms
            n += 1
    if s1 is None or s2 is None:
        return np.zeros(0), np.zeros(0), 0
    return s1, s2, n


@dataclass(frozen=True)
class CounterSpec:
    """What a worker needs to rebuild the region counter (plain data)."""

    geometries: tuple[Geometry, ...]
    clouds: dict[int, CloudShape]
    empty_clouds: dict[int, CloudShape] | None
    shape: tuple[int, int]
    roi_half_px: tuple[float, float]

    def counter(self) -> RegionCounter:
        return RegionCounter(list(self.geometries), self.clouds, self.shape, roi_half_px=self.roi_half_px)

    def empty_counter(self) -> RegionCounter | None:
        if self.empty_clouds is None:
            return None
        return RegionCounter(list(self.geometries), self.empty_clouds, self.shape,
                             roi_half_px=self.roi_half_px)


def _counters(spec: CounterSpec) -> tuple[RegionCounter, RegionCounter | None]:
    """The counters of ``spec``, built once per thread for a run of chunks with an equal spec (the
    pattern weights take ~10 ms per counter)."""
    cached = getattr(_READERS, "counters", None)
    if cached is None or cached[0] != spec:
        _READERS.counters = (spec, (spec.counter(), spec.empty_counter()))
    return _READERS.counters[1]


def count_chunk(path: str, rows: tuple[int, int], offsets: tuple[int, int, int],
                calibration: dict[str, float], spec: CounterSpec
                ) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]:
    """Grouped power sums (3, K, G, F), shots per direction (3,), atom-free sums (6, G) of rows
    [a, b); ``offsets``: ok shots per direction before row a (for the jackknife groups)."""
    cal = ImagingCalibration.from_dict(calibration)
    counter, empty = _counters(spec)
    boxes = read_boxes([c for c in (counter, empty) if c is not None], spec.shape)
    images = {s: np.zeros(spec.shape) for s in (1, 2)}   # only the boxes are written and read
    g = counter.n_geometries
    sums = GroupedSums.empty(g)
    sums.counts[:] = offsets
    det = np.zeros((6, g))
    with _run_file(path) as run:
        table = run.table()
        status = table["status"][rows[0]:rows[1]]
        dirs = table["direction"][rows[0]:rows[1]]
        names = run.frame_names
        for k, frames in _shots(run, rows):
            if _status(status[k]) != "ok":
                continue
            f = split_frames(frames_by_name(frames, names))
            for state, (r, col) in boxes.items():
                images[state][r, col] = atom_number_image(f[f"atoms{state}"][r, col], f[f"ref{state}"][r, col],
                                                          f["dark"][r, col], cal, state).atoms
            c = counter.count(images[1], images[2])
            sa, sb, ntot = spin_components(c.n1a, c.n2a, c.n1b, c.n2b)
            sums.add_shot(_status(dirs[k]), sa, sb, ntot)
            if empty is not None:
                e = empty.count(images[1], images[2])
                v = np.stack([(e.n1a - e.n2a) / 2, (e.n1b - e.n2b) / 2])
                det += np.concatenate([[np.ones(g)], v, v * v, v[:1] * v[1:]])
    return sums.sums, sums.counts - np.asarray(offsets), det


def read_boxes(counters: Sequence[RegionCounter], shape: tuple[int, int]) -> dict[int, tuple[slice, slice]]:
    """Per state: the (rows, cols) box holding every pixel the counters read, grown by the 1-pixel
    neighbourhood the bad-pixel repair looks at (so the atom numbers inside equal the full image's)."""
    out = {}
    for s in (1, 2):
        boxes = [c.roi_bbox(s) for c in counters]
        r0 = max(min(b[0].start for b in boxes) - 1, 0)
        r1 = min(max(b[0].stop for b in boxes) + 1, shape[0])
        c0 = max(min(b[1].start for b in boxes) - 1, 0)
        c1 = min(max(b[1].stop for b in boxes) + 1, shape[1])
        out[s] = (slice(r0, r1), slice(c0, c1))
    return out


def _shots(run: Any, rows: tuple[int, int]) -> Any:
    """(k, frames of row rows[0] + k) for the rows of a chunk, read in blocks."""
    for first, block in run.iter_frames(rows[0], rows[1], chunk=16):
        for j in range(block.shape[0]):
            yield first + j - rows[0], block[j]


def _status(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def run_calibration(record: Any, path: Path) -> ImagingCalibration:
    """The imaging calibration embedded in a run file (its calibration_json), validated."""
    imaging = record.get("imaging") if isinstance(record, dict) else None
    if not imaging:
        raise RunFileError(f"{path}: the run file holds no imaging calibration (calibration_json has "
                           f"no 'imaging'); pass a calibration record")
    try:
        return ImagingCalibration.from_dict(imaging, source=f"{path}: calibration")
    except CalibrationError as exc:
        raise RunFileError(str(exc)) from None


def run_uncertainty(record: Any, path: Path) -> ImagingUncertainty:
    """The blurs' standard errors of the calibration record embedded in a run file (none recorded:
    known exactly)."""
    try:
        return ImagingUncertainty.from_record(record.get("uncertainty") if isinstance(record, dict) else None,
                                              source=f"{path}: calibration")
    except CalibrationError as exc:
        raise RunFileError(str(exc)) from None


@dataclass
class Analysis:
    """Criteria for a list of geometries of one run (arrays of shape (G,) inside ``result``)."""

    path: Path
    geometries: list[Geometry]
    splitting_ratios: NDArray[np.float64]
    n_a: NDArray[np.float64]
    n_b: NDArray[np.float64]
    result: CriteriaResult
    crosstalk: Crosstalk
    detection_noise: DetectionNoise | None
    #: per certifying criterion (G,): the value crosstalk alone gives a coherent state (the guard
    #: of every verdict, analysis.crosstalk.imaging_crosstalk_bounds)
    crosstalk_bounds: CrosstalkBounds

    @property
    def best(self) -> CriteriaResult:
        """The corrected result if available, else the raw one."""
        return self.result.corrected if self.result.corrected is not None else self.result

    def table(self) -> list[dict[str, Any]]:
        """One row per geometry: name, split parameters, ratio, N_A, N_B (atoms), then every
        criterion corrected first, raw beside it, with explicit names: ``E_Ent_corrected``,
        ``E_Ent_corrected_error``, ``E_Ent_corrected_p_value``, ``E_Ent_corrected_verdict``,
        ``E_Ent_raw``, ... (corrected: detection noise and PSF subtracted; empty where the run
        has no detection-noise estimate). Verdicts are "certified", "unresolved" (below 1, but the
        crosstalk bounds ``crosstalk_bound_E_Ent_corrected``/``_raw`` etc. could produce it) or "not certified"."""
        return [export_row(self, i) for i in range(len(self.geometries))]


def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def export_row(a: Analysis, i: int) -> dict[str, Any]:
    """Geometry ``i`` of an analysis as one export row (per quantity: corrected, then raw)."""
    g = a.geometries[i]
    row: dict[str, Any] = {"index": i, "name": g.name, "splitting_ratio": _num(a.splitting_ratios[i]),
                           "N_A": _num(a.n_a[i]), "N_B": _num(a.n_b[i]),
                           "crosstalk_n_ab": _num(a.crosstalk.n_ab[i])}
    row.update({f"crosstalk_bound_{k}_corrected": _num(b[i])
                for k, b in a.crosstalk_bounds.corrected.items()})
    row.update({f"crosstalk_bound_{k}_raw": _num(b[i]) for k, b in a.crosstalk_bounds.raw.items()})
    if isinstance(g, Split):
        row.update(axis=g.axis, position_px=g.position_px, gap_px=g.gap_px)
    entry = a.result.to_dict(i)
    row.update(explicit_columns(entry, CRITERIA_EXPORTED))
    # "calibration or analysis inconsistent: ..." where a result no state can give is significant
    row["warnings"] = "; ".join(entry.get("warnings") or [])
    return row


CRITERIA_EXPORTED = ("E_Ent", "E_EPR_AB", "E_EPR_BA", "product_A", "product_B", "xi_R2", "N")


class RunAnalysis:
    """A run file opened for offline analysis (notebook API).

    ``calibration``: another imaging calibration instead of the run's own record. ``executor``: a
    concurrent.futures Executor or a dask.distributed Client to spread the chunks (default: this
    process). ``chunk``: shots per chunk. ``rows``: analyse only these file rows (a boolean mask,
    e.g. the shots of one scan point: app/offline/scan_points.py); mean images, masks and criteria
    are then those of the selection.
    """

    def __init__(self, path: str | Path, calibration: ImagingCalibration | None = None, *,
                 executor: Any = None, chunk: int = DEFAULT_CHUNK, confidence: float = 0.95,
                 rows: NDArray[np.bool_] | None = None, uncertainty: ImagingUncertainty | None = None) -> None:
        self.path = Path(path)
        with open_run(self.path) as run:
            table = run.table()
            record = run.calibration
            self.plan = run.plan
            self.end_state = run.end_state
            self.frame_shape = run.frame_shape
        self.calibration = calibration or run_calibration(record, self.path)
        # the blurs' standard errors: given, else the run's record's (another calibration without
        # them: known exactly)
        self.uncertainty = uncertainty if uncertainty is not None else (
            run_uncertainty(record, self.path) if calibration is None else ImagingUncertainty())
        self.executor = executor
        self.chunk = max(1, int(chunk))
        self.confidence = confidence
        status = np.array([_status(s) for s in table["status"]])
        dirs = np.array([_status(d) for d in table["direction"]])
        n = len(status)
        selected = np.ones(n, dtype=bool) if rows is None else np.asarray(rows, dtype=bool)[:n]
        self.ok = (status == "ok") & selected
        self.directions = dirs
        if self.ok.sum() < 9:
            raise RunFileError(f"{self.path}: only {int(self.ok.sum())} ok shots"
                               + (" selected" if rows is not None else "")
                               + "; at least 3 per direction are needed")
        # chunks: runs of selected rows (all rows without ``rows``), at most ``chunk`` long
        self.chunks = []
        a = 0
        while a < n:
            if not selected[a]:
                a += 1
                continue
            b = a
            while b < n and selected[b] and b - a < self.chunk:
                b += 1
            self.chunks.append((a, b))
            a = b
        self._means: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None

    @property
    def state(self) -> str:
        """The prepared state from the plan ('squeezed', 'coherent' or '?')."""
        return str((self.plan or {}).get("state", {}).get("kind", "?"))

    # --- execution ------------------------------------------------------------------------------
    def _map(self, fn: Callable[..., Any], args: list[tuple[Any, ...]], progress: Progress | None,
             what: str) -> list[Any]:
        ex = self.executor
        total = len(args)
        out: list[Any] = [None] * total
        if ex is None:
            for i, a in enumerate(args):
                out[i] = fn(*a)
                if progress:
                    progress(i + 1, total)
            return out
        if isinstance(ex, Executor):
            futures = [ex.submit(fn, *a) for a in args]
            for i, f in enumerate(futures):
                out[i] = f.result()
                if progress:
                    progress(i + 1, total)
            return out
        # a dask.distributed Client
        futures = [ex.submit(fn, *a, pure=False) for a in args]
        for i, f in enumerate(futures):
            out[i] = f.result()
            if progress:
                progress(i + 1, total)
        return out

    # --- pass 1 -----------------------------------------------------------------------------------
    def mean_images(self, progress: Progress | None = None) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Ensemble-average |1> and |2> atom-number images (atoms per pixel) of the ok shots."""
        if self._means is None:
            cal = self.calibration.to_dict()
            parts = self._map(mean_images_chunk, [(str(self.path), c, cal) for c in self.chunks],
                              progress, "mean images")
            s1 = s2 = None
            n = 0
            for p1, p2, k in parts:                 # in chunk order
                if k == 0:
                    continue
                s1 = p1.copy() if s1 is None else s1 + p1
                s2 = p2.copy() if s2 is None else s2 + p2
                n += k
            assert s1 is not None and s2 is not None
            self._means = (s1 / n, s2 / n)
        return self._means

    def clouds(self) -> dict[int, CloudShape]:
        m1, m2 = self.mean_images()
        return {1: cloud_shape(m1), 2: cloud_shape(m2)}

    def roi_half_px(self) -> tuple[float, float]:
        return default_roi_half_px(self.clouds()[2])

    # --- pass 2 -----------------------------------------------------------------------------------
    def analyse(self, geometries: Sequence[Geometry], progress: Progress | None = None,
                *, detection_noise: bool = True) -> Analysis:
        """Criteria (raw and corrected), splitting ratios, N_A, N_B and crosstalk per geometry."""
        return self.analyse_sets([geometries], progress, detection_noise=detection_noise)[0]

    def analyse_sets(self, sets: Sequence[Sequence[Geometry]], progress: Progress | None = None,
                     *, detection_noise: bool = True) -> list[Analysis]:
        """One Analysis per set of geometries, all counted in one pass over the frames (every
        geometry's numbers as if its set were analysed alone: the counts of a geometry do not
        depend on the others counted with it)."""
        sets = [list(g) for g in sets]
        every = [g for geoms in sets for g in geoms]
        m1, m2 = self.mean_images()
        clouds = self.clouds()
        roi = self.roi_half_px()
        counter = RegionCounter(every, clouds, m1.shape, roi_half_px=roi)
        scale = {s: counter.scale(s)[0] for s in (1, 2)}
        empty = atom_free_clouds(clouds, m1.shape, {k: roi[0] * v for k, v in scale.items()}) \
            if detection_noise else None
        spec = CounterSpec(tuple(every), clouds, empty, m1.shape, roi)
        offsets = self._offsets()
        cal = self.calibration.to_dict()
        parts = self._map(count_chunk, [(str(self.path), c, offsets[i], cal, spec)
                                        for i, c in enumerate(self.chunks)], progress, "counting")
        sums = GroupedSums.empty(len(every))
        det = np.zeros((6, len(every)))
        for s, n, d in parts:                        # in chunk order: identical on every path
            sums.sums += s
            sums.counts += n
            det += d
        out = []
        start = 0
        for geoms in sets:
            part = slice(start, start + len(geoms))
            start += len(geoms)
            out.append(self._analysis(list(geoms), GroupedSums(sums.sums[:, :, part].copy(), sums.counts.copy()),
                                      det[:, part] if empty is not None else None))
        return out

    def _analysis(self, geoms: list[Geometry], sums: GroupedSums, det: NDArray[np.float64] | None
                  ) -> Analysis:
        """Criteria of one set of geometries from its power sums and atom-free sums (None: no room)."""
        m1, m2 = self.mean_images()
        counter = RegionCounter(geoms, self.clouds(), m1.shape, roi_half_px=self.roi_half_px())
        dn = None
        pt = None
        if det is not None and det[0, 0] >= 3:
            k = det[0]
            mean = det[1:3] / k
            var = np.maximum((det[3:5] - k * mean ** 2) / (k - 1), 0.0)
            cov = (det[5] - k * mean[0] * mean[1]) / (k - 1)
            # the deterministic smear (optics PSF and the recoil's share) with its uncertainty
            terms = imaging_terms(counter, m1, m2, self.calibration, self.uncertainty)
            pt = terms.partition
            # the atom-free (co)variances with their sampling uncertainty (propagated into the
            # corrected errors and p-values), minus the PSF partition terms
            dn = terms.apply(DetectionNoise.from_samples(k, var[0], var[1], cov))
        bounds = imaging_crosstalk_bounds(counter, m1, m2, guard_blur_px(self.calibration, self.uncertainty),
                                          psf_terms=pt)
        result = result_from_sums(sums, detection_noise=dn, confidence=self.confidence,
                                  crosstalk_bounds=dict(bounds.raw),
                                  corrected_crosstalk_bounds=dict(bounds.corrected))
        mean_counts = counter.count(m1, m2)
        xt = region_crosstalk(counter, m1, m2, self.calibration.sigma_blur_px)
        return Analysis(self.path, geoms, mean_counts.splitting_ratio(), mean_counts.n_a,
                        mean_counts.n_b, result, xt, dn, bounds)

    def _offsets(self) -> list[tuple[int, int, int]]:
        """Ok shots per direction before each chunk."""
        out = []
        seen = np.zeros(3, dtype=int)
        for a, b in self.chunks:
            out.append((int(seen[0]), int(seen[1]), int(seen[2])))
            for d, ok in zip(self.directions[a:b], self.ok[a:b]):
                if ok:
                    seen[DIRECTION_INDEX[d]] += 1
        return out

    # --- the paper's views --------------------------------------------------------------------------
    def ratio_scan(self, axis: str = "x", gap_px: float = 3.0, progress: Progress | None = None,
                   *, step_px: float = 0.5) -> Analysis:
        """Gap positions across the cloud along ``axis`` every ``step_px`` (Fig. 2a/3a; the masks
        are fractional, so sub-pixel steps are exact)."""
        return self.analyse(self.ratio_scan_geometries(axis, gap_px, step_px=step_px), progress)

    def ratio_scan_geometries(self, axis: str = "x", gap_px: float = 3.0, *,
                              step_px: float = 0.5) -> list[Geometry]:
        """The splits of ``ratio_scan``: gap positions across the ROI along ``axis`` every ``step_px``."""
        hx, hy = self.roi_half_px()
        return list(splitting_ratio_scan(axis, hx if axis == "x" else hy, gap_px, step_px))

    def position_for_ratio(self, ratio: float, axis: str = "x", gap_px: float = 3.0) -> float:
        """Gap position (px from the |2> centre) whose splitting ratio N_A/N is closest to ``ratio``."""
        hx, hy = self.roi_half_px()
        m1, m2 = self.mean_images()
        geoms = splitting_ratio_scan(axis, hx if axis == "x" else hy, gap_px, step_px=0.25)
        counter = RegionCounter(geoms, self.clouds(), m1.shape, roi_half_px=(hx, hy))
        r = counter.splitting_ratios(m1, m2)
        i = int(np.nanargmin(np.abs(r - ratio)))
        return float(geoms[i].position_px)

    def gap_scan(self, position_px: float, widths_px: Sequence[float], axis: str = "x",
                 progress: Progress | None = None) -> Analysis:
        """Gap widths at a fixed gap centre (Fig. 3b/3c)."""
        return self.analyse(gap_width_scan(axis, position_px, widths_px), progress)

    def patterns(self, geometries: Sequence[Geometry], progress: Progress | None = None) -> Analysis:
        """Any list of region patterns (Fig. 2b)."""
        return self.analyse(geometries, progress)


def open_analysis(path: str | Path, calibration: ImagingCalibration | None = None, **kw: Any) -> RunAnalysis:
    """Open a run for analysis (see RunAnalysis)."""
    return RunAnalysis(path, calibration, **kw)
