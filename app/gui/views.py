"""Images with region overlays and draggable gap lines; convergence and scan plots (pyqtgraph)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from analysis.criteria import CriteriaResult
from analysis.geometries import MIN_REGION_FRACTION, Split
from app.gui.scan_view import ScanPlot
from analysis.monitor import MonitorSnapshot

pg.setConfigOptions(antialias=True, imageAxisOrder="row-major")
LEVELS_TOLERANCE = 0.1   # relative change of the image colour scale's top before it is moved
MAX_POINTS = 400   # points per convergence curve drawn (the history is thinned beyond)

TOP = 2.4          # upper end of the criteria plots (data up to 2, the legend row above)
COLOURS = {"E_Ent": "#6a3d9a", "E_EPR_AB": "#1f78b4", "E_EPR_BA": "#e31a1c", "xi_R2": "#33a02c",
           "product_A": "#a6cee3", "product_B": "#fb9a99", "N_A": "#1f78b4", "N_B": "#e31a1c"}


class ImagesPanel(QtWidgets.QWidget):
    """|2> and |1> atom-number images (latest shot or ensemble average) with the A/B masks.

    On the |2> image the gap edges of a split are draggable lines; ``split_dragged(position_px,
    gap_px)`` reports the new split in the geometry frame (|2> pixels from the |2> cloud centre).
    """

    split_dragged = QtCore.Signal(float, float)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        top = QtWidgets.QHBoxLayout()
        self.mode = QtWidgets.QComboBox()
        self.mode.addItems(["latest shot", "ensemble average"])
        top.addWidget(QtWidgets.QLabel("Show"))
        top.addWidget(self.mode)
        self.masks = QtWidgets.QCheckBox("masks")
        self.masks.setChecked(True)
        top.addWidget(self.masks)
        self.caption = QtWidgets.QLabel("")
        top.addWidget(self.caption, 1)
        layout.addLayout(top)
        self.glw = pg.GraphicsLayoutWidget()
        layout.addWidget(self.glw, 1)
        self.plots, self.images, self.overlays = {}, {}, {}
        for col, state in enumerate((2, 1)):
            p = self.glw.addPlot(row=0, col=col, title=f"|{state}⟩ atoms per pixel")
            p.setAspectLocked(True)
            p.invertY(True)
            img = pg.ImageItem()
            over = pg.ImageItem()
            over.setZValue(5)
            p.addItem(img)
            p.addItem(over)
            self.plots[state], self.images[state], self.overlays[state] = p, img, over
        self.colorbar = pg.ColorBarItem(colorMap="viridis", interactive=False, width=12)
        self.colorbar.setImageItem([self.images[2], self.images[1]])
        self.glw.addItem(self.colorbar, row=0, col=2)
        # items are created once and updated: removing pyqtgraph items from a scene over and over
        # crashes PySide6 6.12 (a None refcount bug in itemChange), so nothing is ever removed
        self.lines: list[pg.InfiniteLine] = []
        for _ in range(2):
            line = pg.InfiniteLine(pos=0.0, angle=90, movable=True, pen=pg.mkPen("w", width=1.5),
                                   hoverPen=pg.mkPen("y", width=2))
            line.setZValue(10)
            line.setVisible(False)
            line.sigPositionChangeFinished.connect(self._dragged)
            self.plots[2].addItem(line)
            self.lines.append(line)
        self._frame: tuple[float, float] | None = None   # (image centre, scale) along the split axis
        self._axis = "x"
        self._snapshot: MonitorSnapshot | None = None
        self._shown_levels: tuple[float, float] | None = None
        self._mask_key: object = None
        self._zoomed: object = None
        self.mode.currentIndexChanged.connect(lambda _: self.show_snapshot(self._snapshot))
        self.masks.toggled.connect(lambda _: self.show_snapshot(self._snapshot))

    def image_item(self, state: int) -> pg.ImageItem:
        return self.images[state]

    def show_snapshot(self, snap: MonitorSnapshot | None) -> None:
        self._snapshot = snap
        if snap is None:
            return
        average = self.mode.currentIndex() == 1
        for state in (2, 1):
            img = None
            if average:
                img = snap.mean_n2 if state == 2 else snap.mean_n1
            elif snap.latest_images is not None:
                img = snap.latest_images.image(state).atoms
            if img is not None:
                self.images[state].setImage(img, autoLevels=False)
        levels = self._levels(snap, average)
        if levels is not None and (self._shown_levels is None
                                   or abs(levels[1] / self._shown_levels[1] - 1.0) > LEVELS_TOLERANCE):
            # the colour scale moves only when the top level drifts by > 10 %: a steady scale to
            # read, and its axis is not redrawn at every snapshot
            self._shown_levels = levels
            self.colorbar.setLevels(levels)
        self.caption.setText("ensemble average of %d shots" % snap.shots_seen if average else
                             f"shot {snap.latest_index} ({snap.latest_direction})")
        self._show_masks(snap)

    def _levels(self, snap: MonitorSnapshot, average: bool) -> tuple[float, float] | None:
        ref = snap.mean_n2 if snap.mean_n2 is not None else None
        if ref is None:
            return None
        hi = float(np.percentile(ref, 99.9)) * (1.0 if average else 1.6)
        return (-0.1 * hi, max(hi, 1e-3))

    def _show_masks(self, snap: MonitorSnapshot) -> None:
        counter = snap.counter
        show = self.masks.isChecked() and counter is not None
        for state in (2, 1):
            self.overlays[state].setVisible(show)
        key = (id(counter), snap.geometries[0] if snap.geometries else None, show)
        if key == self._mask_key:
            return                       # same masks: keep the overlay and the lines being dragged
        self._mask_key = key
        for line in self.lines:
            line.setVisible(False)
        if not show or counter is None:
            return
        if self._zoomed is not counter:            # frame the clouds once per set of masks
            self._zoomed = counter
            hx, hy = counter.roi_half_px
            for state in (2, 1):
                c = counter.clouds[state]
                kx, ky = counter.scale(state)
                self.plots[state].setRange(xRange=(c.centre_x_px - 2.5 * hx * kx, c.centre_x_px + 2.5 * hx * kx),
                                           yRange=(c.centre_y_px - 2.5 * hy * ky, c.centre_y_px + 2.5 * hy * ky),
                                           padding=0)
        for state in (2, 1):
            w_a, w_b = counter.weights(0, state)
            rgba = np.zeros(w_a.shape + (4,), dtype=np.uint8)
            rgba[..., 0] = 255 * (w_a > 0)
            rgba[..., 2] = 255 * (w_b > 0)
            rgba[..., 3] = (70 * np.clip(w_a + w_b, 0, 1)).astype(np.uint8)
            self.overlays[state].setImage(rgba, autoLevels=False, levels=(0, 255))
        g = snap.geometries[0]
        if isinstance(g, Split):
            c = counter.clouds[2]
            kx, ky = counter.scale(2)
            centre, scale = (c.centre_x_px, kx) if g.axis == "x" else (c.centre_y_px, ky)
            self._frame, self._axis = (centre, scale), g.axis
            for line, edge in zip(self.lines, g.edges_px):
                line.setAngle(90 if g.axis == "x" else 0)
                line.setValue(centre + scale * edge)
                line.setVisible(True)

    def _dragged(self, _line: pg.InfiniteLine) -> None:
        if self._frame is None or len(self.lines) != 2:
            return
        centre, scale = self._frame
        a, b = sorted((line.value() - centre) / scale for line in self.lines)
        self.split_dragged.emit((a + b) / 2.0, b - a)


class _Bars:
    """+-1 sigma error bars of one curve."""

    def __init__(self, plot: pg.PlotItem, colour: str) -> None:
        self.item = pg.ErrorBarItem(x=np.zeros(1), y=np.zeros(1), height=np.zeros(1),
                                    pen=pg.mkPen(colour))
        plot.addItem(self.item)

    def show(self, x: np.ndarray, y: np.ndarray, err: np.ndarray) -> None:
        self.item.setVisible(bool(x.size))
        if x.size:
            self.item.setData(x=x, y=y, height=2 * err)


class _Band:
    """+-1 sigma of one curve as a translucent band (readable with hundreds of points)."""

    def __init__(self, plot: pg.PlotItem, colour: str) -> None:
        edge, fill = QtGui.QColor(colour), QtGui.QColor(colour)
        edge.setAlpha(90)
        fill.setAlpha(55)
        # PlotCurveItem, not PlotDataItem: the latter drops its data when drawn without a pen
        self.lo, self.hi = pg.PlotCurveItem(pen=pg.mkPen(edge)), pg.PlotCurveItem(pen=pg.mkPen(edge))
        # one closed polygon per update: pyqtgraph's FillBetweenItem rebuilds its path from both
        # curves' paths at each of their changes (twice per update), the largest cost of a
        # convergence-plot refresh in a 3000-shot run (benchmarks/gui_latency.py)
        self.fill = QtWidgets.QGraphicsPathItem()
        self.fill.setBrush(pg.mkBrush(fill))
        self.fill.setPen(pg.mkPen(None))
        self.fill.setZValue(-1)
        plot.addItem(self.lo)
        plot.addItem(self.hi)
        plot.addItem(self.fill)

    def show(self, x: np.ndarray, y: np.ndarray, err: np.ndarray) -> None:
        self.lo.setData(x, y - err)
        self.hi.setData(x, y + err)
        if x.size:
            self.fill.setPath(pg.arrayToQPath(np.r_[x, x[::-1]], np.r_[y + err, (y - err)[::-1]]))
        self.fill.setVisible(bool(x.size))


_Errors = _Bars | _Band


class PlotsPanel(QtWidgets.QTabWidget):
    """Convergence vs shot number, splitting-ratio scan (Fig. 2a/3a), gap-width scan (Fig. 3b/3c)."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.convergence = pg.PlotWidget(title="Convergence (chosen regions)")
        self.ratio = pg.PlotWidget(title="Splitting-ratio scan")
        self.gap = pg.GraphicsLayoutWidget()
        self.gap_epr = self.gap.addPlot(row=0, col=0, title="E_EPR vs gap width")
        self.gap_atoms = self.gap.addPlot(row=1, col=0, title="atoms in A and B")
        self.scan = ScanPlot()
        for w, name in ((self.convergence, "Convergence"), (self.ratio, "Splitting ratio"),
                        (self.gap, "Gap width"), (self.scan, "Scan")):
            self.addTab(w, name)
        for p, xl in ((self.convergence.getPlotItem(), "shots"), (self.ratio.getPlotItem(), "N_A / N"),
                      (self.gap_epr, "gap width (px)"), (self.gap_atoms, "gap width (px)")):
            p.showGrid(x=True, y=True, alpha=0.2)
            p.setLabel("bottom", xl)
            # one row along the top, above the data: the y ranges below end at 2.4 where the
            # criteria shown run to 2 (a box in a corner covered the curves)
            p.addLegend(offset=(10, 2), colCount=5, brush=pg.mkBrush(255, 255, 255, 215),
                        pen=pg.mkPen(190, 190, 190), labelTextColor="k")
        for p in (self.convergence.getPlotItem(), self.ratio.getPlotItem(), self.gap_epr):
            p.addLine(y=1.0, pen=pg.mkPen("k", style=QtCore.Qt.PenStyle.DashLine))
        self._items: dict[tuple[int, str], tuple[pg.PlotDataItem, _Errors]] = {}
        self._snapshot: MonitorSnapshot | None = None
        self._shown: dict[int, MonitorSnapshot | None] = {}     # tab index -> snapshot it shows
        self.planned_shots = 0
        self._conv_right = 0.0
        # only the tab in view is drawn; the others catch up when chosen (each costs render time
        # on the GUI thread, which a live run's timers and clicks share)
        self.currentChanged.connect(lambda _: self._tab_changed())
        self._scan: dict[str, Any] | None = None
        self._scan_shown: object = None
        self.convergence.setBackground("w")
        self.ratio.setBackground("w")
        self.gap.setBackground("w")

    def _series(self, plot: pg.PlotItem, key: str, name: str,
                band: bool = False) -> tuple[pg.PlotDataItem, _Errors]:
        """The (curve, errors) of one quantity on one plot, created on first use, then reused (items
        are never removed: see docs/gui.md). ``band``: the +-1 sigma errors as a shaded band (for
        hundreds of points), else as error bars."""
        k = (id(plot), key)
        if k not in self._items:
            colour = COLOURS[key]
            if band:
                errors: _Errors = _Band(plot, colour)
                curve = plot.plot([], [], pen=pg.mkPen(colour, width=2), name=name)
            else:
                errors = _Bars(plot, colour)
                curve = plot.plot([], [], pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=4,
                                  symbolBrush=colour, name=name)
            self._items[k] = (curve, errors)
        return self._items[k]

    def _curve(self, plot: pg.PlotItem, x: np.ndarray, y: np.ndarray, err: np.ndarray, key: str,
               name: str, band: bool = False) -> None:
        curve, errors = self._series(plot, key, name, band)
        ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(err)
        curve.setData(x[ok], y[ok])
        errors.show(x[ok], y[ok], err[ok])

    def _hide(self, plot: pg.PlotItem) -> None:
        for (pid, _), (curve, errors) in self._items.items():
            if pid == id(plot):
                curve.setData([], [])
                errors.show(np.zeros(0), np.zeros(0), np.zeros(0))

    def _tab_changed(self) -> None:
        self.show_snapshot(self._snapshot)
        self.show_scan(self._scan)

    def show_scan(self, data: dict[str, Any] | None, every_tab: bool = False) -> None:
        """The scan monitor's per-point results (``ScanMonitor.results_json``; None: no scan),
        drawn when the Scan tab is in view (or now with ``every_tab``)."""
        self._scan = data
        if (every_tab or self.currentWidget() is self.scan) and self._scan_shown is not data:
            self._scan_shown = data
            self.scan.show_scan(data)

    def set_planned_shots(self, planned: int) -> None:
        """The run's planned number of shots: the convergence plot's x axis spans it from the start
        (a fixed axis is not redrawn with every snapshot)."""
        self.planned_shots = max(0, int(planned))

    def show_snapshot(self, snap: MonitorSnapshot | None, every_tab: bool = False) -> None:
        """Draw ``snap`` on the tab in view (the others when they are chosen, or all of them now
        with ``every_tab``, e.g. to export them)."""
        self._snapshot = snap
        if snap is None:
            return
        for tab in (range(3) if every_tab else [self.currentIndex()]):
            if tab > 2 or self._shown.get(tab) is snap:
                continue
            self._shown[tab] = snap
            res = snap.result.corrected if snap.result is not None and snap.result.corrected is not None \
                else snap.result
            if tab == 0:
                self._show_convergence(snap)
            elif res is None:
                for p in ((self.ratio.getPlotItem(),) if tab == 1 else (self.gap_epr, self.gap_atoms)):
                    self._hide(p)
            elif tab == 1:
                self._show_ratio(snap, res)
            else:
                self._show_gap(snap, res)

    def _show_convergence(self, snap: MonitorSnapshot) -> None:
        conv = self.convergence.getPlotItem()
        h = snap.history
        if "shots" not in h:
            self._hide(conv)
            return
        shots = h["shots"]
        # at most MAX_POINTS points per curve (every k-th and the last): a band of thousands of
        # points costs tens of ms to fill at each redraw and shows nothing more at this width
        keep = np.unique(np.r_[np.arange(0, shots.size, max(1, -(-shots.size // MAX_POINTS))), shots.size - 1]) \
            if shots.size > MAX_POINTS else slice(None)
        pre = "corrected." if "corrected.E_Ent" in h else ""
        x = shots[keep]
        for key, name in (("E_Ent", "E_Ent"), ("E_EPR_AB", "E_EPR A→B"), ("E_EPR_BA", "E_EPR B→A")):
            # bias-corrected (split-sample) where the history has it, as the ratio plot and figures
            k = pre + key + (".bias_corrected" if pre + key + ".bias_corrected" in h else "")
            self._curve(conv, x, h[k][keep], h[k + ("_error" if k.endswith("bias_corrected") else ".error")][keep],
                        key, name, band=True)
        xi = 10 ** (h[pre + "xi_R2_dB"][keep] / 10)
        self._curve(conv, x, xi, xi * np.log(10) / 10 * h[pre + "xi_R2_dB.error"][keep], "xi_R2",
                    "ξ_R²", band=True)
        title = "Convergence (chosen regions" + (", corrected)" if pre else ")")
        if conv.titleLabel.text != title:
            conv.setTitle(title)
        # the x axis: the planned run (or the shots so far, if more), changed only when outgrown
        last = float(shots[-1]) if shots.size else 0.0
        right = float(max(self.planned_shots, last, 1))
        if right != self._conv_right:
            self._conv_right = right
            conv.setRange(xRange=(0.0, right), yRange=(0.0, TOP), padding=0)

    def _show_ratio(self, snap: MonitorSnapshot, res: CriteriaResult) -> None:
        ratio = self.ratio.getPlotItem()
        idx = snap.indices("ratio_scan")
        # only where both regions hold atoms (near 0 and 1 one region is nearly empty: off-scale)
        r = snap.splitting_ratios
        idx = idx[np.isfinite(r[idx]) & (r[idx] > MIN_REGION_FRACTION) & (r[idx] < 1 - MIN_REGION_FRACTION)]
        if idx.size:
            x = r[idx]
            for key, name in (("E_Ent", "E_Ent"), ("E_EPR_AB", "E_EPR A→B"), ("E_EPR_BA", "E_EPR B→A"),
                              ("product_A", "product A"), ("product_B", "product B")):
                value, error = res[key].shown()
                self._curve(ratio, x, value[idx], error[idx], key, name)
            ratio.setYRange(0, TOP)
            ratio.setXRange(MIN_REGION_FRACTION, 1 - MIN_REGION_FRACTION)
        else:
            self._hide(ratio)

    def _show_gap(self, snap: MonitorSnapshot, res: CriteriaResult) -> None:
        gidx = snap.indices("gap_scan")
        if gidx.size:
            widths = np.array([snap.geometries[i].gap_px for i in gidx])
            for key, name in (("E_EPR_AB", "E_EPR A→B"), ("E_EPR_BA", "E_EPR B→A")):
                value, error = res[key].shown()
                self._curve(self.gap_epr, widths, value[gidx], error[gidx], key, name)
            self.gap_epr.setYRange(0, TOP)
            if snap.counter is not None and snap.mean_n1 is not None and snap.mean_n2 is not None:
                counts = snap.counter.count(snap.mean_n1, snap.mean_n2)
                zero = np.zeros(gidx.size)
                self._curve(self.gap_atoms, widths, counts.n_a[gidx], zero, "N_A", "N_A")
                self._curve(self.gap_atoms, widths, counts.n_b[gidx], zero, "N_B", "N_B")
        else:
            self._hide(self.gap_epr)
            self._hide(self.gap_atoms)
