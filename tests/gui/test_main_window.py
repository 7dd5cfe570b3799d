"""The operator window (offscreen): a virtual-lab run from the window, review, regions, export,
settings and closing during a run."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PySide6 import QtCore

from app.gui.main_window import MainWindow
from app.gui.panels import AMBER, GREEN, RED, verdict_colour
from app.runfile import open_run
from app.session import RunSession
from tests.app.test_session import lab_config, plan

pytestmark = pytest.mark.timeout(240)


def small_config_file(tmp_path: Path) -> Path:
    from tests.app.test_run_cli import small_config
    return small_config(tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> QtCore.QSettings:
    return QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("run")
    cfg = lab_config(tmp)
    with RunSession(cfg, plan(cfg, 90), "review.h5", seed=5) as s:
        s.start()
        assert s.wait(120) is not None
    return s.path


def make_window(qtbot, settings: QtCore.QSettings, config: Path | None = None, **kw) -> MainWindow:
    w = MainWindow(config_path=config, settings=settings, **kw)
    qtbot.addWidget(w)
    w.show()
    return w


def test_verdict_colours() -> None:
    assert verdict_colour(0.7, 0.1) == GREEN
    assert verdict_colour(0.9, 0.1) == AMBER
    assert verdict_colour(1.1, 0.1) == RED
    assert verdict_colour(0.95, 0.1, certified=True) == GREEN


def test_a_run_from_the_window(qtbot, tmp_path: Path, settings: QtCore.QSettings) -> None:
    w = make_window(qtbot, settings, small_config_file(tmp_path))
    w.run_panel.shots_spin.setValue(60)
    with qtbot.waitSignal(w.run_finished, timeout=120_000) as finished:
        qtbot.mouseClick(w.run_panel.buttons["start"], QtCore.Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: w.run_panel.state_label.text() == "running", timeout=30_000)
        assert not w.run_panel.buttons["start"].isEnabled() and w.run_panel.buttons["pause"].isEnabled()
    assert finished.args == ["completed"]
    assert w.run_panel.progress.value() == 60
    w._dirty = True
    w._refresh()
    text = w.numbers.values["E_Ent"].text()
    assert "±" in text
    assert w.instruments.details["microwave"].toolTip().startswith("Rohde&Schwarz, SMA100B")
    with open_run(w.session.path) as run:
        assert run.n_shots == 60 and run.end_state == "completed"
        e_ent = run.results["criteria"][0]["corrected"]["E_Ent"]["value"]
        p_ent = run.results["criteria"][0]["corrected"]["E_Ent"]["p_value"]
    shown = float(text.split("±")[0])
    assert shown == pytest.approx(e_ent, abs=0.0006)
    assert float(w.numbers.p_values["E_Ent"].text()) == pytest.approx(p_ent, rel=0.06, abs=1e-12)  # 2 digits
    # the whole cloud's squeezing beside the A-and-B value of the panel
    snap = w.current_snapshot()
    whole = int(snap.indices("whole_cloud")[0])
    xi = float((snap.result.corrected or snap.result)["xi_R2"].value[whole])
    assert f"whole cloud ξ_R² {xi:.3f}" in w.numbers.info.text()


def test_review_shows_the_runs_numbers_and_regions_recount(qtbot, settings: QtCore.QSettings,
                                                           finished_run: Path, tmp_path: Path) -> None:
    w = make_window(qtbot, settings)
    with qtbot.waitSignal(w.background_finished, timeout=60_000) as done:
        w.open_review(finished_run)
    assert done.args == [""]
    with open_run(finished_run) as run:
        stored = run.results["criteria"][0]
    snap = w.current_snapshot()
    assert snap is not None and snap.result is not None
    assert snap.result["E_Ent"].value[0] == pytest.approx(stored["E_Ent"]["value"], rel=1e-9)
    assert w.images.images[2].image is not None and w.images.overlays[2].isVisible()
    # the convergence plot shows the optimised criteria bias-corrected (corrected result's history)
    w.plots.setCurrentIndex(0)
    w.plots.show_snapshot(snap)
    conv = w.plots.convergence.getPlotItem()
    _, y = w.plots._items[(id(conv), "E_Ent")][0].getData()
    assert y[-1] == pytest.approx(snap.history["corrected.E_Ent.bias_corrected"][-1], rel=1e-12)
    assert y[-1] != snap.history["corrected.E_Ent"][-1]
    # move the gap by entry: every shot is recounted with the new split
    w.regions.position.setValue(2.0)
    w.regions.gap.setValue(3.0)
    with qtbot.waitSignal(w.background_finished, timeout=60_000):
        w.regions.apply_button.click()
    snap2 = w.current_snapshot()
    assert snap2.geometries[0].position_px == 2.0 and snap2.geometries[0].gap_px == 3.0
    assert snap2.splitting_ratios[0] > snap.splitting_ratios[0]         # A (x below the gap) grew
    # dragging the gap lines does the same
    lines = w.images.lines
    assert all(line.isVisible() for line in lines)
    with qtbot.waitSignal(w.background_finished, timeout=60_000):
        lines[1].setValue(lines[1].value() + 2.0)
        lines[1].sigPositionChangeFinished.emit(lines[1])
    assert w.current_snapshot().geometries[0].gap_px == pytest.approx(5.0, abs=0.02)
    # export
    files = w.export(tmp_path / "report")
    names = {f.name for f in files}
    assert {"numbers.csv", "numbers.json", "images.png", "splitting_ratio.png"} <= names
    report = json.loads((tmp_path / "report" / "numbers.json").read_text())
    assert report["chosen"]["E_Ent"]["value"] == pytest.approx(
        float(w.current_snapshot().result["E_Ent"].value[0]))
    assert all((tmp_path / "report" / n).stat().st_size > 1000 for n in names if n.endswith(".png"))
    # the CSV names raw and corrected values as steerlab analyze does, corrected first
    with (tmp_path / "report" / "numbers.csv").open() as fh:
        header = next(csv.reader(fh))
    raw, corrected = header.index("E_Ent_raw"), header.index("E_Ent_corrected")
    assert corrected < raw and "E_Ent_corrected_verdict" in header and "E_Ent" not in header
    chosen = report["geometries"][0]
    assert chosen["E_Ent_raw"] == pytest.approx(float(w.current_snapshot().result["E_Ent"].value[0]))


def test_bad_review_file_is_one_clear_message(qtbot, settings: QtCore.QSettings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all")
    w = make_window(qtbot, settings)
    w.open_review(bad)
    assert "not an HDF5 file" in w.run_panel.error_label.text()
    assert w.review is None


def test_settings_persist(qtbot, settings: QtCore.QSettings, tmp_path: Path) -> None:
    cfg = small_config_file(tmp_path)
    w = make_window(qtbot, settings, cfg)
    w.run_panel.shots_spin.setValue(123)
    w.run_panel.state_combo.setCurrentText("coherent")
    w.close()
    w2 = make_window(qtbot, settings)
    assert w2.run_panel.config_edit.text() == str(cfg)
    assert w2.run_panel.shots_spin.value() == 123
    assert w2.run_panel.state_combo.currentText() == "coherent"


def test_closing_during_a_run_asks_then_stops_with_the_file_intact(qtbot, settings: QtCore.QSettings,
                                                                  tmp_path: Path) -> None:
    answers: list[bool] = [False, True]
    asked: list[str] = []

    def confirm(title: str, text: str) -> bool:
        asked.append(title)
        return answers.pop(0)

    w = make_window(qtbot, settings, small_config_file(tmp_path), confirm=confirm)
    w.run_panel.shots_spin.setValue(100_000)
    w.run_panel.buttons["start"].click()
    qtbot.waitUntil(lambda: w.session is not None and w.session.last_progress is not None
                    and w.session.last_progress.ok_shots >= 10, timeout=60_000)
    assert not w.close()                    # "no": the window stays, the run goes on
    assert w.isVisible() and w.session.state.value == "running"
    with qtbot.waitSignal(w.run_finished, timeout=60_000) as finished:
        w.close()                           # "yes": stop after the current shot, then close
    assert finished.args == ["stopped"] and asked == ["Run in progress", "Run in progress"]
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=10_000)
    with open_run(w.session.path) as run:
        assert run.end_state == "stopped" and run.closed_cleanly
        assert np.all(np.diff(run.table()["index"]) == 1)


def test_instrument_errors_stay_in_sight(qtbot) -> None:
    """A dropped instrument shows DISCONNECTED and its last error inside the panel's width (the
    details wrap in one column; nothing to scroll sideways to)."""
    from app.gui.panels import InstrumentsPanel
    from app.session import InstrumentStatus

    panel = InstrumentsPanel()
    qtbot.addWidget(panel)
    panel.resize(420, 400)
    panel.show()
    error = ("microwave: reply '<\x00garbage>' to ':SOUR1:PHAS?' from TCPIP0::127.0.0.1::5025::SOCKET "
             "is not a number; run paused")
    panel.update_status({
        "microwave": InstrumentStatus("microwave", "TCPIP0::127.0.0.1::5025::SOCKET", False,
                                      "Rohde&Schwarz,SMA100B,1419.8888K02/100001,5.00.122.24",
                                      {"mw.phase_deg": 90.0}, error),
        "camera": InstrumentStatus("camera", "viky", True, "steerlab VirtualCamera VLAB0001",
                                   {"width": 256}, ""),
    })
    assert panel.table.item(0, 1).text() == "DISCONNECTED"
    assert panel.table.item(0, 1).foreground().color().name() == RED.lower()
    label = panel.details["microwave"]
    assert "last error: " + error in label.toolTip() and "phase_deg=90.0" in label.toolTip()
    assert RED.lower() in label.text().lower()
    assert "&lt;\x00garbage&gt;" in label.text()       # instrument text is escaped, not rendered
    assert panel.table.horizontalScrollBarPolicy() == QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff
    # the row is tall enough for the wrapped text
    assert panel.table.rowHeight(0) >= label.heightForWidth(panel.table.columnWidth(2))
    assert "last error" not in panel.details["camera"].text()


def test_plots_are_redrawn_at_most_every_plots_every_s_and_the_last_snapshot_at_the_end(
        qtbot, settings: QtCore.QSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Numbers and images follow every snapshot; the plot tab waits PLOTS_EVERY_S between draws
    (the newest snapshot waiting), and the run's end draws the last one at once."""
    from app.gui import main_window as mw
    w = make_window(qtbot, settings)
    snaps = iter(range(100))
    current = {"snap": None}
    readouts, plots = [], []
    monkeypatch.setattr(w, "current_snapshot", lambda: current["snap"])
    monkeypatch.setattr(w, "show_readouts", lambda s: readouts.append(s))
    monkeypatch.setattr(w.plots, "show_snapshot", lambda s, every_tab=False: plots.append(s))
    clock = {"t": 1000.0}
    monkeypatch.setattr(mw, "time", SimpleNamespace(monotonic=lambda: clock["t"]))   # the window's clock only

    def new_snapshot() -> None:
        current["snap"] = next(snaps)
        w._dirty = True
        w._refresh()                       # the numbers and images of it

    new_snapshot()
    w._refresh()                           # the plots: the first draw is not held back
    assert readouts == [0] and plots == [0]
    for k in (1, 2):
        clock["t"] += 0.2
        new_snapshot()
        w._refresh()                       # within PLOTS_EVERY_S of the last draw: waits
    assert readouts == [0, 1, 2] and plots == [0]
    clock["t"] += mw.PLOTS_EVERY_S
    w._refresh()
    assert plots == [0, 2]                 # the newest waiting snapshot, not every one
    clock["t"] += 0.1
    new_snapshot()                         # 3: its plots wait ...
    w._plots_t = -np.inf                   # ... until the run ends (what _ended does)
    w._refresh()
    assert plots == [0, 2, 3]


def test_the_numbers_columns_keep_their_width_whatever_the_values(qtbot) -> None:
    """Labels sized by their text resized the whole right-hand column (and every plot) at each
    refresh; the columns have fixed widths that hold the widest values."""
    from app.gui.panels import P_TEMPLATE, VALUE_TEMPLATE, NumbersPanel
    n = NumbersPanel()
    qtbot.addWidget(n)
    n.show()
    widths = []
    for value, p in (("—", "—"), ("0.4 ± 0.1", "0.1"), (VALUE_TEMPLATE, P_TEMPLATE)):
        for label in n.values.values():
            label.setText(value)
        for label in n.raw.values():
            label.setText(value)
        for label in n.p_values.values():
            label.setText(p)
        n.layout().activate()
        widths.append(n.minimumSizeHint().width())
    assert widths[0] == widths[1] == widths[2]
    for label in list(n.values.values()) + list(n.raw.values()) + list(n.p_values.values()):
        assert label.fontMetrics().horizontalAdvance(label.text()) <= label.width()


def test_a_convergence_band_is_one_polygon_between_its_edges(qtbot) -> None:
    from app.gui.views import PlotsPanel
    p = PlotsPanel()
    qtbot.addWidget(p)
    conv = p.convergence.getPlotItem()
    x = np.arange(1.0, 51.0)
    y, err = 0.7 + 0.3 / np.sqrt(x), 0.5 / np.sqrt(x)
    p._curve(conv, x, y, err, "E_Ent", "E_Ent", band=True)
    band = p._series(conv, "E_Ent", "E_Ent", band=True)[1]
    r = band.fill.path().boundingRect()
    assert (r.left(), r.right()) == pytest.approx((1.0, 50.0))
    assert (r.top(), r.bottom()) == pytest.approx(((y - err).min(), (y + err).max()))
    assert band.fill.path().elementCount() == 2 * x.size and band.fill.isVisible()
    p._curve(conv, x[:0], y[:0], err[:0], "E_Ent", "E_Ent", band=True)
    assert not band.fill.isVisible()
