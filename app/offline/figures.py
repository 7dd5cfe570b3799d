"""The paper's figures from offline analyses (matplotlib, Agg): Fig. 2a, 2b, 3a, 3b/3c.

Geometries whose smaller region holds less than ``MIN_FRACTION`` of the atoms are left out of the
plots (their criteria are dominated by a handful of atoms and the noise correction).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.geometries import Split
from analysis.regions import RegionCounter
from app.offline.analysis import Analysis, RunAnalysis

MIN_FRACTION = 0.1
COLOURS = {"squeezed": "#1f78b4", "coherent": "#e31a1c"}


def _usable(a: Analysis) -> np.ndarray:
    r = a.splitting_ratios
    return np.isfinite(r) & (r > MIN_FRACTION) & (r < 1 - MIN_FRACTION)


def _errorbar(ax: Axes, x: np.ndarray, a: Analysis, key: str, **kw: object) -> None:
    est = a.best[key]
    ok = _usable(a) & np.isfinite(est.value)
    ax.errorbar(x[ok], est.value[ok], yerr=est.error[ok], capsize=2, ms=4, **kw)  # type: ignore[arg-type]


def _label(run: RunAnalysis) -> str:
    return f"{run.path.stem} ({run.state})"


def fig2a(scans: Sequence[tuple[RunAnalysis, Analysis]], path: Path) -> Path:
    """E_Ent vs splitting ratio for every run (squeezed and coherent overlaid)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for run, a in scans:
        _errorbar(ax, a.splitting_ratios, a, "E_Ent", fmt="o-", label=_label(run),
                  color=COLOURS.get(run.state))
    ax.axhline(1, color="k", ls="--", lw=1)
    ax.set(xlabel="splitting ratio N_A / N", ylabel="E_Ent", title="Entanglement between A and B (Fig. 2a)")
    ax.set_ylim(0, 2)
    ax.legend(fontsize=8)
    return _save(fig, path)


def fig3a(scans: Sequence[tuple[RunAnalysis, Analysis]], path: Path) -> Path:
    """E_EPR A->B and B->A with the non-inferred products vs splitting ratio."""
    fig = Figure(figsize=(6 * len(scans), 4))
    axes = fig.subplots(1, len(scans), squeeze=False)
    for ax, (run, a) in zip(axes[0], scans):
        x = a.splitting_ratios
        _errorbar(ax, x, a, "E_EPR_AB", fmt="o-", color="#1f78b4", label="E_EPR A→B")
        _errorbar(ax, x, a, "E_EPR_BA", fmt="s-", color="#e31a1c", label="E_EPR B→A")
        _errorbar(ax, x, a, "product_B", fmt="o", mfc="none", color="#1f78b4", label="non-inferred B")
        _errorbar(ax, x, a, "product_A", fmt="s", mfc="none", color="#e31a1c", label="non-inferred A")
        ax.axhline(1, color="k", ls="--", lw=1)
        ax.set(xlabel="splitting ratio N_A / N", ylabel="E_EPR", title=f"EPR steering (Fig. 3a): {_label(run)}")
        ax.set_ylim(0, 2.5)
        ax.legend(fontsize=8)
    return _save(fig, path)


def fig2b(run: RunAnalysis, a: Analysis, path: Path) -> Path:
    """E_Ent for a set of region patterns, each pattern drawn on the |2> cloud."""
    n = len(a.geometries)
    fig = Figure(figsize=(max(6, 1.3 * n), 5))
    ax = fig.add_axes((0.08, 0.1, 0.9, 0.5))
    est = a.best["E_Ent"]
    ax.errorbar(np.arange(n), est.value, yerr=est.error, fmt="o", capsize=3, color=COLOURS.get(run.state))
    ax.axhline(1, color="k", ls="--", lw=1)
    ax.set_xticks(np.arange(n), [g.name for g in a.geometries], rotation=30, ha="right", fontsize=7)
    ax.set(ylabel="E_Ent", title=f"E_Ent for region patterns (Fig. 2b): {_label(run)}")
    ax.set_ylim(0, 2)
    m1, m2 = run.mean_images()
    counter = RegionCounter(a.geometries, run.clouds(), m2.shape, roi_half_px=run.roi_half_px())
    rows, cols = counter.roi_bbox(2)
    for i in range(n):
        inset = fig.add_axes((0.08 + 0.9 * (i + 0.1) / n, 0.68, 0.9 * 0.8 / n, 0.28))
        w_a, w_b = counter.weights(i, 2)
        rgb = np.zeros(w_a[rows, cols].shape + (3,))
        rgb[..., 0] = w_a[rows, cols]
        rgb[..., 2] = w_b[rows, cols]
        cloud = m2[rows, cols] / max(float(m2[rows, cols].max()), 1e-9)
        inset.imshow(0.35 * rgb + 0.65 * cloud[..., None].clip(0, 1), origin="upper")
        inset.set_axis_off()
    return _save(fig, path)


def fig3bc(run: RunAnalysis, a: Analysis, ratio: float, path: Path) -> Path:
    """E_EPR vs gap width at a fixed gap centre, and the atom numbers in A and B."""
    splits = [g for g in a.geometries if isinstance(g, Split)]
    assert len(splits) == len(a.geometries), "a gap scan holds splits only"
    widths = np.array([g.gap_px for g in splits])
    fig = Figure(figsize=(6, 6))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    for key, fmt, colour, label in (("E_EPR_AB", "o-", "#1f78b4", "E_EPR A→B"),
                                     ("E_EPR_BA", "s-", "#e31a1c", "E_EPR B→A")):
        est = a.best[key]
        ax1.errorbar(widths, est.value, yerr=est.error, fmt=fmt, color=colour, capsize=2, label=label)
    ax1.axhline(1, color="k", ls="--", lw=1)
    ax1.set(ylabel="E_EPR", title=f"Gap width at splitting ratio {ratio:.2f} (Fig. 3b/3c): {_label(run)}")
    ax1.legend(fontsize=8)
    ax2.plot(widths, a.n_a, "o-", color="#1f78b4", label="N_A")
    ax2.plot(widths, a.n_b, "s-", color="#e31a1c", label="N_B")
    ax2.set(xlabel="gap width (pixels)", ylabel="atoms")
    ax2.legend(fontsize=8)
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout() if not fig.axes or len(fig.axes) < 3 else None
    fig.savefig(path, dpi=110)
    return path
