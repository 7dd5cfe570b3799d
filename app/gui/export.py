"""Export report: the window's plots as PNG and every geometry's numbers as CSV and JSON."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from PySide6 import QtWidgets

from analysis.geometries import Split
from analysis.monitor import MonitorSnapshot
from app.offline.exports import explicit_columns


def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def numbers(snap: MonitorSnapshot) -> list[dict[str, Any]]:
    """One row per geometry: index, kind, name, split parameters, splitting ratio, then every
    criterion corrected first and raw, with the explicit column names of steerlab analyze
    (app/offline/exports.py: ``E_Ent_corrected``, ``E_Ent_corrected_error``, ..., ``E_Ent_raw``;
    NaN and missing as empty)."""
    rows = []
    res = snap.result
    for i, g in enumerate(snap.geometries):
        row: dict[str, Any] = {"index": i, "kind": snap.kinds[i] if i < len(snap.kinds) else "",
                               "name": g.name}
        if isinstance(g, Split):
            row.update(axis=g.axis, position_px=g.position_px, gap_px=g.gap_px)
        if i < snap.splitting_ratios.size:
            row["splitting_ratio"] = _num(snap.splitting_ratios[i])
        if res is not None:
            row.update(explicit_columns(res.to_dict(i)))
        rows.append(row)
    return rows


def export_report(directory: Path, snap: MonitorSnapshot, window: QtWidgets.QWidget, *,
                  source: Path | None = None) -> list[Path]:
    """Write a PNG per plot tab, images.png, window.png, numbers.csv and numbers.json, and for a
    scan run scan.png and scan_points.json (the criteria per scan point); returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    plots = getattr(window, "plots", None)
    scan_results = getattr(window, "scan_results", None)
    scan = scan_results() if callable(scan_results) else None
    if plots is not None:
        plots.show_snapshot(snap, every_tab=True)
        plots.show_scan(scan, every_tab=True)
        for k in range(plots.count()):
            widget = plots.widget(k)
            if widget is plots.scan and scan is None:
                continue                  # not a scan run
            name = plots.tabText(k).lower().replace(" ", "_")
            path = directory / f"{name}.png"
            if widget.size().width() < 50:
                widget.resize(800, 500)
            widget.grab().save(str(path))
            written.append(path)
    images = getattr(window, "images", None)
    if images is not None:
        path = directory / "images.png"
        images.grab().save(str(path))
        written.append(path)
    if scan is not None:
        path = directory / "scan_points.json"
        path.write_text(json.dumps(scan, indent=1), encoding="utf-8")
        written.append(path)
    path = directory / "window.png"
    window.grab().save(str(path))
    written.append(path)
    rows = numbers(snap)
    csv_path = directory / "numbers.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        fields: list[str] = []
        for r in rows:
            fields += [k for k in r if k not in fields]
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if v is None else v for k, v in r.items()})
    written.append(csv_path)
    report = {"source": str(source) if source else None, "shots_counted": snap.shots_counted,
              "geometries": rows,
              "chosen": snap.result.to_dict(0) if snap.result is not None else None}
    if snap.crosstalk is not None:
        report["crosstalk_chosen"] = {"n_ab": _num(snap.crosstalk.n_ab[0]),
                                      "epr_bound_ab": _num(snap.crosstalk.epr_bound_ab[0]),
                                      "epr_bound_ba": _num(snap.crosstalk.epr_bound_ba[0])}
    json_path = directory / "numbers.json"
    json_path.write_text(json.dumps(report, indent=1, allow_nan=False), encoding="utf-8")
    written.append(json_path)
    return written
