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

PROG = "steerlab gui"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="lab configuration (default: the last one used, else the "
                        "virtual lab, configs/virtual-lab.toml)")
    parser.add_argument("--review", metavar="RUN.h5", help="open a run file for review")
    parser.add_argument("--shots", type=int, help="start a run of this many shots at once")
    parser.add_argument("--state", choices=("squeezed", "coherent"), help="state for --shots")
    parser.add_argument("--screenshot", metavar="PNG",
                        help="after the run (or the review) finishes, save the window and exit")


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
    window = MainWindow(config_path=args.config,
                        confirm=(lambda title, text: True) if args.screenshot else None)
    if args.screenshot:
        window.resize(1500, 900)
    window.show()
    status = {"code": 0}

    def snap_and_quit(error: str = "") -> None:
        window._dirty = True
        window._refresh()
        if args.screenshot:
            window.grab().save(args.screenshot)
            print(f"{PROG}: saved {args.screenshot}")
        if error:
            print(f"{PROG}: {error}", file=sys.stderr)
            status["code"] = 1
        window.close()
        app.quit()

    if args.review:
        window.open_review(args.review)
        if args.screenshot:
            window.background_finished.connect(snap_and_quit)
    elif args.shots:
        if args.state:
            window.run_panel.state_combo.setCurrentText(args.state)
        window.run_panel.shots_spin.setValue(args.shots)
        QtCore.QTimer.singleShot(0, window.run_panel.buttons["start"].click)
        if args.screenshot:
            window.run_finished.connect(
                lambda final: QtCore.QTimer.singleShot(
                    300, lambda: snap_and_quit(final[len("failed: "):] if final.startswith("failed") else "")))
    code = app.exec()
    return status["code"] or int(code)
