"""The operator window as a client of the run server (`steerlab gui --server`), with the server a
real `steerlab serve` process: the window starts it, follows a run through its events and shows the
server's own numbers; closing the window leaves the run running; a server killed with SIGKILL is
shown as stopped and leaves a file with every committed shot."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore

from app.client import Client
from app.gui.main_window import MainWindow
from app.runfile import open_run
from tests.app.test_server import write_lab

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STEERLAB_LOG", str(tmp_path / "cli.log"))
    cfg = write_lab(tmp_path)
    yield cfg
    info = tmp_path / "runs" / ".steerlab-server.json"
    if info.exists():                       # the server the window started outlives it: end it
        try:
            os.kill(int(json.loads(info.read_text())["pid"]), signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass


def window(qtbot, tmp_path: Path, cfg: Path, **kw) -> MainWindow:
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(config_path=cfg, settings=settings, server=True, **kw)
    qtbot.addWidget(w)
    w.show()
    return w


def test_a_run_through_the_server_shows_the_servers_numbers(qtbot, tmp_path: Path, lab: Path) -> None:
    w = window(qtbot, tmp_path, lab, confirm=lambda title, text: False)     # closing: leave it running
    w.run_panel.shots_spin.setValue(45)
    w.regions.position.setValue(1.0)                         # regions chosen before Start ...
    w.regions.gap.setValue(4.0)
    with qtbot.waitSignal(w.run_finished, timeout=180_000) as finished:
        w.run_panel.buttons["start"].click()
    assert finished.args == ["completed"]
    assert w.server_process is not None                      # the window started the server
    qtbot.waitUntil(lambda: w.current_snapshot() is not None and w.current_snapshot().shots_counted == 45,
                    timeout=20_000)
    snap = w.current_snapshot()
    with open_run(w.session.path) as run:
        assert run.n_shots == 45 and run.end_state == "completed"
        saved = run.results["criteria"][0]
        chosen = run.results["regions"][0]
    assert (chosen["position_px"], chosen["gap_px"]) == (1.0, 4.0)     # ... are the server run's
    assert snap.geometries[0].position_px == 1.0 and snap.geometries[0].gap_px == 4.0
    assert snap.result.to_dict(0)["E_Ent"]["value"] == pytest.approx(saved["E_Ent"]["value"], rel=1e-12)
    w._dirty = True
    w._refresh()
    assert "45 shots counted" in w.numbers.info.text()
    # a second, long run; the window is closed during it: the run goes on in the server
    w.run_panel.shots_spin.setValue(3000)
    w.run_panel.buttons["start"].click()
    qtbot.waitUntil(lambda: w.session.is_running and w.session.last_progress is not None, timeout=60_000)
    qtbot.waitUntil(lambda: w.session.time_left_s() is not None, timeout=10_000)
    assert w.session.time_left_s() > 0                       # the server's estimate, counted down
    w.close()
    status = Client(data_dir=tmp_path / "runs", timeout_s=5).status()
    assert status["run"]["running"] and status["run"]["file"] == str(w.session.path)
    # a new window follows the run in progress
    w2 = window(qtbot, tmp_path, lab, confirm=lambda title, text: True)     # closing: stop it
    assert w2.session is not None and w2.session.path == w.session.path
    assert w2.session.time_left_s() is not None and w2.session.time_left_s() > 0   # from the status
    qtbot.waitUntil(lambda: w2.session.snapshot() is not None, timeout=20_000)
    with qtbot.waitSignal(w2.run_finished, timeout=60_000) as finished:
        w2.run_panel.buttons["stop"].click()
    assert finished.args == ["stopped"]
    w2.close()


def test_a_server_the_window_started_ends_with_it_when_no_run_is_left(qtbot, tmp_path: Path,
                                                                      lab: Path) -> None:
    w = window(qtbot, tmp_path, lab)
    w.run_panel.shots_spin.setValue(30)
    with qtbot.waitSignal(w.run_finished, timeout=180_000):
        w.run_panel.buttons["start"].click()
    proc = w.server_process
    # a second run joins the server this window started: it stays the window's to end
    with qtbot.waitSignal(w.run_finished, timeout=180_000):
        w.run_panel.buttons["start"].click()
    assert w.server_process is proc
    w.close()
    assert proc.wait(30) == 0
    assert not (tmp_path / "runs" / ".steerlab-server.json").exists()


def test_a_killed_server_is_shown_as_stopped_and_the_file_keeps_its_shots(qtbot, tmp_path: Path,
                                                                          lab: Path) -> None:
    w = window(qtbot, tmp_path, lab)
    w.run_panel.shots_spin.setValue(3000)
    w.run_panel.buttons["start"].click()
    qtbot.waitUntil(lambda: w.session is not None and w.session.last_progress is not None
                    and w.session.last_progress.ok_shots >= 30, timeout=120_000)
    pid = int(json.loads((tmp_path / "runs" / ".steerlab-server.json").read_text())["pid"])
    with qtbot.waitSignal(w.run_finished, timeout=30_000):
        os.kill(pid, signal.SIGKILL)
    assert "server stopped" in w.run_panel.error_label.text() + w.run_panel.state_label.text()
    committed = w.session.last_progress.ok_shots
    with open_run(w.session.path) as run:                     # as the server left it
        assert run.n_shots >= committed - 1
        first = next(iter(run.iter_shots()))
        assert first.frames is not None and np.isfinite(first.frames).all()
    # the window offers to start the server again
    assert w.restart_server_button.isVisibleTo(w)
    w.restart_server_button.click()
    qtbot.waitUntil(lambda: not w.restart_server_button.isVisibleTo(w), timeout=60_000)
    assert Client(data_dir=tmp_path / "runs", timeout_s=5).ping()


def test_the_queue_panel_adds_reorders_and_removes_runs(qtbot, tmp_path: Path, lab: Path) -> None:
    w = window(qtbot, tmp_path, lab, confirm=lambda title, text: False)
    panel = w.queue_panel
    w.run_panel.shots_spin.setValue(3000)
    panel.buttons["add"].click()              # starts the server; the run starts; the window follows it
    qtbot.waitUntil(lambda: w.session is not None and w.session.is_running, timeout=60_000)
    for shots in (30, 2000):          # the run that will start next is long: still running when looked at
        w.run_panel.shots_spin.setValue(shots)
        panel.buttons["add"].click()
        qtbot.waitUntil(lambda n=shots: any(f"{n} shots" in panel.list.item(i).text()
                                            for i in range(panel.list.count())), timeout=30_000)
    client = Client(data_dir=tmp_path / "runs", timeout_s=5)
    first, second = [i["id"] for i in client.queue()["queue"]]
    panel.list.setCurrentRow(1)
    panel.buttons["up"].click()
    qtbot.waitUntil(lambda: [i["id"] for i in client.queue()["queue"]] == [second, first], timeout=10_000)
    qtbot.waitUntil(lambda: panel.list.count() == 2 and panel.list.item(0).text().startswith(second),
                    timeout=10_000)
    panel.list.setCurrentRow(1)
    panel.buttons["remove"].click()
    qtbot.waitUntil(lambda: [i["id"] for i in client.queue()["queue"]] == [second], timeout=10_000)
    # the current run stopped: the queued one starts and the window follows it
    running = w.session.path
    w.run_panel.buttons["stop"].click()
    qtbot.waitUntil(lambda: w.session is not None and w.session.path != running and w.session.is_running,
                    timeout=60_000)
    assert client.status()["queue"]["current"]["id"] == second


def test_the_window_follows_the_next_queued_run_when_its_start_was_passed_over(qtbot, tmp_path: Path,
                                                                             lab: Path) -> None:
    """The queue watcher's ``run_started`` can reach the window before the end of the run it follows
    (two subscriptions, two threads): the window then still follows a run and passes the event
    over. When that run's end arrives, the window looks for the server's next run itself."""
    w = window(qtbot, tmp_path, lab, confirm=lambda title, text: False)
    w.run_panel.shots_spin.setValue(3000)
    w.queue_panel.buttons["add"].click()
    qtbot.waitUntil(lambda: w.session is not None and w.session.is_running, timeout=60_000)
    w.run_panel.shots_spin.setValue(2000)
    w.queue_panel.buttons["add"].click()
    client = Client(data_dir=tmp_path / "runs", timeout_s=5)
    qtbot.waitUntil(lambda: len(client.queue()["queue"]) == 1, timeout=30_000)
    (second,) = [i["id"] for i in client.queue()["queue"]]
    assert w.queue_watcher is not None
    w.queue_watcher.run_started.disconnect(w._server_run_started)     # the event, passed over
    first_path = w.session.path
    client.stop()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:      # no Qt events meanwhile: the end is not yet delivered
        st = client.status()
        if ((st.get("queue") or {}).get("current") or {}).get("id") == second and st["run"]["running"]:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the server did not start the queued run")
    with qtbot.waitSignal(w.run_finished, timeout=30_000) as finished:
        pass
    assert finished.args == ["stopped"]
    qtbot.waitUntil(lambda: w.session is not None and w.session.path != first_path and w.session.is_running,
                    timeout=10_000)
    assert str(w.session.path) == client.status()["run"]["file"]
