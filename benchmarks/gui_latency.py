"""Benchmark: how late a 10 ms Qt timer in the operator window fires while the window drives a
virtual-lab run, with the acquisition in the window's process (RunSession) and through the run
server (steerlab serve, a separate process; the window only displays), beside the idle window.

Per configuration: the timer's lateness (interval - 10 ms) max, p99 and median, the window
process's CPU time (all its threads), the run's wall time, and the shot-committed-to-shown latency
(for each committed shot, the time until the window first showed numbers and images of a snapshot
whose latest shot is that one or later; median and max), and the draws (each half of a snapshot's
display, numbers and images or the visible plot tab, is one draw in one turn of the event loop). The configurations run interleaved (idle, in-process, server,
then again in the reverse order), offscreen (QT_QPA_PLATFORM=offscreen unless set).

Usage: python benchmarks/gui_latency.py [--shots 300] [--rounds 2] [--long 0]  (--long 3000 adds a
3000-shot run of each kind). Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6 import QtCore, QtWidgets  # noqa: E402

from app.client import Client  # noqa: E402
from app.gui.main_window import MainWindow  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TICK_MS = 10
TRACE: list[list[float]] | None = None    # set to a list to keep each run's tick times (profiling)


def lab(tmp: Path) -> Path:
    cfg = tmp / "lab.toml"
    cfg.write_text((ROOT / "configs" / "virtual-lab.toml").read_text()
                   .replace('data_dir = "../../runs"', f'data_dir = "{tmp / "runs"}"'))
    return cfg


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def measure(app: QtWidgets.QApplication, cfg: Path, kind: str, shots: int, idle_s: float) -> dict[str, Any]:
    """One configuration: 'idle' (the window, no run, for idle_s), 'in-process' or 'server'."""
    settings = QtCore.QSettings(str(cfg.parent / f"settings-{kind}.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(config_path=cfg, settings=settings, server=(kind == "server"),
                   confirm=lambda title, text: False)
    w.resize(1500, 900)
    w.show()
    ticks: list[float] = []
    shown: list[tuple[float, int]] = []
    committed: dict[int, float] = {}
    # the window shows a snapshot over two timer ticks (MainWindow._refresh): the numbers and
    # images (show_readouts, the "shown" time), then the plots; each half is one draw
    original_readouts = w.show_readouts
    original_plots = w.plots.show_snapshot

    render_ms: list[float] = []

    def readouts(snap: Any) -> None:
        t = time.perf_counter()
        original_readouts(snap)
        render_ms.append((time.perf_counter() - t) * 1e3)
        shown.append((time.time(), int(snap.latest_index)))

    def plots(snap: Any, every_tab: bool = False) -> None:
        t = time.perf_counter()
        original_plots(snap, every_tab=every_tab)
        render_ms.append((time.perf_counter() - t) * 1e3)

    w.show_readouts = readouts  # type: ignore[method-assign]
    w.plots.show_snapshot = plots  # type: ignore[method-assign]
    timer = QtCore.QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    done = {"final": ""}
    w.run_finished.connect(lambda final: done.__setitem__("final", final))
    sub = None
    if kind == "server":
        # the server is up before the clock starts (its start-up is not the window's latency)
        from app.labconfig import load_lab_config
        from app.remote import local_server
        client, w.server_process = local_server(load_lab_config(cfg), cfg)
        sub = client.subscribe(["shot"])
    loop = QtCore.QEventLoop()
    state = {"hooked": False, "ended_at": None}

    def poll() -> None:
        # in the event loop (no busy waiting): drain the shot events, hook the in-process session
        if kind == "in-process" and not state["hooked"] and w.session is not None:
            w.session.add_written_listener(lambda s: committed.__setitem__(s.index, time.time()))
            state["hooked"] = True
        while sub is not None:
            got = sub.get(0)
            if got is None:
                break
            event, data = got
            committed[int(data["index"])] = float(data["committed_at"])
        if done["final"] and state["ended_at"] is None:
            state["ended_at"] = time.monotonic()
        if state["ended_at"] is not None and time.monotonic() - state["ended_at"] > 1.0:
            loop.quit()                       # the last snapshot has reached the window

    poller = QtCore.QTimer()
    poller.setInterval(20)
    poller.timeout.connect(poll)
    cpu0, t0 = time.process_time(), time.monotonic()
    timer.start()
    if kind == "idle":
        QtCore.QTimer.singleShot(int(idle_s * 1000), loop.quit)
    else:
        w.start_run({"config": str(cfg), "shots": shots, "state": "squeezed", "order": "xyz", "block": 1,
                     "out": f"{kind}-{int(time.time() * 1000)}.h5"})
        poller.start()
    loop.exec()
    poller.stop()
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    timer.stop()
    late = [(b - a) * 1e3 - TICK_MS for a, b in zip(ticks, ticks[1:])]
    if TRACE is not None:
        TRACE.append(list(ticks))
    lat = []
    for k, t_commit in committed.items():
        first = next((t for t, idx in shown if idx >= k and t >= t_commit), None)
        if first is not None:
            lat.append((first - t_commit) * 1e3)
    if sub is not None:
        sub.close()
    w.close()
    w.deleteLater()
    app.processEvents()
    return {"kind": kind, "final": done["final"] or "idle", "shots": 0 if kind == "idle" else shots,
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "ticks": len(ticks),
            "late_max_ms": round(max(late), 1) if late else None, "late_p99_ms": round(pct(late, 0.99), 1),
            "late_median_ms": round(pct(late, 0.5), 2), "over_100ms": sum(x > 100 for x in late),
            "shown_latency_median_ms": round(statistics.median(lat), 1) if lat else None,
            "shown_latency_max_ms": round(max(lat), 1) if lat else None, "latency_shots": len(lat),
            "render_median_ms": round(statistics.median(render_ms), 1) if render_ms else None,
            "render_max_ms": round(max(render_ms), 1) if render_ms else None, "renders": len(render_ms)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--long", type=int, default=0, help="shots of one more run of each kind (0: none)")
    args = ap.parse_args()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = lab(Path(tmp))
        try:
            order = ["idle", "in-process", "server"]
            for r in range(args.rounds):
                for kind in (order if r % 2 == 0 else order[::-1]):
                    res = measure(app, cfg, kind, args.shots, idle_s=10.0)
                    results.append(res)
                    print(f"{kind:10s} {res['shots']:5d} shots: timer late max {res['late_max_ms']} ms, "
                          f"p99 {res['late_p99_ms']} ms, median {res['late_median_ms']} ms, "
                          f"{res['over_100ms']} ticks > 100 ms late; window CPU {res['cpu_s']} s in "
                          f"{res['wall_s']} s; committed -> shown median {res['shown_latency_median_ms']} ms,"
                          f" max {res['shown_latency_max_ms']} ms; {res['renders']} renders, median {res['render_median_ms']} ms,"
                          f" max {res['render_max_ms']} ms", flush=True)
            if args.long:
                for kind in ("in-process", "server"):
                    res = measure(app, cfg, kind, args.long, idle_s=0)
                    results.append(res)
                    print(f"{kind:10s} {res['shots']:5d} shots: timer late max {res['late_max_ms']} ms, "
                          f"p99 {res['late_p99_ms']} ms; window CPU {res['cpu_s']} s in {res['wall_s']} s; "
                          f"committed -> shown median {res['shown_latency_median_ms']} ms, max "
                          f"{res['shown_latency_max_ms']} ms", flush=True)
        finally:
            info = Path(tmp) / "runs" / ".steerlab-server.json"
            if info.exists():
                try:
                    Client(data_dir=Path(tmp) / "runs", timeout_s=5).call("shutdown")
                except Exception:
                    os.kill(int(json.loads(info.read_text())["pid"]), signal.SIGTERM)
                time.sleep(1.0)

    def worst(kind: str, key: str) -> float | None:
        vals = [r[key] for r in results if r["kind"] == kind and r["shots"] in (0, args.shots)
                and r[key] is not None]
        return max(vals) if vals else None

    figures = {"shots": args.shots, "rounds": args.rounds, "tick_ms": TICK_MS, "runs": results}
    for kind in ("idle", "in-process", "server"):
        for key in ("late_max_ms", "late_p99_ms", "shown_latency_median_ms", "shown_latency_max_ms", "cpu_s"):
            figures[f"{kind}_{key}"] = worst(kind, key)
    print(f"server: worst max lateness {figures['server_late_max_ms']} ms (target <= 100), worst p99 "
          f"{figures['server_late_p99_ms']} ms (target <= 20); in-process {figures['in-process_late_max_ms']}"
          f" / {figures['in-process_late_p99_ms']} ms; idle {figures['idle_late_max_ms']} / "
          f"{figures['idle_late_p99_ms']} ms")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
