"""Live criteria per scan point: one small :class:`analysis.monitor.RunMonitor` per point.

A scan changes what the camera sees from point to point (a time of flight moves and grows the
cloud, an atom number changes it), so each point's masks are centred on that point's own first
shots (``warmup_shots``, at most half the point's planned shots, at least 3) and its criteria are
accumulated from its own shots only: the chosen split of the run's monitor (squeezing xi_R^2,
E_Ent, E_EPR A->B and B->A, raw and detection-noise corrected, with errors and verdicts). The
splitting-ratio and gap-width scans stay with the run's own monitor. No Qt, no drivers.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from numpy.typing import NDArray

from analysis.criteria import CriteriaResult
from analysis.geometries import Geometry
from analysis.imaging import ImagingCalibration, ImagingUncertainty
from analysis.monitor import RegionPlan, RunMonitor
from sequences.scan import point_indices


@dataclass(frozen=True)
class PointSnapshot:
    """One scan point now: its number, values by field, shots counted, criteria (None: not yet)
    and why not."""

    point: int
    values: dict[str, Any]
    shots_seen: int
    shots_counted: int
    result: CriteriaResult | None
    error: str


class ScanMonitor:
    """Criteria per scan point of a run (``scan``: ``RunPlan.to_dict()["scan"]``). Thread-safe."""

    def __init__(self, calibration: ImagingCalibration, chosen: Geometry, scan: Mapping[str, Any],
                 *, shots_per_point: int, warmup_shots: int = 20, reference_basis: int = 0,
                 confidence: float = 0.95, uncertainty: ImagingUncertainty | None = None) -> None:
        self.calibration = calibration
        self.chosen = chosen
        self.scan = dict(scan)
        self.warmup_shots = max(3, min(int(warmup_shots), int(shots_per_point) // 2))
        self.reference_basis = reference_basis
        self.confidence = confidence
        self.uncertainty = uncertainty
        self._monitors: dict[int, RunMonitor] = {}
        self._lock = threading.Lock()

    def values(self, point: int) -> dict[str, Any]:
        """``{field: value}`` of a point (from the scan's axes)."""
        axes = self.scan.get("axes", [])
        return {a["field"]: a["values"][i] for a, i in zip(axes, point_indices(self.scan, point))}

    def add(self, point: int, index: int, direction: str, frames: Mapping[str, NDArray[Any]]) -> None:
        """One ok shot of scan point ``point`` (ignored if < 0: not a scan shot)."""
        if point < 0:
            return
        with self._lock:
            mon = self._monitors.get(point)
            if mon is None:
                mon = RunMonitor(self.calibration, RegionPlan(self.chosen, None, ()),
                                 warmup_shots=self.warmup_shots,
                                 reference_basis=self.reference_basis, confidence=self.confidence,
                                 history_every=10**9, uncertainty=self.uncertainty)
                self._monitors[point] = mon
        mon.add(index, direction, frames)

    def snapshot(self) -> list[PointSnapshot]:
        """Every point seen so far, in point order."""
        with self._lock:
            monitors = sorted(self._monitors.items())
        out = []
        for p, mon in monitors:
            snap = mon.snapshot(crosstalk=False)
            out.append(PointSnapshot(p, self.values(p), snap.shots_seen, snap.shots_counted,
                                     snap.result, snap.error))
        return out

    def results_json(self) -> dict[str, Any]:
        """Per point: number, values, shots, the chosen split's criteria (``to_dict``) or error."""
        points = []
        for s in self.snapshot():
            points.append({"point": s.point, "values": s.values, "shots_seen": s.shots_seen,
                           "shots_counted": s.shots_counted,
                           "criteria": s.result.to_dict(0) if s.result is not None else None,
                           "error": s.error})
        return {"geometry": self.chosen.name, "warmup_shots": self.warmup_shots,
                "axes": [{"field": a["field"], "unit": a.get("unit", "")}
                         for a in self.scan.get("axes", [])], "points": points}
