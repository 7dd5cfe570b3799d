"""One run of the experiment, from a lab configuration and a plan to a closed run file.

:class:`RunSession` is what the command line (``steerlab run``) and the GUI both drive. It starts
the virtual lab when the configuration says so, opens the drivers, prepares the instruments,
creates the run file and runs the sequencer in its own thread. Every shot goes through the shot
publisher to two consumers in their own threads: the run writer (blocking queue: never loses a
shot; if it fails the run ends FAULTED) and the live monitor (drop-oldest queue: a slow monitor is
reported and skips shots; the final results are then recomputed from the file). At the end the
monitor's results with the region definitions are written into the file, which is closed with the
run's end state. No Qt: listeners are called in the session's threads; a GUI forwards them
through queued signals.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.geometries import Split
from app.heap import HeapTrimmer
from app.lab import Lab, open_lab, sequencer_config, virtual_lab_settings  # noqa: F401 (re-export)
from app.labconfig import LabConfig
from analysis.monitor import MonitorSnapshot, RegionPlan, RunMonitor, frames_by_name
from app.monitoring import recount_file
from app.scan_monitor import PointSnapshot, ScanMonitor
from app.offline.exports import explicit_columns
from app.runfile import RunFileError
from app.runfile.nexus import sha256_file
from app.runfile.writer import RunWriter
from drivers.errors import DriverError
from sequences.control import Abort, Pause, Resume, RunControl, RunState, StateEvent, Stop
from sequences.instruments import Instruments
from sequences.plan import RunPlan
from sequences.publish import ConsumerEvent, ConsumerThread, Overflow, ShotPublisher
from sequences.sequencer import Progress, Sequencer
from sequences.shot import FRAME_NAMES, ShotRecord

log = logging.getLogger(__name__)

INSTRUMENTS = ("microwave", "timing_card", "camera")
RECENT_SHOTS = 128     # ok shots kept in memory to bring a recomputed monitor up to date
END_STATES = {RunState.COMPLETED: "completed", RunState.STOPPED: "stopped",
              RunState.ABORTED: "aborted", RunState.FAULTED: "faulted"}


class SessionError(RuntimeError):
    """The session cannot do what was asked (wrong state, instruments unreachable at start, ...)."""


@dataclass
class InstrumentStatus:
    """What the operator sees of one instrument."""

    name: str
    address: str
    connected: bool
    identity: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    last_error: str = ""


def region_plan(config: LabConfig, chosen: Split | None = None) -> RegionPlan:
    """The monitor's geometries from the configuration (or another chosen split)."""
    m = config.monitor
    return RegionPlan(chosen or m.split, m.scan_gap_px, m.gap_widths_px)


class RunSession:
    """One run: ``start()``, then operator commands, ``wait()``, ``close()`` (or a ``with`` block).

    ``seed``: the virtual lab's seed (default: the plan's ``state.seed``, else 0).
    """

    def __init__(self, config: LabConfig, plan: RunPlan, output: str | Path | None = None, *,
                 seed: int | None = None, monitor_queue: int = 64,
                 extra_config: dict[str, Any] | None = None) -> None:
        self.config = config
        self.plan = plan
        # the data directory is created only when the file is, after the instruments answered
        self.path = config.output_path(output, default_stem=f"{plan.name}-{plan.state.kind}", create=False)
        if self.path.exists():
            raise SessionError(f"{self.path} already exists; a run never overwrites a file")
        self.seed = seed if seed is not None else (plan.state.seed or 0)
        self.extra_config = dict(extra_config or {})      # recorded in the file (e.g. the server's log)
        self.control = RunControl()
        self.publisher = ShotPublisher()
        self.monitor = RunMonitor(config.imaging_calibration, region_plan(config),
                                  warmup_shots=config.monitor.warmup_shots,
                                  reference_basis=config.monitor.reference_basis,
                                  confidence=config.monitor.confidence,
                                  uncertainty=config.imaging_uncertainty)
        # a scan plan: the chosen split's criteria per scan point too (app/scan_monitor.py)
        self.scan_monitor = ScanMonitor(
            config.imaging_calibration, region_plan(config).chosen, plan.to_dict()["scan"],
            shots_per_point=plan.n_shots // len(plan.scan.points),
            warmup_shots=config.monitor.warmup_shots, reference_basis=config.monitor.reference_basis,
            confidence=config.monitor.confidence, uncertainty=config.imaging_uncertainty
        ) if plan.scan is not None else None
        self.lab: Any = None
        self._lab: Lab | None = None
        self.instruments: Instruments | None = None
        self.sequencer: Sequencer | None = None
        self.writer: RunWriter | None = None
        self.description: dict[str, Any] = {}
        self.final_state: RunState | None = None
        self.results: dict[str, Any] | None = None
        self.consumer_events: list[ConsumerEvent] = []
        self.failed_shots: list[tuple[int, str]] = []
        self.last_progress: Progress | None = None
        self.started_at = 0.0
        self._monitor_queue = monitor_queue
        self._progress_listeners: list[Callable[[Progress], None]] = []
        self._shot_listeners: list[Callable[[ShotRecord], None]] = []
        self._end_listeners: list[Callable[[RunState], None]] = []
        self._written_listeners: list[Callable[[ShotRecord], None]] = []
        self._errors: dict[str, str] = {}
        self._last_settings: dict[str, Any] = {}
        self._thread: threading.Thread | None = None
        self._consumers: list[ConsumerThread] = []
        self._done = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self._monitor_lock = threading.Lock()
        self._recent: deque[tuple[int, str, dict[str, Any]]] = deque(maxlen=RECENT_SHOTS)
        # freed heap pages back to the OS every 500 written shots (app/heap.py: hours-long runs)
        self._heap = HeapTrimmer(500)
        self.publisher.add_listener(self._on_consumer_event)

    # --- listeners (called in the session's threads) ---------------------------------------------
    def add_state_listener(self, listener: Callable[[StateEvent], None]) -> None:
        """``listener(StateEvent)`` on every run-state transition."""
        self.control.add_listener(listener)

    def add_progress_listener(self, listener: Callable[[Progress], None]) -> None:
        """``listener(Progress)`` after every published shot (sequencer thread)."""
        self._progress_listeners.append(listener)

    def add_shot_listener(self, listener: Callable[[ShotRecord], None]) -> None:
        """``listener(ShotRecord)`` after the monitor has counted an ok shot (monitor thread)."""
        self._shot_listeners.append(listener)

    def add_written_listener(self, listener: Callable[[ShotRecord], None]) -> None:
        """``listener(ShotRecord)`` once the shot is committed to the run file (writer thread)."""
        self._written_listeners.append(listener)

    def add_end_listener(self, listener: Callable[[RunState], None]) -> None:
        """``listener(final state)`` once the file is closed (session thread)."""
        self._end_listeners.append(listener)

    # --- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the lab (if virtual), connect and prepare the instruments, create the file, run.

        Raises DriverError if an instrument is unreachable or refuses a setting (nothing is left
        running and no file is created), SessionError if already started.
        """
        if self._thread is not None:
            raise SessionError("this session was already started; a session runs once")
        try:
            self._open_instruments()
            assert self.instruments is not None
            seq = Sequencer(self.plan, self.instruments, self._sequencer_config(), publisher=self.publisher,
                            control=self.control)
            self.sequencer = seq
            self.description = seq.prepare()
            self._remember_description()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                raise SessionError(f"{self.path} already exists; a run never overwrites a file")
            self.writer = RunWriter(
                self.path, frame_names=self.plan.imaging.frame_names, frame_shape=seq.frame_shape,
                plan_toml=self.plan.text, plan_json=self.plan.to_json(),
                calibration=dict(self.config.calibration_record), instruments=self.description,
                config=self.config.as_json_dict() | {"seed": self.seed} | self.extra_config,
                run_name=self.path.stem, compression=self.config.compression, fsync=self.config.fsync,
                provenance=self._provenance())
        except BaseException:
            self._shutdown_instruments()
            raise
        try:
            writer_sub = self.publisher.subscribe("writer", maxsize=64, overflow=Overflow.BLOCK)
            monitor_sub = self.publisher.subscribe("monitor", maxsize=self._monitor_queue,
                                                   overflow=Overflow.DROP_OLDEST)
            self._consumers = [ConsumerThread(writer_sub, self._write, name="run-writer").start(),
                               ConsumerThread(monitor_sub, self._monitor, name="run-monitor").start()]
            if self.no_analysis:
                log.warning("%s", self.no_analysis)
            seq.add_progress_listener(self._on_progress)
            self.started_at = time.monotonic()
            thread = threading.Thread(target=self._run, name="run-session", daemon=False)
            thread.start()
            self._thread = thread
        except BaseException:
            # interrupted (a signal) between the file's creation and the run's thread: end in order
            self.publisher.close()
            for c in self._consumers:
                c.join()
            self.writer.close("aborted")
            self._shutdown_instruments()
            raise

    def _provenance(self) -> dict[str, str]:
        """The configuration and calibration files and their SHA-256 (for the run file)."""
        cal = str(self.config.calibration_record.get("source", ""))
        return {"config_file": self.config.source, "config_sha256": sha256_file(self.config.source),
                "calibration_file": cal, "calibration_sha256": sha256_file(cal) if cal else ""}

    def _sequencer_config(self) -> Any:
        return sequencer_config(self.config, self.lab)

    def _open_instruments(self) -> None:
        built = open_lab(self.config, self.plan, self.seed)
        self._lab, self.lab, self.instruments = built, built.virtual, built.instruments

    def _shutdown_instruments(self) -> None:
        built, self._lab = self._lab, None
        self.instruments = None
        if built is not None:
            for error in built.close():
                log.warning("closing an instrument failed: %s", error)

    def _run(self) -> None:
        assert self.sequencer is not None
        final = RunState.FAULTED
        try:
            final = self.sequencer.run()
        finally:
            for c in self._consumers:
                c.join()
            self._finish(final)

    def _finish(self, final: RunState) -> None:
        """Final results into the file (if they can be computed and written), then close it with
        the run's end state, whatever failed before: an error is reported, never a file left open."""
        try:
            try:
                self.results = self._final_results()
            except Exception as exc:   # e.g. frames the analysis cannot use: the file still closes
                log.error("final results not computed: %s: %s", type(exc).__name__, exc)
                self._errors["results"] = f"final results not computed: {type(exc).__name__}: {exc}"
            writer = self.writer
            if writer is not None:
                if writer.failed:
                    final = RunState.FAULTED
                    self._errors["writer"] = writer.failed
                try:
                    if self.results is not None and not writer.failed:
                        writer.write_results(self.results)
                        if not self.no_analysis:
                            writer.write_counts(self._final_monitor.shot_counts())
                finally:
                    writer.close(END_STATES.get(final, "faulted"))
        except RunFileError as exc:         # one line: names the file, the error, shots kept
            log.error("%s", exc)
            self._errors["writer"] = str(exc)
            final = RunState.FAULTED
        except Exception as exc:
            log.exception("finishing the run file failed")
            self._errors["writer"] = f"{type(exc).__name__}: {exc}"
            final = RunState.FAULTED
        finally:
            self._shutdown_instruments()
            self.final_state = final
            self._done.set()
            for listener in list(self._end_listeners):
                try:
                    listener(final)
                except Exception:
                    log.exception("end listener failed")

    @property
    def no_analysis(self) -> str:
        """Why this plan's shots cannot be analysed ('' if they can): atom numbers need each
        shot's reference and dark frames."""
        missing = [n for n in FRAME_NAMES if n not in self.plan.imaging.frame_names]
        if not missing:
            return ""
        return (f"no criteria: the plan's shots hold no {' or '.join(missing)} frames "
                "(imaging.reference_frames / dark_frame = false), so atom numbers cannot be computed; "
                "the frames taken are recorded")

    def _final_results(self) -> dict[str, Any]:
        """The monitor's results; recomputed from the file if the live monitor skipped shots."""
        if self.no_analysis:
            return {"criteria": [], "regions": [], "error": self.no_analysis, "source": "no analysis"}
        written_ok = (self.writer.n_shots if self.writer is not None else 0) - len(self.failed_shots)
        monitor = self.monitor
        if monitor.snapshot(crosstalk=False).shots_seen < written_ok:
            log.info("the live monitor skipped shots: recomputing the results from %s", self.path)
            monitor = self.recompute(self.monitor.regions)      # the regions of the run now
        self._final_monitor = monitor
        out = monitor.results_json()
        out["source"] = "live monitor" if monitor is self.monitor else "recomputed from the run file"
        if out.get("criteria"):      # the chosen regions, explicitly named, corrected first
            out["columns"] = explicit_columns(out["criteria"][0])
        if self.scan_monitor is not None:   # live: the shots the monitor saw (see shots_seen)
            out["scan_points"] = self.scan_monitor.results_json()
        out["calibration_id"] = self.config.calibration_record.get("id", "")
        if self.lab is not None:      # waits the virtual lab granted to a slow host (not faults)
            out["host_lateness"] = {"extended_waits": self.lab.lateness.extensions,
                                    "max_extension_s": round(self.lab.lateness.extended_s, 3)}
        return out

    def recompute(self, regions: RegionPlan, progress: Callable[[int, int], None] | None = None
                  ) -> RunMonitor:
        """A new monitor over every ok shot in the file so far, with other regions (file re-read)."""
        m = self.config.monitor
        return recount_file(self.path, self.config.imaging_calibration, regions, progress,
                            warmup_shots=m.warmup_shots, reference_basis=m.reference_basis,
                            confidence=m.confidence, uncertainty=self.config.imaging_uncertainty)

    def switch_regions(self, regions: RegionPlan, progress: Callable[[int, int], None] | None = None
                       ) -> RunMonitor:
        """Recount every shot so far with other regions (from the file, no re-acquisition) and
        make that monitor the live one; the shots that arrive meanwhile are added too."""
        for _ in range(10):
            mon = self.recompute(regions, progress)
            with self._monitor_lock:
                newer = [r for r in self._recent if r[0] > mon.last_index]
                covered = not self._recent or self._recent[0][0] <= mon.last_index + 1 \
                    or self.monitor.last_index <= mon.last_index
                if covered:
                    for index, direction, frames in newer:
                        mon.add(index, direction, frames)
                    self.monitor = mon
                    return mon
        raise SessionError("the run is faster than the recount of its shots: try again when paused")

    def wait(self, timeout: float | None = None) -> RunState | None:
        """Wait for the run to end and the file to be closed; the final state (None on timeout)."""
        if self._thread is None:
            raise SessionError("the session was not started")
        if not self._done.wait(timeout):
            return None
        self._thread.join()
        return self.final_state

    def close(self, timeout: float = 30.0) -> RunState | None:
        """End the run if it is live (stop; abort if it does not end within ``timeout``), wait for
        the file to be closed, release everything. Idempotent."""
        if self._closed:
            return self.final_state
        if self._thread is None:
            self._shutdown_instruments()
            self._closed = True
            return None
        if not self.control.state.is_final:
            self.stop()
            if self.wait(timeout) is None:
                self.abort()
        final = self.wait()
        self._closed = True
        return final

    def __enter__(self) -> RunSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- operator commands ----------------------------------------------------------------------
    def _submit(self, command: Any) -> RunState:
        if not self.control.allowed(command):
            raise SessionError(f"{type(command).__name__} is not possible while the run is "
                               f"{self.control.state.value}")
        return self.control.submit(command)

    def pause(self) -> RunState:
        """Pause after the current shot."""
        return self._submit(Pause())

    def resume(self) -> RunState:
        """Resume (after a fault the sequencer reconnects the failed instrument first)."""
        return self._submit(Resume())

    def stop(self) -> RunState:
        """Finish the current shot, then end the run (file closed as 'stopped')."""
        return self._submit(Stop())

    def abort(self) -> RunState:
        """End now; the current shot is recorded as failed."""
        return self._submit(Abort())

    def reconnect(self, instrument: str) -> None:
        """Reconnect one instrument now (run paused or not running); DriverError if it fails."""
        if instrument not in INSTRUMENTS:
            raise SessionError(f"unknown instrument {instrument!r}: expected one of {INSTRUMENTS}")
        if self.sequencer is None:
            raise SessionError("the run has not been started")
        if self.control.state in (RunState.RUNNING, RunState.PAUSING, RunState.STOPPING):
            raise SessionError("pause the run before reconnecting an instrument")
        try:
            self.sequencer.reconnect({instrument})
        except DriverError as exc:
            self._errors[instrument] = f"reconnect failed: {exc}"
            raise
        self._errors.pop(instrument, None)

    # --- observation ------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """True from a successful start() until the file is closed."""
        return self._thread is not None and not self._done.is_set()

    @property
    def state(self) -> RunState:
        return self.control.state

    @property
    def error(self) -> str:
        """The current fault text (empty when none)."""
        return self.control.error

    def snapshot(self) -> MonitorSnapshot:
        """The live monitor's numbers, images and scans now."""
        return self.monitor.snapshot()

    def scan_results(self) -> dict[str, Any] | None:
        """The criteria per scan point now as JSON (``ScanMonitor.results_json``; None without a scan)."""
        return self.scan_monitor.results_json() if self.scan_monitor is not None else None

    def scan_snapshot(self) -> list[PointSnapshot]:
        """The criteria per scan point now (empty without a scan), for a display against the
        scan axis (app/scan_monitor.py)."""
        return self.scan_monitor.snapshot() if self.scan_monitor is not None else []

    def instrument_status(self) -> dict[str, InstrumentStatus]:
        """Connection, identity, settings read back with the last shot, last error; per instrument."""
        inst = self.instruments
        out: dict[str, InstrumentStatus] = {}
        d = self.description
        with self._lock:
            settings = dict(self._last_settings)
            errors = dict(self._errors)
        if inst is not None:
            mw, card, cam = inst.microwave, inst.card, inst.camera
            out["microwave"] = InstrumentStatus("microwave", mw.address, mw.connected,
                                                d.get("microwave", {}).get("identity", ""),
                                                settings.get("microwave", {}), errors.get("microwave", ""))
            tc = d.get("timing_card", {})
            out["timing_card"] = InstrumentStatus("timing_card", card.address, card.connected,
                                                  f"PrawnDO {tc.get('board', '')} {tc.get('version', '')}".strip(),
                                                  settings.get("timing_card", {}), errors.get("timing_card", ""))
            ci = d.get("camera", {}).get("identity", {})
            out["camera"] = InstrumentStatus("camera", ci.get("device_id", ""), True,
                                             f"{ci.get('vendor', '')} {ci.get('model', '')} "
                                             f"{ci.get('serial_number', '')}".strip(),
                                             settings.get("camera", {}), errors.get("camera", ""))
        return out

    def time_left_s(self) -> float | None:
        """Estimated seconds to the end of the plan from the mean time per slot so far."""
        p = self.last_progress
        if p is None or p.ok_shots == 0:
            return None
        elapsed = time.monotonic() - self.started_at
        return elapsed / p.ok_shots * max(0, p.planned - p.ok_shots)

    # --- internals ----------------------------------------------------------------------------------
    def _remember_description(self) -> None:
        d = self.description
        with self._lock:
            self._last_settings = {"microwave": dict(d.get("microwave", {}).get("settings", {})),
                                   "timing_card": {k: v for k, v in d.get("timing_card", {}).items()
                                                   if k not in ("channels",)},
                                   "camera": dict(d.get("camera", {}).get("settings", {}))}

    def _write(self, shot: ShotRecord) -> None:
        assert self.writer is not None
        self.writer.write_shot(shot)
        self._heap.tick()
        for listener in list(self._written_listeners):
            try:
                listener(shot)
            except Exception:
                log.exception("written listener failed")

    def _monitor(self, shot: ShotRecord) -> None:
        if not shot.is_ok or shot.frames is None or self.no_analysis:
            return
        frames = frames_by_name(shot.frames, shot.frame_names)
        with self._monitor_lock:
            self._recent.append((shot.index, shot.direction, frames))
            self.monitor.add(shot.index, shot.direction, frames)
            if self.scan_monitor is not None:
                point = shot.settings.get("scan.point", -1)
                self.scan_monitor.add(point if isinstance(point, int) else -1, shot.index,
                                      shot.direction, frames)
        for listener in list(self._shot_listeners):
            try:
                listener(shot)
            except Exception:
                log.exception("shot listener failed")

    def _on_progress(self, p: Progress) -> None:
        self.last_progress = p
        if p.status != "ok":
            self.failed_shots.append((p.index, p.reason))
            name = p.reason.split(":", 1)[0]
            if name in INSTRUMENTS:
                with self._lock:
                    self._errors[name] = p.reason
        for listener in list(self._progress_listeners):
            try:
                listener(p)
            except Exception:
                log.exception("progress listener failed")

    def _on_consumer_event(self, event: ConsumerEvent) -> None:
        self.consumer_events.append(event)
