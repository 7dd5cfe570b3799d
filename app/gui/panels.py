"""Small panels of the main window: run control, instruments, live numbers, region editor."""
from __future__ import annotations

import html
import math
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from analysis.criteria import CERTIFYING, CriteriaResult
from analysis.geometries import Checkerboard, Geometry, RandomCells, Split, Stripes
from analysis.monitor import RegionPlan

GREEN, AMBER, RED, GREY = "#1b7f3b", "#b36b00", "#b3261e", "#666666"
LIVE_STATES = ("running", "pausing", "paused", "stopping", "aborting")


def verdict_colour(value: float, error: float, certified: bool | None = None) -> str:
    """Green: below 1 (certified, or value + 2 error < 1); amber: below 1 within 2 errors; red: >= 1."""
    if not math.isfinite(value):
        return GREY
    if certified or (certified is None and value + 2 * error < 1):
        return GREEN
    return AMBER if value < 1 else RED


class RunPanel(QtWidgets.QGroupBox):
    """Configuration, plan (state, direction cycle, shots), output name, run commands and progress."""

    start_requested = QtCore.Signal(dict)
    command = QtCore.Signal(str)          # pause | resume | stop | abort
    browse_config = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Run", parent)
        form = QtWidgets.QFormLayout(self)
        self.config_edit = QtWidgets.QLineEdit()
        browse = QtWidgets.QPushButton("…")
        browse.setFixedWidth(28)
        browse.clicked.connect(self.browse_config)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.config_edit)
        row.addWidget(browse)
        form.addRow("Configuration", row)
        self.state_combo = QtWidgets.QComboBox()
        self.state_combo.addItems(["squeezed", "coherent"])
        form.addRow("State", self.state_combo)
        self.cycle_combo = QtWidgets.QComboBox()
        self.cycle_combo.addItem("x, y, z interleaved", ("xyz", 1))
        self.cycle_combo.addItem("blocks of 10 (x, y, z)", ("xyz", 10))
        self.cycle_combo.addItem("blocks of 50 (x, y, z)", ("xyz", 50))
        form.addRow("Directions", self.cycle_combo)
        self.shots_spin = QtWidgets.QSpinBox()
        self.shots_spin.setRange(3, 10_000_000)
        self.shots_spin.setSingleStep(30)
        self.shots_spin.setValue(300)
        form.addRow("Shots", self.shots_spin)
        self.out_edit = QtWidgets.QLineEdit()
        self.out_edit.setPlaceholderText("automatic name in the data directory")
        form.addRow("Output file", self.out_edit)
        buttons = QtWidgets.QGridLayout()
        self.buttons: dict[str, QtWidgets.QPushButton] = {}
        for i, name in enumerate(("start", "pause", "resume", "stop", "abort")):
            b = QtWidgets.QPushButton(name.capitalize())
            b.setObjectName(f"{name}_button")
            self.buttons[name] = b
            buttons.addWidget(b, i // 3, i % 3)
            if name == "start":
                b.clicked.connect(self._start)
            else:
                b.clicked.connect(lambda _=False, n=name: self.command.emit(n))
        form.addRow(buttons)
        self.state_label = QtWidgets.QLabel("idle")
        self.state_label.setObjectName("state_label")
        form.addRow("State", self.state_label)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setFormat("%v / %m shots")
        form.addRow("Progress", self.progress)
        self.time_label = QtWidgets.QLabel("")
        form.addRow("Time left", self.time_label)
        self.file_label = QtWidgets.QLabel("")
        self.file_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.file_label.setWordWrap(True)
        form.addRow("File", self.file_label)
        self.error_label = QtWidgets.QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(f"color: {RED}")
        form.addRow(self.error_label)
        self.set_state("idle")

    def params(self) -> dict[str, Any]:
        """The run the panel describes: config, state, order, block, shots, out."""
        order, block = self.cycle_combo.currentData()
        return {"config": self.config_edit.text().strip(), "state": self.state_combo.currentText(),
                "order": order, "block": block, "shots": self.shots_spin.value(),
                "out": self.out_edit.text().strip() or None}

    def _start(self) -> None:
        self.start_requested.emit(self.params())

    def set_state(self, state: str, error: str = "") -> None:
        """Enable exactly the commands the run state allows."""
        allowed = {"idle": {"start"}, "running": {"pause", "stop", "abort"},
                   "pausing": {"resume", "stop", "abort"}, "paused": {"resume", "stop", "abort"},
                   "stopping": {"abort"}, "aborting": set()}.get(state, {"start"})
        for name, b in self.buttons.items():
            b.setEnabled(name in allowed)
        for w in (self.config_edit, self.state_combo, self.cycle_combo, self.shots_spin, self.out_edit):
            w.setEnabled(state not in LIVE_STATES)
        self.state_label.setText(state)
        self.error_label.setText(error)

    def set_progress(self, done: int, planned: int, failed: int, left_s: float | None) -> None:
        self.progress.setMaximum(max(1, planned))
        self.progress.setValue(done)
        self.progress.setFormat(f"%v / %m shots" + (f", {failed} failed" if failed else ""))
        self.time_label.setText("" if left_s is None else f"{left_s:.0f} s")


class InstrumentsPanel(QtWidgets.QGroupBox):
    """Connection, identity, key settings and last error per instrument, with reconnect buttons."""

    reconnect_requested = QtCore.Signal(str)
    KEYS = {"microwave": ("mw.frequency_hz", "mw.level_dbm", "mw.phase_deg", "frequency_hz",
                          "level_dbm", "phase_deg", "output_enabled"),
            "timing_card": ("card.status", "version", "board", "start_mode"),
            "camera": ("cam.width", "cam.height", "width", "height", "pixel_format", "exposure_s")}

    NAMES = ("microwave", "timing_card", "camera")

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Instruments", parent)
        # one row per instrument; the details (identity, settings read back, last error) wrap in
        # one cell so that the last error is never scrolled out of sight
        self.table = QtWidgets.QTableWidget(len(self.NAMES), 3)
        self.table.setHorizontalHeaderLabels(["instrument", "link", "identity, settings, last error"])
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        for col in (0, 1):
            header.setSectionResizeMode(col, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.table.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.details: dict[str, QtWidgets.QLabel] = {}
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.table)
        row = QtWidgets.QHBoxLayout()
        self.reconnect_buttons: dict[str, QtWidgets.QPushButton] = {}
        for i, name in enumerate(self.NAMES):
            b = QtWidgets.QPushButton(f"Reconnect {name.replace('_', ' ')}")
            b.clicked.connect(lambda _=False, n=name: self.reconnect_requested.emit(n))
            self.reconnect_buttons[name] = b
            row.addWidget(b)
            self.table.setItem(i, 0, QtWidgets.QTableWidgetItem(name.replace("_", " ")))
            label = QtWidgets.QLabel()
            label.setWordWrap(True)
            label.setTextFormat(QtCore.Qt.TextFormat.RichText)
            label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setContentsMargins(4, 2, 4, 2)
            self.table.setCellWidget(i, 2, label)
            self.details[name] = label
        layout.addLayout(row)

    def update_status(self, status: dict[str, Any]) -> None:
        for i, name in enumerate(self.NAMES):
            st = status.get(name)
            if st is None:
                continue
            link = QtWidgets.QTableWidgetItem("connected" if st.connected else "DISCONNECTED")
            link.setForeground(QtGui.QColor(GREEN if st.connected else RED))
            self.table.setItem(i, 1, link)
            keys = [k for k in self.KEYS[name] if k in st.settings]
            settings = ", ".join(f"{k.split('.')[-1]}={st.settings[k]}" for k in keys)
            identity = st.identity.replace(",", ", ")      # *IDN? fields, so that the line can wrap
            lines = [html.escape(identity), f"<span style='color:{GREY}'>{html.escape(settings)}</span>"]
            plain = [identity, settings]
            if st.last_error:
                lines.append(f"<span style='color:{RED}'>last error: {html.escape(st.last_error)}</span>")
                plain.append(f"last error: {st.last_error}")
            label = self.details[name]
            label.setText("<br>".join(lines))
            label.setToolTip("\n".join(plain))
        width = self.table.columnWidth(2)
        for i, name in enumerate(self.NAMES):
            label = self.details[name]
            self.table.setRowHeight(i, max(label.heightForWidth(width), label.sizeHint().height()) + 4)


#: the widest texts of the numbers' columns (value +- error; a p-value with its verdict note)
VALUE_TEMPLATE = "-000.000 ± 00.000"
P_TEMPLATE = "1.2e-05 unresolved"


class NumbersPanel(QtWidgets.QGroupBox):
    """N, xi_R^2 (dB), E_Ent, E_EPR A->B and B->A with errors, colour-coded against 1."""

    ROWS = (("N", "N (atoms)"), ("xi_R2", "ξ_R² of A and B"), ("xi_R2_dB", "ξ_R² of A and B (dB)"),
            ("E_Ent", "E_Ent"), ("E_EPR_AB", "E_EPR A→B"), ("E_EPR_BA", "E_EPR B→A"),
            ("product_A", "non-inferred product A"), ("product_B", "non-inferred product B"))

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Monitor (chosen regions)", parent)
        grid = QtWidgets.QGridLayout(self)
        font = QtGui.QFont()
        font.setPointSize(font.pointSize() + 3)
        font.setBold(True)
        grid.addWidget(QtWidgets.QLabel("corrected (detection noise, PSF)"), 0, 1)
        p_head = QtWidgets.QLabel("p")
        p_head.setToolTip("one-sided p-value of 'true value >= 1' (bias-corrected value, split-sample "
                          "error for the optimised criteria); certified when p < 1 - confidence; "
                          "'unresolved': the imaging's crosstalk alone could give a violation "
                          "this large, so none is claimed")
        grid.addWidget(p_head, 0, 2)
        grid.addWidget(QtWidgets.QLabel("raw"), 0, 3)
        self.values: dict[str, QtWidgets.QLabel] = {}
        self.raw: dict[str, QtWidgets.QLabel] = {}
        self.p_values: dict[str, QtWidgets.QLabel] = {}
        for r, (key, label) in enumerate(self.ROWS, start=1):
            grid.addWidget(QtWidgets.QLabel(label), r, 0)
            v = QtWidgets.QLabel("—")
            v.setObjectName(f"value_{key}")
            v.setFont(font)
            v.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(v, r, 1)
            if key in CERTIFYING:
                p = QtWidgets.QLabel("—")
                p.setStyleSheet(f"color: {GREY}")
                grid.addWidget(p, r, 2)
                self.p_values[key] = p
            raw = QtWidgets.QLabel("—")
            raw.setObjectName(f"raw_{key}")
            grid.addWidget(raw, r, 3)
            self.values[key] = v
            self.raw[key] = raw
        self.info = QtWidgets.QLabel("waiting for shots")
        self.info.setWordWrap(True)
        grid.addWidget(self.info, len(self.ROWS) + 1, 0, 1, 4)
        # columns of a fixed width, wide enough for every value: labels sized by their text made
        # the whole right-hand column (and with it the images and plots) change width at every
        # refresh, and each resize repaints every plot with its axes (tens of ms on the GUI thread)
        bold, plain = QtGui.QFontMetrics(font), self.fontMetrics()
        for labels, metrics, widest in ((self.values, bold, VALUE_TEMPLATE),
                                        (self.raw, plain, VALUE_TEMPLATE),
                                        (self.p_values, plain, P_TEMPLATE)):
            width = metrics.horizontalAdvance(widest) + 6
            for lab in labels.values():
                lab.setFixedWidth(width)

    @staticmethod
    def _text(result: CriteriaResult, key: str) -> tuple[str, float, float]:
        est = result[key]
        v, e = float(est.value[0]), float(est.error[0])
        digits = 1 if key == "N" else (2 if key == "xi_R2_dB" else 3)
        return (f"{v:.{digits}f} ± {e:.{digits}f}" if math.isfinite(v) else "n/a"), v, e

    def show_result(self, result: CriteriaResult | None, info: str) -> None:
        """Main column: detection-noise-corrected values when available (else raw), colour-coded."""
        main = result.corrected if result is not None and result.corrected is not None else result
        warnings = result.to_dict(0).get("warnings", []) if result is not None else []
        self.info.setText("\n".join([info] + [f"⚠ {w}" for w in warnings]))
        _style(self.info, "color: #c00000; font-weight: bold" if warnings else "")
        for key, _ in self.ROWS:
            label, raw = self.values[key], self.raw[key]
            if result is None or main is None:
                label.setText("—")
                raw.setText("—")
                _style(label, "")
                if key in self.p_values:
                    self.p_values[key].setText("—")
                continue
            text, v, e = self._text(main, key)
            label.setText(text)
            raw.setText(self._text(result, key)[0])
            colour = ""
            if key in CERTIFYING:
                colour = verdict_colour(v, e, bool(main.certified(key)[0]))
                p = float(main[key].p_value()[0])
                unresolved = str(main.verdicts(key)[0]) == "unresolved"
                self.p_values[key].setText(f"{p:.2g}" + (" unresolved" if unresolved else ""))
            elif key in ("xi_R2", "product_A", "product_B"):
                colour = verdict_colour(v, e)
            elif key == "xi_R2_dB":
                colour = verdict_colour(10 ** (v / 10), e * math.log(10) / 10 * 10 ** (v / 10))
            _style(label, f"color: {colour}" if colour else "")


def _style(widget: QtWidgets.QWidget, sheet: str) -> None:
    """Set a style sheet only if it changes (each set re-polishes the widget: milliseconds a
    refresh on the GUI thread)."""
    if widget.styleSheet() != sheet:
        widget.setStyleSheet(sheet)


class RegionEditor(QtWidgets.QGroupBox):
    """The chosen regions: a split (axis, position, gap) or a pattern; emits a RegionPlan on Apply."""

    regions_changed = QtCore.Signal(object)
    PATTERNS = ("split", "stripes", "checkerboard", "random cells")

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Regions", parent)
        form = QtWidgets.QFormLayout(self)
        self.pattern = QtWidgets.QComboBox()
        self.pattern.addItems(self.PATTERNS)
        form.addRow("Pattern", self.pattern)
        self.axis = QtWidgets.QComboBox()
        self.axis.addItems(["x", "y"])
        form.addRow("Axis", self.axis)
        self.position = QtWidgets.QDoubleSpinBox()
        self.position.setRange(-500, 500)
        self.position.setSingleStep(0.5)
        self.position.setSuffix(" px")
        form.addRow("Gap position", self.position)
        self.gap = QtWidgets.QDoubleSpinBox()
        self.gap.setRange(0, 100)
        self.gap.setSingleStep(0.5)
        self.gap.setSuffix(" px")
        form.addRow("Gap width", self.gap)
        self.cell = QtWidgets.QDoubleSpinBox()
        self.cell.setRange(0.5, 100)
        self.cell.setValue(4.0)
        self.cell.setSuffix(" px")
        form.addRow("Period / cell", self.cell)
        self.scan_gap = QtWidgets.QDoubleSpinBox()
        self.scan_gap.setRange(0, 50)
        self.scan_gap.setValue(1.0)
        self.scan_gap.setSuffix(" px")
        form.addRow("Ratio-scan gap", self.scan_gap)
        self.apply_button = QtWidgets.QPushButton("Apply (recount all shots)")
        self.apply_button.clicked.connect(self.apply)
        form.addRow(self.apply_button)
        self.pattern.currentTextChanged.connect(self._enable)
        self.widths: tuple[float, ...] = RegionPlan().gap_widths_px
        self._enable()

    def _enable(self) -> None:
        split = self.pattern.currentText() == "split"
        self.position.setEnabled(split)
        self.gap.setEnabled(split)
        self.cell.setEnabled(not split)
        self.axis.setEnabled(self.pattern.currentText() in ("split", "stripes"))

    def set_plan(self, plan: RegionPlan) -> None:
        g = plan.chosen
        if isinstance(g, Split):
            self.pattern.setCurrentText("split")
            self.axis.setCurrentText(g.axis)
            self.position.setValue(g.position_px)
            self.gap.setValue(g.gap_px)
        self.scan_gap.setValue(plan.scan_gap_px or 0.0)
        self.widths = plan.gap_widths_px

    def set_split(self, position_px: float, gap_px: float) -> None:
        """From the draggable gap lines on the image."""
        self.pattern.setCurrentText("split")
        self.position.setValue(round(position_px, 2))
        self.gap.setValue(round(max(0.0, gap_px), 2))

    def chosen(self) -> Geometry:
        kind = self.pattern.currentText()
        if kind == "split":
            return Split(self.axis.currentText(), self.position.value(), self.gap.value())
        if kind == "stripes":
            return Stripes(self.axis.currentText(), self.cell.value())
        if kind == "checkerboard":
            return Checkerboard(self.cell.value())
        return RandomCells(self.cell.value(), seed=1)

    def plan(self) -> RegionPlan:
        g = self.chosen()
        return RegionPlan(g, self.scan_gap.value() if self.scan_gap.value() >= 0 else None,
                          self.widths if isinstance(g, Split) else ())

    def apply(self) -> None:
        self.regions_changed.emit(self.plan())


class QueuePanel(QtWidgets.QGroupBox):
    """The run server's queue: the current run, the queued runs in order, and buttons to queue the
    run panel's settings, move the selected run up or down, or remove it."""

    add_requested = QtCore.Signal()
    move_requested = QtCore.Signal(str, int)      # queued run id, new position (0 = next)
    remove_requested = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Run server queue", parent)
        v = QtWidgets.QVBoxLayout(self)
        self.current_label = QtWidgets.QLabel("no run server yet")
        self.current_label.setWordWrap(True)
        v.addWidget(self.current_label)
        self.list = QtWidgets.QListWidget()
        self.list.setMaximumHeight(110)
        v.addWidget(self.list)
        row = QtWidgets.QHBoxLayout()
        self.buttons: dict[str, QtWidgets.QPushButton] = {}
        for name, text in (("add", "Queue these settings"), ("up", "Up"), ("down", "Down"),
                           ("remove", "Remove")):
            b = QtWidgets.QPushButton(text)
            self.buttons[name] = b
            row.addWidget(b)
        v.addLayout(row)
        self.buttons["add"].clicked.connect(self.add_requested)
        self.buttons["up"].clicked.connect(lambda: self._move(-1))
        self.buttons["down"].clicked.connect(lambda: self._move(+1))
        self.buttons["remove"].clicked.connect(self._remove)
        self._ids: list[str] = []

    def show_listing(self, listing: dict[str, Any]) -> None:
        """The server's ``queue_list`` answer (or its ``queue`` event)."""
        selected = self.selected_id()
        if listing.get("server") == "stopped":
            self.current_label.setText("the run server does not answer")
            self.list.clear()
            self._ids = []
            return
        current = listing.get("current") or None
        paused = " (queue paused)" if listing.get("paused") else ""
        self.current_label.setText((f"running: {current.get('plan_source', '')} -> {current.get('file') or '…'}"
                                    if current else "no run in progress") + paused)
        self.list.clear()
        self._ids = []
        for item in listing.get("queue") or []:
            shots = item.get("shots")
            self.list.addItem(f"{item.get('id')}: {item.get('plan_source', '')}"
                              + (f", {shots} shots" if shots else "")
                              + (f", {item.get('state')}" if item.get("state") else ""))
            self._ids.append(str(item.get("id")))
        if selected in self._ids:
            self.list.setCurrentRow(self._ids.index(selected))

    def selected_id(self) -> str | None:
        row = self.list.currentRow()
        return self._ids[row] if 0 <= row < len(self._ids) else None

    def _move(self, step: int) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self._ids) and 0 <= row + step < len(self._ids):
            self.move_requested.emit(self._ids[row], row + step)

    def _remove(self) -> None:
        item = self.selected_id()
        if item is not None:
            self.remove_requested.emit(item)
