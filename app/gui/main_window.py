"""The operator's window: run control, instruments, images with regions, live criteria and scans.

The window only displays and commands: runs go through :class:`app.session.RunSession` (sequencer
in its own threads), numbers come from :mod:`analysis.monitor` / :mod:`analysis`. Display updates
are throttled to 5 per second; recounts and file loading run in background threads with progress.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from app.gui.export import export_report
from app.gui.panels import InstrumentsPanel, NumbersPanel, QueuePanel, RegionEditor, RunPanel
from app.gui.sources import QueueWatcher, ReviewSource, SessionBridge, run_in_thread
from app.gui.views import ImagesPanel, PlotsPanel
from app.labconfig import LabConfigError, load_lab_config
from app.paths import default_config
from analysis.monitor import MonitorSnapshot, RegionPlan
from app.preflight import check_run
from app.remote import SERVER_STOPPED, RemoteRun, local_server
from app.client import Client, ServerError
from app.session import RunSession, SessionError, region_plan
from sequences.plan import PlanError, build_plan
from sequences.sequencer import Progress

log = logging.getLogger(__name__)
REFRESH_MS = 100   # a snapshot is shown over two ticks (_refresh): each panel up to 5 times a second
SCAN_EVERY_S = 1.0  # the Scan tab (criteria per scan point), when in view, at most once a second
#: the plot tab in view is redrawn at most this often during a run (s): a convergence plot's paint
#: takes 10-60 ms of the GUI thread on a busy 2-core host (benchmarks/gui_latency.py), the numbers
#: and images follow every snapshot (<= 5 Hz)
PLOTS_EVERY_S = 1.0


class MainWindow(QtWidgets.QMainWindow):
    """``settings``: where the window keeps its state (tests pass a temporary file);
    ``confirm``: asks the operator a yes/no question (tests answer without a dialog)."""

    background_finished = QtCore.Signal(str)   # a recount / review load ended ('' or the error)
    run_finished = QtCore.Signal(str)          # final state of a run, or 'failed: why' at start

    def __init__(self, *, config_path: str | Path | None = None,
                 settings: QtCore.QSettings | None = None,
                 confirm: Callable[[str, str], bool] | None = None, server: bool = False) -> None:
        super().__init__()
        # server: runs go to the data directory's run server (started if none; app/remote.py)
        self.server_mode = server
        self.setWindowTitle("steerlab")
        self.settings = settings or QtCore.QSettings("steerlab", "steerlab")
        self._confirm = confirm or self._ask
        self.session: Any = None              # RunSession, or RemoteRun in server mode
        self.bridge: SessionBridge | None = None
        self.review: ReviewSource | None = None
        self._dirty = False
        self._plots_pending: MonitorSnapshot | None = None
        self._plots_t = -math.inf
        self._scan_t = -math.inf
        self._closing = False
        self._busy = 0
        self._last_progress: Progress | None = None
        self.server_process: Any = None       # a run server this window started (it outlives the window)

        self.run_panel = RunPanel()
        self.regions = RegionEditor()
        self.instruments = InstrumentsPanel()
        self.numbers = NumbersPanel()
        self.images = ImagesPanel()
        self.plots = PlotsPanel()
        self.crosstalk = QtWidgets.QLabel("")
        self.crosstalk.setWordWrap(True)

        left = QtWidgets.QWidget()
        lv = QtWidgets.QVBoxLayout(left)
        lv.addWidget(self.run_panel)
        self.queue_panel = QueuePanel()
        if self.server_mode:
            lv.addWidget(self.queue_panel)
        lv.addWidget(self.regions)
        lv.addStretch(1)
        right = QtWidgets.QWidget()
        rv = QtWidgets.QVBoxLayout(right)
        rv.addWidget(self.numbers)
        box = QtWidgets.QGroupBox("Crosstalk (chosen regions)")
        QtWidgets.QVBoxLayout(box).addWidget(self.crosstalk)
        rv.addWidget(box)
        rv.addWidget(self.instruments, 1)
        centre = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        centre.addWidget(self.images)
        centre.addWidget(self.plots)
        centre.setSizes([420, 380])
        main = QtWidgets.QSplitter()
        main.addWidget(left)
        main.addWidget(centre)
        main.addWidget(right)
        main.setSizes([300, 760, 420])
        main.setObjectName("main_splitter")
        self.splitter = main
        self.setCentralWidget(main)
        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setMaximumWidth(240)
        self.progress_bar.hide()
        self.statusBar().addPermanentWidget(self.progress_bar)
        # shown when the run server this window follows has stopped (killed, crashed)
        self.restart_server_button = QtWidgets.QPushButton("Restart the run server")
        self.restart_server_button.hide()
        self.restart_server_button.clicked.connect(self.restart_server)
        self.statusBar().addPermanentWidget(self.restart_server_button)
        self._menus()

        self.run_panel.start_requested.connect(self.start_run)
        self.run_panel.command.connect(self.command)
        self.run_panel.browse_config.connect(self._browse_config)
        self.regions.regions_changed.connect(self.change_regions)
        self.images.split_dragged.connect(self._dragged)
        self.instruments.reconnect_requested.connect(self.reconnect)
        self.plots.currentChanged.connect(lambda _: setattr(self, "_scan_t", -math.inf))
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self._refresh)
        self.timer.start()
        self._restore(config_path)
        self.queue_watcher: QueueWatcher | None = None
        if self.server_mode:
            self.queue_panel.add_requested.connect(self.queue_current_settings)
            self.queue_panel.move_requested.connect(
                lambda item, pos: self._queue_command("queue_move", id=item, position=pos))
            self.queue_panel.remove_requested.connect(lambda item: self._queue_command("queue_remove", id=item))
            data_dir = self._data_dir()
            if data_dir is not None:
                self.queue_watcher = QueueWatcher(data_dir, self)
                self.queue_watcher.listing.connect(self.queue_panel.show_listing)
                self.queue_watcher.run_started.connect(self._server_run_started)
                self.queue_watcher.start()
        self.attach_to_server()

    # --- menus, settings --------------------------------------------------------------------------
    def _menus(self) -> None:
        m = self.menuBar().addMenu("&File")
        a = m.addAction("&Open run for review…")
        a.setShortcut(QtGui.QKeySequence.StandardKey.Open)
        a.triggered.connect(self._open_dialog)
        e = m.addAction("&Export report…")
        e.setShortcut(QtGui.QKeySequence("Ctrl+E"))
        e.triggered.connect(self._export_dialog)
        m.addSeparator()
        q = m.addAction("&Quit")
        q.setShortcut(QtGui.QKeySequence.StandardKey.Quit)
        q.triggered.connect(self.close)

    def _restore(self, config_path: str | Path | None) -> None:
        s = self.settings
        remembered = str(s.value("run/config", "") or "")
        chosen = str(config_path) if config_path else remembered
        if not config_path and remembered and not Path(remembered).is_file():
            # a remembered configuration that moved or was deleted: the default, and say so
            self._error(f"the last configuration {remembered} no longer exists; using the virtual lab "
                        f"({default_config()})")
            chosen = ""
        self.run_panel.config_edit.setText(chosen or str(default_config()))
        self.run_panel.state_combo.setCurrentText(str(s.value("run/state", "squeezed")))
        self.run_panel.shots_spin.setValue(int(str(s.value("run/shots", 300))))
        geometry = s.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1500, 900)
        state = s.value("window/splitter")
        if state is not None:
            self.splitter.restoreState(state)
        try:
            self.regions.set_plan(region_plan(load_lab_config(self.run_panel.config_edit.text())))
        except (LabConfigError, OSError):
            pass

    def save_settings(self) -> None:
        s = self.settings
        config = self.run_panel.config_edit.text()
        # absolute, so that the window finds it again from any working directory
        s.setValue("run/config", str(Path(config).resolve()) if config else "")
        s.setValue("run/state", self.run_panel.state_combo.currentText())
        s.setValue("run/shots", self.run_panel.shots_spin.value())
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/splitter", self.splitter.saveState())
        s.sync()

    def _browse_config(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Lab configuration",
                                                        str(default_config().parent), "TOML (*.toml)")
        if path:
            self.run_panel.config_edit.setText(path)

    def _ask(self, title: str, text: str) -> bool:
        answer = QtWidgets.QMessageBox.question(self, title, text)
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def _error(self, text: str) -> None:
        self.statusBar().showMessage(text, 15000)
        self.run_panel.error_label.setText(text)

    # --- run --------------------------------------------------------------------------------------
    def _plan_from(self, params: dict[str, Any]) -> tuple[Any, Any]:
        """The configuration and the checked plan of the run panel's settings (raises the
        configuration's, the plan's and the pre-run checks' errors)."""
        config = load_lab_config(params["config"] or default_config())
        plan = build_plan({"name": "gui", "run": {"shots": int(params["shots"])},
                           "state": {"kind": str(params["state"])},
                           "directions": {"order": str(params["order"]), "block": int(params["block"])}},
                          "plan from the window", config.microwave_calibration)
        check_run(config, plan, params.get("out"))
        return config, plan

    def queue_current_settings(self) -> None:
        """Server mode: queue the run panel's settings as a run (after the ones queued)."""
        params = self.run_panel.params()
        try:
            config, plan = self._plan_from(params)
        except (LabConfigError, PlanError, SessionError, ValueError) as exc:
            self._error(str(exc))
            return
        config_path = Path(params["config"] or default_config())

        def work(progress: Callable[[int, int], None]) -> str:
            client = self._server(config, config_path)
            item = client.queue_add(plan.to_toml(), plan_source="plan from the window", out=params.get("out"),
                                    shots=plan.n_shots)
            return f"queued {item['id']} ({plan.n_shots} shots)"

        task = run_in_thread(work, self)
        task.done.connect(lambda text: self.statusBar().showMessage(str(text), 5000))
        task.failed.connect(self._error)

    def _queue_command(self, command: str, **args: Any) -> None:
        data_dir = self._data_dir()
        if data_dir is None:
            return

        def work(progress: Callable[[int, int], None]) -> None:
            Client(data_dir=data_dir, timeout_s=5.0).call(command, **args)

        run_in_thread(work, self).failed.connect(self._error)

    def _data_dir(self) -> Path | None:
        try:
            return Path(load_lab_config(self.run_panel.config_edit.text() or default_config()).data_dir)
        except LabConfigError as exc:
            self._error(str(exc))
            return None

    def start_run(self, params: dict[str, Any]) -> None:
        """Build the plan from the run panel and start a session (instrument set-up in a thread)."""
        if self.session is not None and not self.session.state.is_final:
            self._error("a run is in progress")
            return
        try:
            config, plan = self._plan_from(params)
            session: Any
            if self.server_mode:
                config_path = Path(params["config"] or default_config())
                session = RemoteRun(None, config, plan.to_toml(), plan_source="plan from the window",
                                    out=params.get("out"))
            else:
                session = RunSession(config, plan, params.get("out"))
        except (LabConfigError, PlanError, SessionError, ValueError) as exc:
            self._error(str(exc))
            self.run_finished.emit(f"failed: {exc}")
            return
        self._follow(session)
        session.monitor.regions = self.regions.plan()
        self.run_panel.file_label.setText(str(session.path or ""))
        self.run_panel.set_state("starting")
        self.statusBar().showMessage("connecting the instruments…")

        def start(progress: Callable[[int, int], None]) -> None:
            if isinstance(session, RemoteRun):
                session.client = self._server(session.config, config_path)
            session.start()

        task = run_in_thread(start, self)
        task.failed.connect(self._start_failed)
        task.done.connect(lambda _: self.run_panel.file_label.setText(str(session.path)))
        task.done.connect(lambda _: self.statusBar().showMessage(f"running: {session.path}", 5000))

    def _server(self, config: Any, config_path: Path) -> Client:
        """A client of the data directory's run server, started if none answers (in a worker
        thread: it may wait for the server to come up). A server this window starts is kept in
        ``server_process`` (shut down with the window when idle); joining one that runs already
        keeps the process this window started earlier."""
        if self.server_process is not None:
            # a server this window started and that died is its zombie child until reaped; a new
            # server would take the dead one's pid for alive and refuse the data directory
            self.server_process.poll()
        client, proc = local_server(config, config_path)
        if proc is not None:
            self.server_process = proc
        return client

    def restart_server(self) -> None:
        """Start the data directory's run server again (after it stopped), in a thread."""
        session = self.session
        if not isinstance(session, RemoteRun):
            return
        config_path = Path(self.run_panel.config_edit.text() or default_config())
        self.restart_server_button.setEnabled(False)

        def work(progress: Callable[[int, int], None]) -> str:
            client = self._server(session.config, config_path)
            return f"run server restarted: {client.status()['pid']}"

        task = run_in_thread(work, self)
        task.done.connect(lambda text: self.statusBar().showMessage(str(text), 10000))
        task.done.connect(lambda _: self.restart_server_button.hide())
        task.failed.connect(self._error)
        task.done.connect(lambda _: self.restart_server_button.setEnabled(True))
        task.failed.connect(lambda _: self.restart_server_button.setEnabled(True))

    def _server_run_started(self) -> None:
        """A queued run started on the server: follow it unless this window follows one already."""
        if self.session is None or not self.session.is_running:
            self.attach_to_server(force=True)

    def attach_to_server(self, force: bool = False, ended: Path | None = None) -> bool:
        """Server mode, on opening: follow the run the data directory's server is executing, if any
        (not the run written to ``ended``, which this window has just seen end)."""
        if not self.server_mode or (self.session is not None and not force):
            return False
        if self.session is not None and self.session.is_running:
            return False
        try:
            config = load_lab_config(self.run_panel.config_edit.text() or default_config())
            client = Client(data_dir=config.data_dir, timeout_s=3.0)
            run = RemoteRun.current(client, config)
        except (LabConfigError, ServerError):
            return False
        if run is None:
            return False
        if ended is not None and run.path == ended:
            run.close()
            return False
        self._follow(run)
        self.run_panel.file_label.setText(str(run.path))
        self.run_panel.set_state(run.state.value)
        if run.last_progress is not None:
            self._progress(run.last_progress)
        self._dirty = True
        self.statusBar().showMessage(f"following the run server's run: {run.path}", 10000)
        return True

    def _follow(self, session: Any) -> None:
        self.review = None
        self.session = session
        self._new_scan()
        self.bridge = SessionBridge(session, self)
        self.bridge.state_changed.connect(self._state_changed)
        self.bridge.progress.connect(self._progress)
        self.bridge.shot_counted.connect(self._mark_dirty)
        self.bridge.ended.connect(self._ended)

    def _start_failed(self, text: str) -> None:
        if self.session is not None:
            self.session.close()
        self.run_panel.set_state("idle", f"could not start: {text}")
        self.run_finished.emit(f"failed: {text}")

    def command(self, name: str) -> None:
        if self.session is None:
            return
        try:
            getattr(self.session, name)()
        except SessionError as exc:
            self._error(str(exc))

    def reconnect(self, instrument: str) -> None:
        session = self.session
        if session is None:
            return

        def work(progress: Callable[[int, int], None]) -> str:
            session.reconnect(instrument)
            return instrument

        task = run_in_thread(work, self)
        task.done.connect(lambda name: self.statusBar().showMessage(f"{name} reconnected", 5000))
        task.failed.connect(self._error)
        task.done.connect(lambda _: self._refresh_instruments())
        task.failed.connect(lambda _: self._refresh_instruments())

    def _state_changed(self, state: str, reason: str) -> None:
        error = self.session.error if self.session is not None else ""
        self.run_panel.set_state(state, error)
        self._refresh_instruments()

    def _progress(self, p: Progress) -> None:
        self._last_progress = p
        self.plots.set_planned_shots(p.planned)
        left = self.session.time_left_s() if self.session is not None else None
        self.run_panel.set_progress(p.ok_shots, p.planned, p.failed_shots, left)

    def _ended(self, final: str) -> None:
        self.run_panel.set_state("idle", self.session.error if self.session else "")
        if isinstance(self.session, RemoteRun) and self.session.error == SERVER_STOPPED:
            self.statusBar().showMessage(f"the run server stopped; the file {self.session.path} keeps "
                                         "every committed shot")
            self.restart_server_button.show()
            if self.server_process is not None:
                self.server_process.poll()      # reap it (see restart_server)
        self.run_panel.state_label.setText(f"{final} (file closed)")
        self._dirty = True
        self._plots_t = -math.inf          # the final numbers' plots at the next tick
        self._refresh()
        self.run_finished.emit(final)
        if self._closing:
            self.close()
        elif isinstance(self.session, RemoteRun) and self.session.error != SERVER_STOPPED:
            # the queue's next run may have started before this one's end reached us, and its
            # run_started event was then passed over (this window still followed a run)
            self.attach_to_server(force=True, ended=self.session.path)

    def _mark_dirty(self) -> None:
        self._dirty = True

    def _refresh_instruments(self) -> None:
        if self.session is not None:
            self.instruments.update_status(self.session.instrument_status())

    # --- display ----------------------------------------------------------------------------------
    def current_snapshot(self) -> MonitorSnapshot | None:
        if self.review is not None:
            return self.review.snapshot()
        if self.session is not None:
            return self.session.snapshot()
        return None

    def _refresh(self) -> None:
        """Timer: show a new snapshot in two halves on different ticks, numbers and images first,
        then the plots (at most every PLOTS_EVERY_S, the newest snapshot waiting), so that no one
        turn of the event loop draws the whole window (timers, clicks and drags wait for at most
        half of it)."""
        self._refresh_scan()
        now = time.monotonic()
        if self._plots_pending is not None and now - self._plots_t >= PLOTS_EVERY_S:
            pending, self._plots_pending = self._plots_pending, None
            self._plots_t = now
            self.plots.show_snapshot(pending)
            return
        if not self._dirty:
            return
        self._dirty = False
        snap = self.current_snapshot()
        if snap is None:
            return
        self.show_readouts(snap)
        self._plots_pending = snap
        if self.session is not None and self.review is None:
            self._refresh_instruments()

    def scan_results(self) -> dict[str, Any] | None:
        """The criteria per scan point of the run in view (``ScanMonitor.results_json``): the run
        file's final ones in review, else the live run's (None: no scan)."""
        if self.review is not None:
            scan = (self.review.results or {}).get("scan_points")
            return scan if isinstance(scan, dict) else None
        if self.session is not None:
            return self.session.scan_results()
        return None

    def _new_scan(self) -> None:
        """Another run in view: the Scan tab forgets the last one and is drawn at the next tick."""
        self.plots.show_scan(None)
        self._scan_t = -math.inf

    def _refresh_scan(self) -> None:
        """The Scan tab, when in view, at most every SCAN_EVERY_S (in-process this computes the
        points' criteria on this thread; from a run server it is the last ``scan`` event)."""
        if self.plots.currentWidget() is not self.plots.scan:
            return
        now = time.monotonic()
        if now - self._scan_t < SCAN_EVERY_S:
            return
        self._scan_t = now
        self.plots.show_scan(self.scan_results())

    def show_snapshot(self, snap: MonitorSnapshot) -> None:
        """Show ``snap`` in every panel now."""
        self._plots_pending = None
        self.show_readouts(snap)
        self.plots.show_snapshot(snap)

    def show_readouts(self, snap: MonitorSnapshot) -> None:
        """The numbers, the crosstalk line and the images of ``snap`` (the plots: PlotsPanel)."""
        info = (f"{snap.shots_counted} shots counted"
                + (f" (masks centred after {snap.warmup_shots})" if snap.counter is not None else
                   f"; centring masks: {snap.shots_seen}/{snap.warmup_shots} shots")
                + (f"; {snap.error}" if snap.error and snap.counter is not None else ""))
        if snap.result is not None:
            res = snap.result
            info += "; shots per direction " + ", ".join(f"{k}={v}" for k, v in res.n_shots.items())
            ratio = snap.splitting_ratios[0] if snap.splitting_ratios.size else float("nan")
            info += f"; splitting ratio {ratio:.3f}"
            whole = snap.indices("whole_cloud")
            if whole.size:
                # the panel's xi_R^2 is that of A and B only; the whole cloud's, beside it
                est = (res.corrected or res)["xi_R2"]
                v, e = float(est.value[whole[0]]), float(est.error[whole[0]])
                if math.isfinite(v) and v > 0:
                    info += (f"; whole cloud ξ_R² {v:.3f} ± {e:.3f} ({10 * math.log10(v):.2f} dB"
                             f"{', corrected' if res.corrected is not None else ''})")
        self.numbers.show_result(snap.result, info)
        if snap.crosstalk is not None:
            xt = snap.crosstalk
            self.crosstalk.setText(
                f"N_AB = {xt.n_ab[0]:.2f} atoms detected in both regions (σ_blur = "
                f"{self._sigma_blur():.2f} px). A coherent state could reach E_EPR A→B = "
                f"{xt.epr_bound_ab[0]:.4f}, B→A = {xt.epr_bound_ba[0]:.4f} from this alone.")
        self.images.show_snapshot(snap)

    def _sigma_blur(self) -> float:
        if self.review is not None:
            return self.review.calibration.sigma_blur_px
        if self.session is not None:
            return self.session.config.imaging_calibration.sigma_blur_px
        return float("nan")

    # --- regions ----------------------------------------------------------------------------------
    def _dragged(self, position_px: float, gap_px: float) -> None:
        self.regions.set_split(position_px, gap_px)
        self.change_regions(self.regions.plan())

    def change_regions(self, plan: RegionPlan) -> None:
        """Recount every shot so far with ``plan`` (from the file, in a thread, with progress)."""
        if self.review is not None:
            review = self.review
            self._background("recounting the run", lambda progress: review.recount(plan, progress))
        elif self.session is not None and (self.session.sequencer is not None
                                           or isinstance(self.session, RemoteRun)):
            session = self.session
            self._background("recounting the shots so far",
                             lambda progress: session.switch_regions(plan, progress))
        elif self.session is not None:
            self.session.monitor.regions = plan

    def _background(self, what: str, fn: Callable[[Callable[[int, int], None]], Any]) -> None:
        self._busy += 1
        self.progress_bar.show()
        self.progress_bar.setFormat(f"{what}: %v/%m")
        self.regions.apply_button.setEnabled(False)
        task = run_in_thread(fn, self)
        def show(i: int, n: int) -> None:
            self.progress_bar.setMaximum(max(1, n))
            self.progress_bar.setValue(i)
        task.progress.connect(show)
        task.done.connect(lambda _: self._background_done(""))
        task.failed.connect(self._background_done)

    def _background_done(self, error: str) -> None:
        self._busy -= 1
        if self._busy == 0:
            self.progress_bar.hide()
            self.regions.apply_button.setEnabled(True)
        if error:
            self._error(error)
        self._dirty = True
        self._refresh()
        self.background_finished.emit(error)

    # --- review, export ---------------------------------------------------------------------------
    def _open_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open run", "", "Run files (*.h5)")
        if path:
            self.open_review(path)

    def open_review(self, path: str | Path) -> None:
        """Show a finished (or crashed) run with the same views; regions can be changed."""
        if self.session is not None and not self.session.state.is_final:
            self._error("a run is in progress: stop it before opening another run")
            return
        try:
            review = ReviewSource(path)
        except Exception as exc:          # RunFileError, CalibrationError, ...: one clear line
            self._error(f"cannot open {path}: {exc}")
            self.background_finished.emit(f"cannot open {path}: {exc}")
            return
        self.review = review
        self.session = None
        self._new_scan()
        regions = review.default_regions()
        self.regions.set_plan(regions)
        self.run_panel.file_label.setText(f"review: {review.path} ({review.end_state}, "
                                          f"{review.n_shots} shots)")
        self.setWindowTitle(f"steerlab: {review.path.name}")
        self._background(f"reading {review.path.name}", lambda progress: review.recount(regions, progress))

    def _export_dialog(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Export report to")
        if path:
            self.export(path)

    def export(self, directory: str | Path) -> list[Path]:
        """Plots (PNG) and numbers (CSV, JSON) of the current analysis into ``directory``."""
        snap = self.current_snapshot()
        if snap is None:
            self._error("nothing to export yet")
            return []
        source = self.review.path if self.review is not None else (
            self.session.path if self.session is not None else None)
        files = export_report(Path(directory), snap, self, source=source)
        self.statusBar().showMessage(f"exported {len(files)} files to {directory}", 10000)
        return files

    # --- closing ----------------------------------------------------------------------------------
    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 (Qt API)
        session = self.session
        if isinstance(session, RemoteRun) and session.is_running:
            if self._closing:
                event.ignore()
                return
            # the run lives in the server: leaving it running is the default
            if self._confirm("Run in progress on the run server",
                             "Stop the run after the current shot? (No: it goes on in the run server; "
                             "steerlab status shows it, the window can be opened again.)"):
                try:
                    session.stop()
                except ServerError as exc:
                    self._error(str(exc))
                else:
                    self._closing = True
                    self.statusBar().showMessage("stopping the run…")
                    event.ignore()            # closes when the server reports the file closed
                    return
            session.close()
            self.save_settings()
            self.timer.stop()
            if self.queue_watcher is not None:
                self.queue_watcher.stop()
            event.accept()
            return
        if session is not None and session.is_running:
            if self._closing:
                event.ignore()
                return
            if not self._confirm("Run in progress",
                                 "A run is in progress. Stop it after the current shot and close? "
                                 "The run file stays complete."):
                event.ignore()
                return
            self._closing = True
            try:
                session.stop()
            except SessionError:
                pass
            self.statusBar().showMessage("stopping the run…")
            event.ignore()                # closes when the session reports the file closed
            return
        self.save_settings()
        self.timer.stop()
        if self.queue_watcher is not None:
            self.queue_watcher.stop()
        if session is not None:
            session.close()
        self._end_own_server()
        event.accept()

    def _end_own_server(self) -> None:
        """A run server this window started, with no run in progress and none queued, served only
        this window: shut it down (one started elsewhere, or with work left, keeps running)."""
        proc, self.server_process = self.server_process, None
        client = getattr(self.session, "client", None)
        if proc is None or proc.poll() is not None or client is None:
            return
        try:
            listing = client.queue()
            if listing.get("queue") or (client.status().get("run") or {}).get("running"):
                return
            client.call("shutdown")
        except ServerError:
            return
        try:
            proc.wait(15)
        except Exception:          # subprocess.TimeoutExpired: it ends on its own; not ours to kill
            pass
