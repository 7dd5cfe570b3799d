"""The paper's figures from offline analyses (matplotlib, Agg): Fig. 2a, 2b, 3a, 3b/3c.

Geometries whose smaller region holds less than ``MIN_FRACTION`` of the atoms are left out of the
plots (their criteria are dominated by a handful of atoms and the noise correction), and the ratio
axis spans only the ratios plotted. The optimised criteria (E_Ent, E_EPR) are plotted
bias-corrected (the split-sample value, with its own error, analysis.crossfit): the plain minimum
sits about one standard error low on a coherent state. Markers show the verdict: filled
"certified", open "not certified", a cross "unresolved" (crosstalk alone could produce the value).
Legends sit outside the axes; figures are saved with a tight bounding box (no clipped labels).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.criteria import CERTIFYING
from analysis.geometries import MIN_REGION_FRACTION, Split
from analysis.regions import RegionCounter
from app.offline.analysis import Analysis, RunAnalysis

MIN_FRACTION = MIN_REGION_FRACTION
COLOURS = {"squeezed": "#1f78b4", "coherent": "#e31a1c"}


def _usable(a: Analysis) -> np.ndarray:
    r = a.splitting_ratios
    return np.isfinite(r) & (r > MIN_FRACTION) & (r < 1 - MIN_FRACTION)


def plotted(a: Analysis, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value, error, verdict) of ``key`` as the figures plot it: bias-corrected with the
    split-sample error for the optimised criteria, the plain value otherwise (corrected result
    when the run has a detection-noise estimate); verdict "" for quantities without one."""
    res = a.best
    value, error = res[key].shown()
    verdict = res.verdicts(key) if key in CERTIFYING else np.full(value.shape, "")
    return value, error, verdict


def _errorbar(ax: Axes, x: np.ndarray, a: Analysis, key: str, *, fmt: str, color: str | None,
              label: str, keep: np.ndarray | None = None, mfc: str | None = None) -> None:
    value, error, verdict = plotted(a, key)
    ok = (_usable(a) if keep is None else keep) & np.isfinite(value)
    marker = fmt.rstrip("-")
    line = "-" if fmt.endswith("-") else ""
    ax.errorbar(x[ok], value[ok], yerr=error[ok], fmt=line or "none", color=color, capsize=2,
                lw=1, label=None)
    for v, style in (("certified", {}), ("not certified", {"mfc": "white"}),
                     ("unresolved", {"marker": "x"}), ("", {"mfc": mfc} if mfc else {})):
        sel = ok & (verdict == v)
        if sel.any():
            kw = {"marker": marker, "ls": "none", "color": color, "ms": 5, **style}
            ax.plot(x[sel], value[sel], **kw)  # type: ignore[arg-type]
    ax.plot([], [], marker=marker, ls=line or "none", color=color, label=label,
            mfc=mfc or color)


def _ratio_axis(ax: Axes, analyses: Sequence[Analysis]) -> None:
    """x limits: the splitting ratios plotted (both regions hold >= MIN_FRACTION of the atoms)."""
    r = np.concatenate([a.splitting_ratios[_usable(a)] for a in analyses] or [np.zeros(0)])
    if r.size:
        pad = 0.02
        ax.set_xlim(max(0.0, float(r.min()) - pad), min(1.0, float(r.max()) + pad))


def _verdict_key(ax: Axes) -> None:
    """Legend entries explaining the marker fills."""
    ax.plot([], [], "o", color="grey", label="filled: certified")
    ax.plot([], [], "o", color="grey", mfc="white", label="open: not certified")
    ax.plot([], [], "x", color="grey", label="x: unresolved (crosstalk)")


def _legend_outside(ax: Axes) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _label(run: RunAnalysis) -> str:
    return f"{run.path.stem} ({run.state})"


def fig2a(scans: Sequence[tuple[RunAnalysis, Analysis]], path: Path) -> Path:
    """E_Ent vs splitting ratio for every run (squeezed and coherent overlaid)."""
    fig = Figure(figsize=(7.5, 4))
    ax = fig.subplots()
    for run, a in scans:
        _errorbar(ax, a.splitting_ratios, a, "E_Ent", fmt="o-", label=_label(run),
                  color=COLOURS.get(run.state))
    ax.axhline(1, color="k", ls="--", lw=1)
    ax.set(xlabel="splitting ratio N_A / N", ylabel="E_Ent (bias-corrected)",
           title="Entanglement between A and B (Fig. 2a)")
    ax.set_ylim(0, 2)
    _ratio_axis(ax, [a for _, a in scans])
    _verdict_key(ax)
    _legend_outside(ax)
    return _save(fig, path)


def fig3a(scans: Sequence[tuple[RunAnalysis, Analysis]], path: Path) -> Path:
    """E_EPR A->B and B->A with the non-inferred products vs splitting ratio."""
    fig = Figure(figsize=(7.5, 4 * len(scans)))
    axes = fig.subplots(len(scans), 1, squeeze=False).T
    fig.subplots_adjust(hspace=0.5)
    for ax, (run, a) in zip(axes[0], scans):
        x = a.splitting_ratios
        _errorbar(ax, x, a, "E_EPR_AB", fmt="o-", color="#1f78b4", label="E_EPR A→B")
        _errorbar(ax, x, a, "E_EPR_BA", fmt="s-", color="#e31a1c", label="E_EPR B→A")
        _errorbar(ax, x, a, "product_B", fmt="o", mfc="none", color="#1f78b4", label="non-inferred B")
        _errorbar(ax, x, a, "product_A", fmt="s", mfc="none", color="#e31a1c", label="non-inferred A")
        ax.axhline(1, color="k", ls="--", lw=1)
        ax.set(xlabel="splitting ratio N_A / N", ylabel="E_EPR (bias-corrected)")
        ax.set_title(f"EPR steering (Fig. 3a):\n{_label(run)}", fontsize=10)
        ax.set_ylim(0, 2.5)
        _ratio_axis(ax, [a])
        _verdict_key(ax)
        _legend_outside(ax)
    return _save(fig, path)


def fig2b(run: RunAnalysis, a: Analysis, path: Path) -> Path:
    """E_Ent for a set of region patterns, each pattern drawn on the |2> cloud."""
    n = len(a.geometries)
    fig = Figure(figsize=(max(7.5, 1.3 * n + 2), 6))
    ax = fig.add_axes((0.08, 0.3, 0.72, 0.36))
    _errorbar(ax, np.arange(n, dtype=float), a, "E_Ent", fmt="o", color=COLOURS.get(run.state),
              label=_label(run), keep=np.ones(n, dtype=bool))
    ax.axhline(1, color="k", ls="--", lw=1)
    ax.set_xticks(np.arange(n), [g.name for g in a.geometries], rotation=30, ha="right", fontsize=7)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set(ylabel="E_Ent (bias-corrected)")
    fig.suptitle(f"E_Ent for region patterns (Fig. 2b): {_label(run)}", fontsize=10)
    ax.set_ylim(0, 2)
    _verdict_key(ax)
    _legend_outside(ax)
    m1, m2 = run.mean_images()
    counter = RegionCounter(a.geometries, run.clouds(), m2.shape, roi_half_px=run.roi_half_px())
    rows, cols = counter.roi_bbox(2)
    for i in range(n):
        inset = fig.add_axes((0.08 + 0.72 * (i + 0.1) / n, 0.7, 0.72 * 0.8 / n, 0.2))
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
    fig = Figure(figsize=(7.5, 6))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    fig.subplots_adjust(hspace=0.15)
    for key, fmt, colour, label in (("E_EPR_AB", "o-", "#1f78b4", "E_EPR A→B"),
                                     ("E_EPR_BA", "s-", "#e31a1c", "E_EPR B→A")):
        _errorbar(ax1, widths, a, key, fmt=fmt, color=colour, label=label,
                  keep=np.ones(widths.size, dtype=bool))
    ax1.axhline(1, color="k", ls="--", lw=1)
    ax1.set(ylabel="E_EPR (bias-corrected)")
    ax1.set_title(f"Gap width at splitting ratio {ratio:.2f} (Fig. 3b/3c):\n{_label(run)}", fontsize=10)
    _verdict_key(ax1)
    _legend_outside(ax1)
    ax2.plot(widths, a.n_a, "o-", color="#1f78b4", label="N_A")
    ax2.plot(widths, a.n_b, "s-", color="#e31a1c", label="N_B")
    ax2.set(xlabel="gap width (pixels)", ylabel="atoms")
    _legend_outside(ax2)
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    # the tight bounding box takes in titles, rotated tick labels and the outside legends
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.15)
    return path
