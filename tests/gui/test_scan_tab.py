"""The window's Scan tab (offscreen): the criteria of a two-axis scan run against each axis and as
a map, drawn from the run's own per-point results (live in-process, and from its file in review)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore

from app.gui.main_window import MainWindow
from app.gui.scan_view import ScanPlot, point_value
from app.runfile import open_run
from app.session import RunSession
from sequences.control import RunState
from sequences.plan import parse_plan
from tests.app.test_session import lab_config

pytestmark = pytest.mark.timeout(300)

PLAN = """
[run]
cycles = 8
[state]
atom_number_sd = 0.0
[imaging]
reference_delay_s = 5e-3
dark_delay_s = 5e-3
[scan]
combine = "product"
order = "interleaved"
repeats = 2
[[scan.axes]]
field = "imaging.tof_s"
values = [2.2e-3, 2.4e-3]
[[scan.axes]]
field = "state.kind"
values = ["squeezed", "coherent"]
"""


@pytest.fixture(scope="module")
def scan_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A finished 2 x 2 scan run of the virtual lab and its live per-point results."""
    tmp = tmp_path_factory.mktemp("scan")
    cfg = lab_config(tmp)
    plan = parse_plan(PLAN, "scan.toml", cfg.microwave_calibration)
    with RunSession(cfg, plan, "scan.h5", seed=11) as s:
        s.start()
        assert s.wait(240) is RunState.COMPLETED
        live = s.scan_results()
    assert live is not None and len(live["points"]) == 4
    return s.path, live


def _expected(data: dict, criterion: str) -> dict[tuple, tuple[float, float, bool]]:
    return {(p["values"]["imaging.tof_s"], p["values"]["state.kind"]): point_value(p, criterion, True)
            for p in data["points"]}


def test_scan_plot_draws_a_curve_per_other_axis_value_and_a_map(qtbot, scan_run: tuple[Path, dict]) -> None:
    _, live = scan_run
    plot = ScanPlot()
    qtbot.addWidget(plot)
    plot.resize(700, 450)
    plot.show()
    plot.show_scan(live)
    views = [plot.view.itemText(i) for i in range(plot.view.count())]
    assert views == ["against imaging.tof_s", "against state.kind", "map imaging.tof_s × state.kind"]
    want = _expected(live, "E_Ent")
    assert all(math.isfinite(v) and e > 0 for v, e, _ in want.values())
    # against the time of flight: one curve per state kind, each through its two points
    shown = [c for c in plot.curves if c.isVisible()]
    assert len(shown) == 2
    key = plot.key.text()
    for curve, kind in zip(shown, ("coherent", "squeezed")):        # curves in sorted label order
        assert f"state.kind = {kind}" in key
        x, y = curve.getData()
        assert list(x) == [2.2e-3, 2.4e-3]
        assert list(y) == pytest.approx([want[(t, kind)][0] for t in (2.2e-3, 2.4e-3)], rel=1e-12)
        brushes = curve.opts["symbolBrush"]
        assert len(brushes) == 2
        for b, t in zip(brushes, x):
            filled = b.color().name() != "#ffffff"
            assert filled == want[(t, kind)][2]                       # filled: certified
    assert sum(b.isVisible() for b in plot.bars) == 2
    # a text axis: the kinds as tick labels
    plot.view.setCurrentIndex(1)
    x, _ = [c for c in plot.curves if c.isVisible()][0].getData()
    assert sorted(x) == [0.0, 1.0]
    assert plot.plot.getAxis("bottom")._tickLevels == [[(0.0, "coherent"), (1.0, "squeezed")]]
    # the map: cell (time of flight i, kind j) holds that point's value
    plot.criterion.setCurrentIndex(plot.criterion.findData("E_EPR_AB"))
    plot.view.setCurrentIndex(2)
    assert plot.image.isVisible() and not any(c.isVisible() for c in plot.curves)
    grid = plot.image.image
    assert grid.shape == (2, 2)
    epr = _expected(live, "E_EPR_AB")
    for i, t in enumerate((2.2e-3, 2.4e-3)):
        for j, kind in enumerate(("coherent", "squeezed")):
            assert grid[j, i] == pytest.approx(epr[(t, kind)][0], rel=1e-12)
    # raw instead of corrected
    plot.corrected.setChecked(False)
    raw = {(p["values"]["imaging.tof_s"], p["values"]["state.kind"]): point_value(p, "E_EPR_AB", False)[0]
           for p in live["points"]}
    assert plot.image.image[0, 0] == pytest.approx(raw[(2.2e-3, "coherent")], rel=1e-12)
    assert raw[(2.2e-3, "coherent")] != epr[(2.2e-3, "coherent")][0]
    plot.show_scan(None)
    assert plot.caption.text() == "no scan in this run" and not plot.image.isVisible()


def test_review_of_a_scan_run_shows_the_files_points_and_exports_them(
        qtbot, tmp_path: Path, scan_run: tuple[Path, dict]) -> None:
    path, live = scan_run
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.show()
    with qtbot.waitSignal(w.background_finished, timeout=60_000) as done:
        w.open_review(path)
    assert done.args == [""]
    with open_run(path) as run:
        stored = run.results["scan_points"]
    assert w.scan_results() == stored
    # the file's final per-point results are the live ones at the end of the run
    assert [p["criteria"]["E_Ent"]["value"] for p in stored["points"]] == \
        pytest.approx([p["criteria"]["E_Ent"]["value"] for p in live["points"]], rel=1e-12)
    w.plots.setCurrentWidget(w.plots.scan)
    qtbot.waitUntil(lambda: w.plots.scan.caption.text().startswith("4 points"), timeout=5000)
    y = np.concatenate([c.getData()[1] for c in w.plots.scan.curves if c.isVisible()])
    assert sorted(y) == pytest.approx(sorted(v for v, _, _ in _expected(stored, "E_Ent").values()))
    files = {f.name for f in w.export(tmp_path / "report")}
    assert {"scan.png", "scan_points.json"} <= files
    assert json.loads((tmp_path / "report" / "scan_points.json").read_text()) == stored
    assert (tmp_path / "report" / "scan.png").stat().st_size > 1000
