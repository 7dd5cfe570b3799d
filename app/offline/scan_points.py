"""Criteria per scan point of a run with a ``[scan]`` (docs/run-plans.md), offline.

Each point's shots are analysed on their own (``RunAnalysis(rows=...)``): their own mean images,
cloud centres and masks (a time-of-flight scan moves and grows the cloud), then at fixed,
pre-chosen splitting ratios: E_Ent at 0.5, E_EPR A->B at ``ratio`` and B->A at ``1 - ratio``, and
the squeezing xi_R^2 of the whole cloud, each with its error, p-value and verdict (corrected first,
raw beside it). ``write_scan_points`` writes them as CSV + JSON and a PNG (criterion against the
first axis, one line per value of the others; a product of two axes also as a map of E_Ent).
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from analysis.geometries import Split
from app.offline.analysis import RunAnalysis
from app.runfile import RunFileError, open_run
from sequences.scan import point_indices

CRITERIA = (("E_Ent", "half"), ("E_EPR_AB", "ratio"), ("E_EPR_BA", "one_minus_ratio"),
            ("xi_R2", "half"))


def scan_of(path: str | Path) -> tuple[dict[str, Any] | None, NDArray[np.int64]]:
    """The plan's scan (``plan_json["scan"]``, None without one) and every row's scan point
    (-1: none): the typed column where the file has it, the shot's settings otherwise."""
    with open_run(path) as run:
        scan = (run.plan or {}).get("scan")
        n = run.n_shots
        points = np.full(n, -1, dtype=np.int64)
        col = run.columns().get("scan_point")
        k = 0 if col is None else min(len(col), n)
        if col is not None and k:
            points[:k] = np.asarray(col[:k], dtype=np.int64)
        for i in range(k, n):
            v = run.shot_text(i).get("settings", {}).get("scan.point", -1)
            points[i] = v if isinstance(v, int) and not isinstance(v, bool) else -1
    return scan, points


def _entry(res: Any, key: str, g: int) -> dict[str, Any]:
    e = res[key]
    out: dict[str, Any] = {"value": _num(e.value[g]), "error": _num(e.error[g])}
    if key != "xi_R2":
        out["p_value"] = _num(e.p_value()[g])
        out["verdict"] = str(res.verdicts(key)[g])      # the one verdict engine (crosstalk guard)
    return out


def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def point_rows(path: str | Path, *, axis: str = "x", gap_px: float = 1.0, ratio: float = 0.77,
               executor: Any = None, chunk: int = 64) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the scan, one row per point): the point's number, index and value per axis (with its
    unit), its ok shots, and the criteria (``<criterion>_<corrected|raw>`` value, error, p-value,
    verdict); a point with fewer than 3 ok shots per direction gets ``skipped`` = the reason."""
    scan, points = scan_of(path)
    if not scan:
        raise RunFileError(f"{path}: the run has no [scan]; expected a run of a scan plan")
    axes = scan["axes"]
    rows = []
    n_points = int(scan.get("n_points", 0))
    for p in range(n_points):
        idx = point_indices(scan, p)
        row: dict[str, Any] = {"point": p}
        for a, i in zip(axes, idx):
            row[f"{a['field']}_index"] = i
            row[a["field"]] = a["values"][i]
        row["units"] = {a["field"]: a.get("unit", "") for a in axes}
        mask = points == p
        try:
            ra = RunAnalysis(path, executor=executor, chunk=chunk, rows=mask)
        except RunFileError as exc:
            row.update(shots=int(mask.sum()), skipped=str(exc).split(": ", 1)[-1])
            rows.append(row)
            continue
        row["shots"] = int(ra.ok.sum())
        positions = {"half": ra.position_for_ratio(0.5, axis, gap_px),
                     "ratio": ra.position_for_ratio(ratio, axis, gap_px),
                     "one_minus_ratio": ra.position_for_ratio(1 - ratio, axis, gap_px)}
        names = list(positions)
        an = ra.analyse([Split(axis, positions[k], gap_px) for k in names])
        row["splitting_ratios"] = {k: _num(an.splitting_ratios[j]) for j, k in enumerate(names)}
        for key, where in CRITERIA:
            g = names.index(where)
            for label, res in (("corrected", an.result.corrected), ("raw", an.result)):
                if res is None:
                    continue
                for field, value in _entry(res, key, g).items():
                    row[f"{key}_{label}" + ("" if field == "value" else f"_{field}")] = value
        rows.append(row)
    return scan, rows


def write_scan_points(path: str | Path, out_stem: Path, **kw: Any) -> list[Path]:
    """``point_rows`` as ``STEM.csv``, ``STEM.json`` and ``STEM.png``; returns the paths."""
    scan, rows = point_rows(path, **kw)
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields and k not in ("units", "splitting_ratios")]
    units = rows[0]["units"] if rows else {}
    header = [f"{k} [{units[k]}]" if units.get(k) else k for k in fields]
    csv_path, json_path, png = (out_stem.with_suffix(s) for s in (".csv", ".json", ".png"))
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow(["" if r.get(k) is None else r.get(k) for k in fields])
    json_path.write_text(json.dumps({"run": str(path), "scan": scan, "points": rows}, indent=1,
                                    allow_nan=False), encoding="utf-8")
    _figure(scan, rows, png)
    return [csv_path, json_path, png]


def _value(row: dict[str, Any], key: str) -> tuple[float, float]:
    for label in ("corrected", "raw"):
        v, e = row.get(f"{key}_{label}"), row.get(f"{key}_{label}_error")
        if v is not None:
            return float(v), float(e) if e is not None else math.nan
    return math.nan, math.nan


def _figure(scan: dict[str, Any], rows: list[dict[str, Any]], path: Path) -> None:
    axes = scan["axes"]
    first = axes[0]
    zip_groups = scan.get("groups") or []
    product2 = len(zip_groups) == 2    # two zip groups (or axes) in an outer product: a map
    first_of = [g[0] for g in zip_groups]
    fig = Figure(figsize=(11 if product2 else 7, 4.5))
    panels = fig.subplots(1, 2 if product2 else 1, squeeze=False)[0]
    ax = panels[0]
    others = [axes[k]["field"] for k in first_of[1:]]   # one line per value of the other groups
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[f] for f in others), []).append(r)
    numeric = all(isinstance(v, (int, float)) for v in first["values"])
    for (key, _), marker in zip(CRITERIA[:3], "osd"):
        for g, members in groups.items():
            xs = [r[first["field"]] if numeric else r[f"{first['field']}_index"] for r in members]
            ve = [_value(r, key) for r in members]
            label = key + ("" if not others else " (" + ", ".join(
                f"{f} = {v:g}" if isinstance(v, float) else f"{f} = {v}" for f, v in zip(others, g))
                + ")")
            ax.errorbar(xs, [v for v, _ in ve], yerr=[e for _, e in ve], fmt=marker + "-",
                        capsize=3, label=label)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    unit = first.get("unit", "")
    ax.set(xlabel=f"{first['field']}" + (f" ({unit})" if unit else ""),
           ylabel="criterion (corrected; < 1: certified at the bound)")
    if numeric and first["values"] and min(first["values"]) > 0 and \
            max(first["values"]) / min(first["values"]) > 50:
        ax.set_xscale("log")
    else:
        ax.locator_params(axis="x", nbins=5)
    ax.legend(fontsize=7)
    if product2:
        shape = scan["shape"]
        ya, xa = axes[first_of[0]], axes[first_of[1]]
        grid = np.full(shape, np.nan)
        for r in rows:
            grid[r[f"{ya['field']}_index"], r[f"{xa['field']}_index"]] = _value(r, "E_Ent")[0]
        m = panels[1].imshow(grid, origin="lower", aspect="auto", cmap="viridis")
        panels[1].set(xlabel=f"{xa['field']}", ylabel=f"{ya['field']}",
                      title="E_Ent at splitting ratio 0.5")
        panels[1].set_xticks(range(shape[1]), [f"{v:.3g}" if isinstance(v, float) else str(v)
                                               for v in xa["values"]], fontsize=7)
        panels[1].set_yticks(range(shape[0]), [f"{v:.3g}" if isinstance(v, float) else str(v)
                                               for v in ya["values"]], fontsize=7)
        fig.colorbar(m, ax=panels[1])
    fig.suptitle(f"criteria per scan point ({len(rows)} points)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
