"""A run on the run server, seen from a window: the subset of :class:`app.session.RunSession` the
operator window uses (start, pause/resume/stop/abort, reconnect, regions, snapshot, instrument
status, listeners), backed by :class:`app.client.Client` and the server's events.

The acquisition, the monitor and the file live in the server process; this object only holds the
latest state, progress, instrument status and monitor snapshot the server published (decoded by
:mod:`app.server.snapshots`), so the window never computes criteria and never waits on the
monitor. A watcher pings the server every ``PING_EVERY_S``; a server that stops answering (killed,
crashed) ends the run here as FAULTED with the error "server stopped" (the run file stays as the
server left it: every committed shot readable).

:func:`local_server` connects to the data directory's server, or starts one (``steerlab serve``
in its own session, so that it outlives the window).
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.client import Client, ServerError, ServerUnavailable
from app.labconfig import LabConfig
from analysis.monitor import MonitorSnapshot, RegionPlan
from app.server.snapshots import SnapshotError, from_wire, split_to_wire
from analysis.geometries import Split
from sequences.control import RunState
from sequences.sequencer import Progress

log = logging.getLogger(__name__)
PING_EVERY_S = 1.0
START_TIMEOUT_S = 60.0
SERVER_STOPPED = "server stopped"


@dataclass(frozen=True)
class RemoteStateEvent:
    """A state change of the server's run (what RunSession's state listeners receive)."""

    state: RunState
    reason: str = ""


@dataclass(frozen=True)
class RemoteInstrument:
    """One instrument's status as the server reports it (the fields the window shows)."""

    name: str
    address: str
    connected: bool
    last_error: str = ""
    identity: str = ""
    settings: dict[str, Any] = field(default_factory=dict)


def local_server(config: LabConfig, config_path: str | Path, *, timeout_s: float = START_TIMEOUT_S,
                 log_file: str | Path | None = None) -> tuple[Client, subprocess.Popen[bytes] | None]:
    """A client of the server of ``config``'s data directory, starting ``steerlab serve --config
    config_path`` (detached: its own session) if none answers. Returns the client and the process
    started (None if a server was already running). ServerUnavailable if none comes up in time."""
    try:
        client = Client(data_dir=config.data_dir, timeout_s=5.0)
        client.ping()
        return client, None
    except ServerError:
        pass
    env = dict(os.environ)
    if log_file is not None:
        env["STEERLAB_LOG"] = str(log_file)
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--config", str(config_path)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, env=env)
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            raise ServerUnavailable(f"steerlab serve ended at once (exit {proc.returncode}): "
                                    f"{err.splitlines()[-1] if err else 'no message'}")
        try:
            client = Client(data_dir=config.data_dir, timeout_s=5.0)
            client.ping()
            return client, proc
        except ServerError:
            if time.monotonic() > deadline:
                proc.terminate()
                raise ServerUnavailable(f"steerlab serve did not answer within {timeout_s:.0f} s") from None
            time.sleep(0.2)


class RemoteRun:
    """One queued run on the server, followed until it ends (or the server stops)."""

    def __init__(self, client: Client | None, config: LabConfig, plan_toml: str, *, plan_source: str,
                 out: str | None = None, seed: int | None = None) -> None:
        self.client = client
        self.config = config
        self.sequencer = None              # regions are switched through the server
        self._plan = (plan_toml, plan_source, out, seed)
        self.path: Path | None = None
        self.error = ""
        self.results: dict[str, Any] | None = None
        self.last_progress: Progress | None = None
        self._state = RunState.IDLE
        self._snapshot: MonitorSnapshot | None = None
        self._scan: dict[str, Any] | None = None
        self._time_left: tuple[float, float] | None = None     # (seconds left, time.monotonic() then)
        self._instruments: dict[str, RemoteInstrument] = {}
        self._item_id: str | None = None
        self._started = threading.Event()
        self._ended = threading.Event()
        self._lock = threading.Lock()
        self._state_listeners: list[Callable[[RemoteStateEvent], None]] = []
        self._progress_listeners: list[Callable[[Progress], None]] = []
        self._shot_listeners: list[Callable[[Any], None]] = []
        self._end_listeners: list[Callable[[RunState], None]] = []
        self._threads: list[threading.Thread] = []
        self.monitor = _Regions(self)

    # --- listeners (called in the follower thread) ------------------------------------------------
    def add_state_listener(self, fn: Callable[[RemoteStateEvent], None]) -> None:
        self._state_listeners.append(fn)

    def add_progress_listener(self, fn: Callable[[Progress], None]) -> None:
        self._progress_listeners.append(fn)

    def add_shot_listener(self, fn: Callable[[Any], None]) -> None:
        """Called when the server publishes a new monitor snapshot (at most ~5 per second)."""
        self._shot_listeners.append(fn)

    def add_end_listener(self, fn: Callable[[RunState], None]) -> None:
        self._end_listeners.append(fn)

    # --- control ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Queue the run and wait until the server has started it (instruments connected)."""
        if self.client is None:
            raise ServerError("no run server to queue the run on")
        sub = self.client.subscribe(["run_started", "run_finished", "state", "progress", "monitor",
                                     "scan", "instruments", "server"])
        plan_toml, plan_source, out, seed = self._plan
        item = self.client.queue_add(plan_toml, plan_source=plan_source, out=out, seed=seed,
                                     regions=self.monitor.start_split())
        self._item_id = str(item["id"])
        self._start_threads(sub)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._started.is_set():
            if self._ended.is_set():
                raise ServerError(self.error or "the run ended before it started")
            if time.monotonic() > deadline:
                raise ServerError(f"the server did not start run {self._item_id} within {START_TIMEOUT_S:.0f} s")
            self._started.wait(0.1)

    @classmethod
    def current(cls, client: Client, config: LabConfig) -> RemoteRun | None:
        """The run the server is executing now, followed from here on (None if it runs none): what
        a window opened during a run shows."""
        st = client.status()
        run, current = st.get("run"), (st.get("queue") or {}).get("current")
        if not run or not run.get("running") or not current:
            return None
        self = cls(client, config, "", plan_source=str(current.get("plan_source", "")))
        self._item_id = str(current.get("id"))
        self.path = Path(str(run["file"]))
        try:
            self._state = RunState(str(run.get("state")))
        except ValueError:
            self._state = RunState.RUNNING
        if run.get("progress"):
            self._progress(run["progress"])
        self._note_time_left(run)
        sub = client.subscribe(["run_finished", "state", "progress", "monitor", "scan", "instruments", "server"])
        latest = client.snapshot(monitor=True)
        if isinstance(latest, dict) and "monitor" in latest:
            try:
                snap = from_wire(latest["monitor"])
                self._snapshot = snap if isinstance(snap, MonitorSnapshot) else None
            except SnapshotError as exc:
                log.warning("server snapshot not shown: %s", exc)
        scan = client.scan_points()
        if scan is not None and self._mine(scan) and isinstance(scan.get("scan"), dict):
            self._scan = scan["scan"]
        self._started.set()
        self._start_threads(sub)
        return self

    def _start_threads(self, sub: Any) -> None:
        """The follower (events of ``sub``) and the watcher (pings) of this run."""
        self._threads = [threading.Thread(target=self._follow, args=(sub,), name="remote-run", daemon=True),
                         threading.Thread(target=self._watch, name="remote-run-watch", daemon=True)]
        for t in self._threads:
            t.start()

    def _call(self, command: str, **args: Any) -> Any:
        if self.client is None:
            raise ServerError("no run server")
        with self._lock:                     # one REQ socket: one request at a time
            return self.client.call(command, **args)

    def pause(self) -> None:
        self._call("run_pause")

    def resume(self) -> None:
        self._call("run_resume")

    def stop(self) -> None:
        self._call("run_stop")

    def abort(self) -> None:
        self._call("run_abort")

    def reconnect(self, instrument: str) -> None:
        self._call("reconnect", instrument=instrument)

    def switch_regions(self, regions: RegionPlan, progress: Callable[[int, int], None] | None = None) -> None:
        """The server recounts its file with the new chosen split (the next snapshot shows it)."""
        g = regions.chosen
        if not isinstance(g, Split):
            raise ServerError("the run server switches to splits only (axis, position, gap)")
        self._call("set_regions", **split_to_wire(g))

    def close(self, timeout: float = 30.0) -> RunState | None:
        """Stop following (the run goes on on the server)."""
        self._ended.set()
        return self._state if self._state.is_final else None

    def wait(self, timeout: float | None = None) -> RunState | None:
        self._ended.wait(timeout)
        return self._state if self._ended.is_set() else None

    # --- what the window reads ---------------------------------------------------------------------
    @property
    def state(self) -> RunState:
        return self._state

    @property
    def is_running(self) -> bool:
        return self._started.is_set() and not self._ended.is_set()

    def snapshot(self) -> MonitorSnapshot | None:
        return self._snapshot

    def time_left_s(self) -> float | None:
        """The server's estimate with its last ``progress`` event, counted down since."""
        if self._time_left is None:
            return None
        left, at = self._time_left
        return max(0.0, left - (time.monotonic() - at))

    def scan_results(self) -> dict[str, Any] | None:
        """The criteria per scan point the server last published (``ScanMonitor.results_json``;
        None: not a scan run, or none yet)."""
        return self._scan

    def _note_time_left(self, data: dict[str, Any]) -> None:
        """Keep the server's ``time_left_s`` estimate (s) of a status or ``progress`` payload, with
        when it arrived (time_left_s counts down from it)."""
        left = data.get("time_left_s")
        if isinstance(left, (int, float)):
            self._time_left = (float(left), time.monotonic())

    def _progress(self, data: Any) -> Progress | None:
        """A ``progress`` payload as Progress (the server adds keys such as ``time_left_s``)."""
        if not isinstance(data, dict):
            return None
        try:
            p = Progress(**{f.name: data[f.name] for f in dataclasses.fields(Progress)})
        except (KeyError, TypeError):
            return None
        self.last_progress = p
        return p

    def instrument_status(self) -> dict[str, RemoteInstrument]:
        return dict(self._instruments)

    # --- the follower and the watcher ---------------------------------------------------------------
    def _follow(self, sub: Any) -> None:
        try:
            while not self._ended.is_set():
                got = sub.get(0.2)
                if got is None:
                    continue
                event, data = got
                self._on_event(event, data if isinstance(data, dict) else {})
        finally:
            sub.close()

    def _mine(self, data: dict[str, Any]) -> bool:
        return self.path is not None and str(data.get("file")) == str(self.path)

    def _on_event(self, event: str, data: dict[str, Any]) -> None:
        if event == "run_started" and data.get("id") == self._item_id:
            self.path = Path(str(data.get("file")))
            self._started.set()
        elif not self._started.is_set():
            if event == "run_finished" and data.get("id") == self._item_id:
                self._end(RunState.FAULTED, str(data.get("error") or "the server refused the run"))
        elif event == "state":
            try:
                self._state = RunState(str(data.get("state")))
            except ValueError:
                return
            self.error = str(data.get("error") or "")
            event_ = RemoteStateEvent(self._state, str(data.get("reason") or ""))
            for state_fn in list(self._state_listeners):
                state_fn(event_)
        elif event == "progress":
            p = self._progress(data)
            if p is None:
                return
            self._note_time_left(data)
            for progress_fn in list(self._progress_listeners):
                progress_fn(p)
        elif event == "monitor" and self._mine(data) and "monitor" in data:
            try:
                snap = from_wire(data["monitor"])
            except SnapshotError as exc:
                log.warning("server snapshot not shown: %s", exc)
                return
            if isinstance(snap, MonitorSnapshot):
                self._snapshot = snap
                for fn in list(self._shot_listeners):
                    fn(snap)
        elif event == "scan" and self._mine(data) and isinstance(data.get("scan"), dict):
            self._scan = data["scan"]
        elif event == "instruments":
            self._instruments = {k: RemoteInstrument(str(v.get("name", k)), str(v.get("address", "")),
                                                     bool(v.get("connected")), str(v.get("last_error") or ""),
                                                     str(v.get("identity") or ""),
                                                     dict(v.get("settings") or {}))
                                 for k, v in data.items() if isinstance(v, dict)}
        elif event == "run_finished" and data.get("id") == self._item_id:
            results = data.get("results")
            self.results = results if isinstance(results, dict) else None
            try:
                final = RunState(str(data.get("final_state")))
            except ValueError:
                final = RunState.FAULTED
            self._end(final, self.error)
        elif event == "server" and data.get("state") == "stopped":
            self._end(RunState.FAULTED, SERVER_STOPPED)

    def _end(self, final: RunState, error: str) -> None:
        if self._ended.is_set():
            return
        self._state, self.error = final, error
        self._ended.set()
        for fn in list(self._end_listeners):
            fn(final)

    def _watch(self) -> None:
        """Ping the server on a client of its own; no answer: the server stopped."""
        assert self.client is not None
        try:
            watcher = Client(endpoint=self.client.endpoint, timeout_s=max(2.0, 3 * PING_EVERY_S))
        except ServerError:
            self._end(RunState.FAULTED, SERVER_STOPPED)
            return
        try:
            while not self._ended.wait(PING_EVERY_S):
                try:
                    watcher.ping()
                except ServerError:
                    self._end(RunState.FAULTED, SERVER_STOPPED)
        finally:
            watcher.close()


class _Regions:
    """``session.monitor.regions = plan`` of the in-process session, for a remote run: set before
    ``start`` its chosen split goes with the queued run (the server's run starts with it); the
    window's Apply sends a split to the running one (``RemoteRun.switch_regions``)."""

    def __init__(self, run: RemoteRun) -> None:
        self._run = run
        self._regions: RegionPlan | None = None

    @property
    def regions(self) -> RegionPlan | None:
        return self._regions

    @regions.setter
    def regions(self, plan: RegionPlan) -> None:
        self._regions = plan

    def start_split(self) -> dict[str, Any] | None:
        """The chosen split to start the server's run with (None: the configuration's). The
        server's monitor takes splits only: another chosen pattern is logged and not sent."""
        chosen = self._regions.chosen if self._regions is not None else None
        if chosen is None:
            return None
        if not isinstance(chosen, Split):
            log.warning("the run server starts runs with a split only; %s is not sent (the run "
                        "starts with the configuration's split)", chosen.name)
            return None
        return split_to_wire(chosen)
