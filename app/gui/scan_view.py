"""The criteria of a scan run against its scan axes: a curve per axis, or a map of two (pyqtgraph).

Input: the per-point results of the run's scan monitor (``app.scan_monitor.ScanMonitor.results_json``:
``axes`` [{field, unit}], ``points`` [{point, values {field: value}, shots_counted, criteria, error}]),
the same live in the window's process, from the run server's ``scan`` event and from a run file's
final results (``scan_points``). Values drawn: the detection-noise corrected criterion when the
points carry one and "corrected" is ticked, else the raw one; bias-corrected (the gains are
fitted on the same shots) where the estimate has a bias correction; +-1 sigma error bars; a filled
symbol where the verdict is "certified", a hollow one otherwise. A map shows the value of each
(axis 1, axis 2) cell, the cells by value index with the values as tick labels.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

CRITERIA = (("E_Ent", "E_Ent"), ("E_EPR_AB", "E_EPR A→B"), ("E_EPR_BA", "E_EPR B→A"), ("xi_R2", "ξ_R²"))
MAX_CURVES = 6     # curves drawn against one axis (one per combination of the other axes' values)
MAX_CELL_LABELS = 64   # a map up to this many cells writes value +- error in each
PALETTE = ("#1f78b4", "#e31a1c", "#33a02c", "#6a3d9a", "#ff7f00", "#b15928")


def _number(x: Any) -> float:
    """A JSON value as a float (nan for None, strings and non-finite values)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return math.nan
    return float(x) if math.isfinite(float(x)) else math.nan


def point_value(point: Mapping[str, Any], criterion: str, corrected: bool) -> tuple[float, float, bool]:
    """(value, error, certified) of one scan point's criterion (nan, nan, False when not yet
    computed); ``corrected``: the detection-noise corrected estimate where the point has one."""
    crit = point.get("criteria")
    if not isinstance(crit, Mapping):
        return math.nan, math.nan, False
    if corrected and isinstance(crit.get("corrected"), Mapping) and criterion in crit["corrected"]:
        crit = crit["corrected"]
    entry = crit.get(criterion)
    if not isinstance(entry, Mapping):
        return math.nan, math.nan, False
    value = _number(entry.get("bias_corrected"))
    if math.isnan(value):
        value = _number(entry.get("value"))
    return value, _number(entry.get("error")), entry.get("verdict") == "certified"


def axis_positions(points: Sequence[Mapping[str, Any]], field: str) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Each point's x position along ``field`` and the tick labels: the values themselves when
    they are all numbers (no ticks given), else the index of each distinct value, labelled."""
    raw = [p.get("values", {}).get(field) for p in points]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
        return np.array(raw, dtype=float), []
    distinct = sorted({str(v) for v in raw})
    return (np.array([distinct.index(str(v)) for v in raw], dtype=float),
            [(float(i), s) for i, s in enumerate(distinct)])


def _grid(points: Sequence[Mapping[str, Any]], field: str) -> tuple[list[Any], list[int]]:
    """The distinct values of ``field`` (sorted) and each point's index among them."""
    raw = [p.get("values", {}).get(field) for p in points]
    try:
        distinct = sorted(set(raw))
    except TypeError:                     # mixed types: order as strings
        distinct = sorted(set(raw), key=str)
    return distinct, [distinct.index(v) for v in raw]


def _label(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class ScanPlot(QtWidgets.QWidget):
    """A criterion of every scan point against one scan axis (a curve per combination of the other
    axes' values), or as a map over two axes."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        top = QtWidgets.QHBoxLayout()
        self.criterion = QtWidgets.QComboBox()
        for key, name in CRITERIA:
            self.criterion.addItem(name, key)
        self.view = QtWidgets.QComboBox()
        self.corrected = QtWidgets.QCheckBox("corrected")
        self.corrected.setChecked(True)
        self.caption = QtWidgets.QLabel("no scan in this run")
        for w in (QtWidgets.QLabel("Show"), self.criterion, QtWidgets.QLabel("as"), self.view, self.corrected):
            top.addWidget(w)
        top.addWidget(self.caption, 1)
        layout.addLayout(top)
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setBackground("w")
        layout.addWidget(self.glw, 1)
        self.key = QtWidgets.QLabel("")       # which curve is which (a legend would cover points)
        self.key.setTextFormat(QtCore.Qt.TextFormat.RichText)
        layout.addWidget(self.key)
        self.plot = self.glw.addPlot(row=0, col=0)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        for axis in ("bottom", "left"):
            self.plot.getAxis(axis).enableAutoSIPrefix(False)   # a field's own unit, no "(x0.001)"
        self.one = self.plot.addLine(y=1.0, pen=pg.mkPen("k", style=QtCore.Qt.PenStyle.DashLine))
        # every item made once and reused (removing pyqtgraph items crashes PySide6: views.py)
        self.curves: list[pg.PlotDataItem] = []
        self.bars: list[pg.ErrorBarItem] = []
        for colour in PALETTE[:MAX_CURVES]:
            self.curves.append(self.plot.plot([], [], pen=pg.mkPen(colour, width=2), symbol="o",
                                              symbolSize=7, symbolPen=pg.mkPen(colour)))
            bar = pg.ErrorBarItem(x=np.zeros(1), y=np.zeros(1), height=np.zeros(1), pen=pg.mkPen(colour))
            bar.setVisible(False)
            self.plot.addItem(bar)
            self.bars.append(bar)
        self.image = pg.ImageItem()
        self.image.setVisible(False)
        self.plot.addItem(self.image)
        self.colorbar = pg.ColorBarItem(colorMap="viridis", interactive=False, width=12)
        self.colorbar.setImageItem(self.image)
        self.glw.addItem(self.colorbar, row=0, col=1)
        self.colorbar.setVisible(False)
        self.cell_labels: list[pg.TextItem] = []
        for _ in range(MAX_CELL_LABELS):
            label = pg.TextItem("", color="k", anchor=(0.5, 0.5), fill=pg.mkBrush(255, 255, 255, 190))
            label.setVisible(False)
            self.plot.addItem(label)
            self.cell_labels.append(label)
        self._data: Mapping[str, Any] | None = None
        self._views: list[tuple[str, ...]] = []
        for w in (self.criterion, self.view):
            w.currentIndexChanged.connect(lambda _: self._draw())
        self.corrected.toggled.connect(lambda _: self._draw())

    def show_scan(self, data: Mapping[str, Any] | None) -> None:
        """Draw the scan results ``data`` (None or no points: "no scan in this run")."""
        self._data = data
        fields = tuple(str(a.get("field")) for a in (data or {}).get("axes", []) if isinstance(a, Mapping))
        views: list[tuple[str, ...]] = [(f,) for f in fields] + [(a, b) for i, a in enumerate(fields) for b in fields[i + 1:]]
        if views != self._views:
            self._views = views
            self.view.blockSignals(True)
            self.view.clear()
            for v in views:
                self.view.addItem(f"against {v[0]}" if len(v) == 1 else f"map {v[0]} × {v[1]}")
            self.view.blockSignals(False)
        self._draw()

    def _units(self) -> dict[str, str]:
        return {str(a.get("field")): str(a.get("unit") or "") for a in (self._data or {}).get("axes", [])
                if isinstance(a, Mapping)}

    def _draw(self) -> None:
        points = [p for p in (self._data or {}).get("points", []) if isinstance(p, Mapping)]
        k = self.view.currentIndex()
        for c, b in zip(self.curves, self.bars):
            c.setData([], [])
            c.setVisible(False)
            b.setVisible(False)
        self.image.setVisible(False)
        self.colorbar.setVisible(False)
        for label in self.cell_labels:
            label.setVisible(False)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.getAxis("bottom").setTicks(None)
        self.plot.getAxis("left").setTicks(None)
        self.key.setText("")
        if not points or not 0 <= k < len(self._views):
            self.caption.setText("no scan in this run" if not points else "")
            return
        key = str(self.criterion.currentData())
        name = self.criterion.currentText()
        counted = sum(int(c) for c in (_number(p.get("shots_counted")) for p in points) if math.isfinite(c))
        ready = [p for p in points if isinstance(p.get("criteria"), Mapping)]
        self.caption.setText(f"{len(points)} points, {len(ready)} with criteria, {counted} shots counted")
        view = self._views[k]
        values = [point_value(p, key, self.corrected.isChecked()) for p in points]
        if len(view) == 1:
            self._curves(points, view[0], values, name)
        else:
            self._map(points, view, values, name)

    def _curves(self, points: Sequence[Mapping[str, Any]], field: str,
                values: Sequence[tuple[float, float, bool]], name: str) -> None:
        x, ticks = axis_positions(points, field)
        others = [f for f in self._units() if f != field]
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, p in enumerate(points):
            groups.setdefault(tuple(_label(p.get("values", {}).get(f)) for f in others), []).append(i)
        key: list[str] = []
        for j, (label, idx) in enumerate(sorted(groups.items())[:MAX_CURVES]):
            order = sorted(idx, key=lambda i: x[i])
            xs = x[order]
            y = np.array([values[i][0] for i in order])
            err = np.array([values[i][1] for i in order])
            certified = [values[i][2] for i in order]
            ok = np.isfinite(xs) & np.isfinite(y)
            colour = PALETTE[j]
            curve = self.curves[j]
            curve.setData(xs[ok], y[ok], symbolBrush=[pg.mkBrush(colour if c else "w")
                                                      for c, good in zip(certified, ok) if good])
            curve.setVisible(True)
            if others:
                key.append(f"<span style='color:{colour}'>&#9679;</span> "
                           + ", ".join(f"{f} = {v}" for f, v in zip(others, label)))
            good = ok & np.isfinite(err)
            if good.any():
                self.bars[j].setData(x=xs[good], y=y[good], height=2 * err[good])
                self.bars[j].setVisible(True)
        if len(groups) > MAX_CURVES:
            key.append(f"(first {MAX_CURVES} of {len(groups)} combinations; choose a map)")
        self.key.setText("&nbsp;&nbsp;".join(key) + ("<br>" if key else "")
                         + "filled: certified; hollow: not certified")
        unit = self._units().get(field, "")
        self.plot.setTitle(f"{name} against {field}")
        self.plot.setLabel("bottom", field + (f" ({unit})" if unit else ""))
        self.plot.setLabel("left", name)
        if ticks:
            self.plot.getAxis("bottom").setTicks([ticks])
        self.one.setVisible(True)
        self.plot.setAspectLocked(False)
        self.plot.enableAutoRange()

    def _map(self, points: Sequence[Mapping[str, Any]], view: tuple[str, ...],
             values: Sequence[tuple[float, float, bool]], name: str) -> None:
        (xv, xi), (yv, yi) = _grid(points, view[0]), _grid(points, view[1])
        grid = np.full((len(yv), len(xv)), np.nan)
        for (v, _, _), i, j in zip(values, xi, yi):
            grid[j, i] = v
        if len(values) <= MAX_CELL_LABELS:
            for label, (v, e, certified), i, j in zip(self.cell_labels, values, xi, yi):
                if math.isfinite(v):
                    label.setText(f"{v:.2f} ± {e:.2f}" + (" ✓" if certified else ""))
                    label.setPos(float(i), float(j))
                    label.setVisible(True)
        finite = grid[np.isfinite(grid)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        self.image.setImage(np.nan_to_num(grid, nan=lo), levels=(lo, hi if hi > lo else lo + 1e-9))
        self.image.setRect(QtCore.QRectF(-0.5, -0.5, len(xv), len(yv)))
        self.image.setVisible(True)
        self.colorbar.setLevels((lo, hi if hi > lo else lo + 1e-9))
        self.colorbar.setVisible(True)
        units = self._units()
        for axis, field, vals in (("bottom", view[0], xv), ("left", view[1], yv)):
            unit = units.get(field, "")
            self.plot.setLabel(axis, field + (f" ({unit})" if unit else ""))
            self.plot.getAxis(axis).setTicks([[(float(i), _label(v)) for i, v in enumerate(vals)]])
        self.plot.setTitle(f"{name} per scan point (✓ certified)")
        self.plot.showGrid(x=False, y=False)
        self.one.setVisible(False)
        self.plot.setRange(xRange=(-0.5, len(xv) - 0.5), yRange=(-0.5, len(yv) - 0.5), padding=0)
