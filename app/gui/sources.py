"""What the window shows: a live run (RunSession) or a finished run file under review.

Both give a :class:`analysis.monitor.MonitorSnapshot` and can recount every shot with other regions.
Listeners of the session run in its threads; :class:`SessionBridge` turns them into Qt signals
(queued to the GUI thread). Long work runs in :func:`run_in_thread` with progress signals.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6 import QtCore

from analysis.imaging import ImagingCalibration
from app.offline.analysis import run_calibration, run_uncertainty
from analysis.monitor import MonitorSnapshot, RegionPlan, RunMonitor
from app.monitoring import recount_file
from app.runfile import open_run
from app.remote import RemoteRun, RemoteStateEvent
from app.session import RunSession
from sequences.control import StateEvent
from sequences.sequencer import Progress


class Task(QtCore.QObject):
    """Signals of one background job."""

    progress = QtCore.Signal(int, int)
    done = QtCore.Signal(object)
    failed = QtCore.Signal(str)
    worker_thread: threading.Thread | None = None


def run_in_thread(fn: Callable[[Callable[[int, int], None]], Any], parent: QtCore.QObject) -> Task:
    """Run ``fn(progress)`` in a thread; the Task's signals arrive in the GUI thread."""
    task = Task(parent)

    def body() -> None:
        try:
            result = fn(lambda i, n: task.progress.emit(i, n))
        except Exception as exc:          # shown to the operator, never a crash of the window
            task.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            task.done.emit(result)

    thread = threading.Thread(target=body, name="gui-task", daemon=True)
    task.worker_thread = thread      # kept with the task (QObject.thread() is Qt's own method)
    thread.start()
    return task


class SessionBridge(QtCore.QObject):
    """Qt signals for a RunSession's listeners."""

    state_changed = QtCore.Signal(str, str)      # state, reason
    progress = QtCore.Signal(object)              # Progress
    shot_counted = QtCore.Signal()
    ended = QtCore.Signal(str)

    def __init__(self, session: RunSession | RemoteRun, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        session.add_state_listener(self._state)
        session.add_progress_listener(self._progress)
        session.add_shot_listener(lambda shot: self.shot_counted.emit())
        session.add_end_listener(lambda final: self.ended.emit(final.value))

    def _state(self, ev: StateEvent | RemoteStateEvent) -> None:
        self.state_changed.emit(ev.state.value, ev.reason)

    def _progress(self, p: Progress) -> None:
        self.progress.emit(p)


class ReviewSource:
    """A run file under review: its shots recounted with the run's (or another) calibration."""

    def __init__(self, path: str | Path, calibration: ImagingCalibration | None = None) -> None:
        self.path = Path(path)
        with open_run(self.path) as run:
            record = run.calibration or {}
            self.results = run.results
            self.end_state = run.end_state
            self.n_shots = run.n_shots
        self.calibration = calibration or run_calibration(record, self.path)
        self.uncertainty = run_uncertainty(record, self.path) if calibration is None else None
        self.warmup = int((self.results or {}).get("warmup_shots", 20))
        self.reference_basis = int((self.results or {}).get("reference_basis", 0))
        self.monitor: RunMonitor | None = None

    def default_regions(self) -> RegionPlan:
        """The regions recorded in the run's results (else the default split)."""
        from analysis.geometries import Split
        regions = (self.results or {}).get("regions") or []
        if regions and regions[0].get("axis"):
            r = regions[0]
            gaps = tuple(x["gap_px"] for x in regions if x.get("kind") == "gap_scan")
            scan = [x["gap_px"] for x in regions if x.get("kind") == "ratio_scan"]
            return RegionPlan(Split(r["axis"], r["position_px"], r["gap_px"], r.get("a_side", "low")),
                              scan[0] if scan else None, gaps)
        return RegionPlan()

    def recount(self, regions: RegionPlan, progress: Callable[[int, int], None]) -> RunMonitor:
        self.monitor = recount_file(self.path, self.calibration, regions, progress,
                                    warmup_shots=self.warmup, reference_basis=self.reference_basis,
                                    uncertainty=self.uncertainty)
        return self.monitor

    def snapshot(self) -> MonitorSnapshot | None:
        return self.monitor.snapshot() if self.monitor is not None else None


class QueueWatcher(QtCore.QObject):
    """The run server's queue for the window's queue panel: a thread with its own client, which
    finds the data directory's server (again after it stopped), reads its queue and follows the
    ``queue`` and ``run_started`` events; both reach the GUI thread as signals."""

    listing = QtCore.Signal(dict)
    run_started = QtCore.Signal()

    def __init__(self, data_dir: Path, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.data_dir = data_dir
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def _run(self) -> None:
        from app.client import Client, ServerError
        while not self._stop.is_set():
            try:
                client = Client(data_dir=self.data_dir, timeout_s=3.0)
                sub = client.subscribe(["queue", "run_started"])
                listing = client.queue()
                self.listing.emit(listing)
                if listing.get("current"):         # a run started before we were subscribed
                    self.run_started.emit()
            except ServerError:
                self._stop.wait(1.0)
                continue
            try:
                last_check = time.monotonic()
                while not self._stop.is_set():
                    got = sub.get(0.5)
                    if got is not None:
                        event, data = got
                        if event == "queue" and isinstance(data, dict):
                            self.listing.emit(data)
                        elif event == "run_started":
                            self.run_started.emit()
                    if time.monotonic() - last_check > 2.0:   # still there? (and the listing, fresh)
                        self.listing.emit(client.queue())
                        last_check = time.monotonic()
            except ServerError:
                self.listing.emit({"current": None, "queue": [], "paused": False,
                                   "server": "stopped"})
            finally:
                sub.close()
                client.close()
