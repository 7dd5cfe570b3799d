"""The one recount of a run file with the run monitor (analysis/monitor.py): the live session (other
regions, final results) and the window's review use it. The monitor itself lives in analysis/: it
reads no files; this module feeds it the shots of a file.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from analysis.imaging import ImagingCalibration
from analysis.monitor import RegionPlan, RunMonitor, frames_by_name, monitor_shots
from app.runfile import open_run


def recount_file(path: str | Path, calibration: ImagingCalibration, regions: RegionPlan | None = None,
                 progress: Callable[[int, int], None] | None = None, **kwargs: Any) -> RunMonitor:
    """The one recount of a run file: a new monitor (``kwargs``: warmup_shots, reference_basis,
    confidence, ...) over every ok shot the file holds now, read once in file order; ``progress(i,
    n)`` after each shot. Used by the live session (other regions, final results) and the review."""
    def shots(run: Any) -> Iterator[tuple[int, str, Mapping[str, NDArray[Any]]]]:
        total = run.n_shots
        for i, shot in enumerate(run.iter_shots(status=None)):
            if shot.is_ok and shot.frames is not None:
                yield shot.index, shot.direction, frames_by_name(shot.frames, shot.frame_names)
            if progress is not None:
                progress(i + 1, total)

    with open_run(path) as run:
        return monitor_shots(shots(run), calibration, regions, **kwargs)
