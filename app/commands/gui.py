"""Open the operator window (on the virtual lab by default), or review a run file in it.

Without a display (no $DISPLAY / $WAYLAND_DISPLAY) use `steerlab run` instead, or
`QT_QPA_PLATFORM=offscreen steerlab gui --shots N --screenshot window.png`, which runs N shots in the
window off screen, saves a picture of it and exits.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from app.signals import stop_then_abort

PROG = "steerlab gui"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="lab configuration (default: the last one used, else the "
                        "virtual lab, configs/virtual-lab.toml)")
    parser.add_argument("--review", metavar="RUN.h5", help="open a run file for review")
    parser.add_argument("--shots", type=int, help="start a run of this many shots at once")
    parser.add_argument("--state", choices=("squeezed", "coherent"), help="state for --shots")
    parser.add_argument("--screenshot", metavar="PNG",
                        help="after the run (or the review) finishes, save the window and exit")
    parser.add_argument("--in-process", action="store_true",
                        help="run the acquisition inside the window's process instead of through the "
                             "data directory's run server (default: the server, started if none runs; "
                             "the window only displays, and closing it can leave a run running)")


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("QT_QPA_PLATFORM") or sys.platform in ("win32", "darwin"))


def run(args: argparse.Namespace) -> int:
    if not _has_display():
        print(f"{PROG}: no display ($DISPLAY is not set). Run headless with `steerlab run`, or set "
              f"QT_QPA_PLATFORM=offscreen together with --screenshot.", file=sys.stderr)
        return 2
    if args.review and not Path(args.review).is_file():
        print(f"{PROG}: {args.review}: file not found", file=sys.stderr)
        return 2
    from PySide6 import QtCore, QtWidgets

    from app.gui.main_window import MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("steerlab")
    app.setOrganizationName("steerlab")
    window = MainWindow(config_path=args.config, settings=settings_for(args.config),
                        confirm=(lambda title, text: True) if args.screenshot else None,
                        server=not args.in_process)
    if args.screenshot:
        window.resize(1500, 900)
    window.show()
    status = {"code": 0}

    def snap_and_quit(error: str = "", code: int = 1) -> None:
        window._dirty = True
        window._refresh()
        if args.screenshot:
            window.grab().save(args.screenshot)
            print(f"{PROG}: saved {args.screenshot}")
        if error:
            print(f"{PROG}: {error}", file=sys.stderr)
            status["code"] = code
        window.close()
        app.quit()

    def on_run_finished(final: str) -> None:
        if final.startswith("failed: "):
            # could not start (bad input, instruments unreachable): one line, non-zero
            QtCore.QTimer.singleShot(0, lambda: snap_and_quit(final[len("failed: "):], 2))
        else:
            QtCore.QTimer.singleShot(300, lambda: snap_and_quit("" if final == "completed" else
                                                                f"run {final}", 1))

    if args.review:
        if args.screenshot:
            window.background_finished.connect(lambda error: snap_and_quit(error, 2))
        # inside the event loop: a file that fails at once must still reach snap_and_quit's quit()
        QtCore.QTimer.singleShot(0, lambda: window.open_review(args.review))
    elif args.shots:
        if args.state:
            window.run_panel.state_combo.setCurrentText(args.state)
        window.run_panel.shots_spin.setValue(args.shots)
        if args.screenshot:
            window.run_finished.connect(on_run_finished)
        QtCore.QTimer.singleShot(0, window.run_panel.buttons["start"].click)
    elif args.screenshot:
        QtCore.QTimer.singleShot(500, snap_and_quit)

    # SIGINT/SIGTERM: as closing the window (stop after the current shot, file closed), again: abort.
    # Python runs signal handlers only when the interpreter runs: a timer gives it the chance.
    def on_stop() -> None:
        window._confirm = lambda title, text: True
        window.close()

    def on_abort() -> None:
        if window.session is not None and window.session.is_running:
            window.command("abort")

    wake = QtCore.QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(200)
    with stop_then_abort(on_stop, on_abort):
        code = app.exec()
    wake.stop()
    return status["code"] or int(code)


def settings_for(config: str | None) -> Any:
    """The window's remembered settings: one file per configuration directory (so labs sharing a
    user account keep theirs apart), ``$XDG_CONFIG_HOME/steerlab/<directory hash>.ini``; the
    default virtual lab uses ``default.ini``."""
    import hashlib

    from PySide6 import QtCore
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "steerlab"
    if config:
        key = hashlib.sha256(str(Path(config).resolve().parent).encode()).hexdigest()[:12]
        name = f"lab-{key}.ini"
    else:
        name = "default.ini"
    return QtCore.QSettings(str(base / name), QtCore.QSettings.Format.IniFormat)
