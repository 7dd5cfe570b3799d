"""Reanalyse run files from their raw frames: the paper's figures (PNG) and numbers (CSV, JSON).

For every run: the splitting-ratio scan (Fig. 2a: E_Ent; Fig. 3a: E_EPR A->B, B->A and the
non-inferred products), a set of region patterns (Fig. 2b), and the gap-width scan at a chosen
splitting ratio with the atom numbers in A and B (Fig. 3b/3c), all counted in one pass over the
frames after the mean-image pass. A run of a scan plan also gets its criteria per scan point
(app/offline/scan_points.py: RUN-scan-points.csv/.json/.png). Several runs are overlaid where the
paper overlays squeezed and coherent. The chunks of every run are spread over local worker
processes (--workers, default: the number of cores) or a Dask cluster (--scheduler ADDRESS); all
paths give identical numbers. Exit status 0, or 2 with one line naming the problem (missing,
corrupt, truncated or foreign file, bad option).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from analysis.geometries import Checkerboard, GeometryError, RandomCells, Split, Stripes, gap_width_scan
from analysis.imaging import CalibrationError, ImagingCalibration, ImagingUncertainty
from app.offline.analysis import Analysis, RunAnalysis
from app.offline.scan_points import write_scan_points
from app.runfile import RunFileError
from app.signals import EXIT_INTERRUPTED, Interrupted, ignore_interrupts_in_worker
from sequences.tomlfields import FieldError, parse_toml, read_text

PROG = "steerlab analyze"
DEFAULT_WIDTHS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN.h5",
                        help="run files, or folders of labscript shot files (with --labscript-map)")
    parser.add_argument("--labscript-map", metavar="MAP.toml",
                        help="for folders of labscript shot files: which /images are the frames "
                             "atoms2, atoms1, ref2, ref1, dark and which global gives the direction "
                             "(docs/labscript-input.md); each folder becomes OUT/FOLDER-labscript.h5")
    parser.add_argument("--out", required=True, help="output directory for PNG, CSV and JSON")
    parser.add_argument("--axis", choices=("x", "y"), default="x", help="split axis (default x)")
    parser.add_argument("--gap", type=float, default=3.0,
                        help="gap of the ratio scan and patterns, pixels (default 3, the paper's: N_AB < 4 atoms)")
    parser.add_argument("--ratio", type=float, default=0.77,
                        help="splitting ratio of the gap-width scan (default 0.77, as in the paper)")
    parser.add_argument("--widths", default=",".join(f"{w:g}" for w in DEFAULT_WIDTHS),
                        help="gap widths of the gap-width scan, pixels, comma separated")
    parser.add_argument("--calibration", help="imaging calibration record (TOML with an [imaging] "
                        "table) instead of each run's own")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="local worker processes (default: the number of cores; 1: this process)")
    parser.add_argument("--scheduler", help="address of a Dask distributed scheduler (tcp://host:port)")
    parser.add_argument("--chunk", type=int, default=64, help="shots per work unit (default 64)")
    parser.add_argument("--no-progress", action="store_true")


class _Bar:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.t0 = time.monotonic()

    def __call__(self, what: str) -> Any:
        def progress(i: int, n: int) -> None:
            if not self.enabled:
                return
            done = 30 * i // max(n, 1)
            sys.stderr.write(f"\r{what:48.48s} [{'#' * done}{'.' * (30 - done)}] {i}/{n}  "
                             f"{time.monotonic() - self.t0:5.1f} s")
            if i == n:
                sys.stderr.write("\n")
            sys.stderr.flush()
        return progress


def load_calibration(path: str) -> tuple[ImagingCalibration, ImagingUncertainty]:
    """An imaging calibration from a record file ([imaging] table, or the fields at top level),
    with the blurs' standard errors of its [uncertainty.imaging] table (none: known exactly)."""
    data = parse_toml(read_text(path), path)
    table = data.get("imaging", data)
    if "calibration" in data and isinstance(data["calibration"], dict):
        table = data["calibration"].get("imaging", table)
    cal = ImagingCalibration.from_dict({k: v for k, v in table.items()
                                        if k not in ("id", "microwave", "record", "uncertainty", "origin",
                                                     "created_utc")}, source=path)
    return cal, ImagingUncertainty.from_record(data.get("uncertainty"), source=path)


def patterns(axis: str, gap: float) -> list[Any]:
    """Fig. 2b's set: splits along x and y, stripes, checkerboards, random cells."""
    return [Split("x", 0.0, gap), Split("y", 0.0, gap), Stripes("x", 2.0), Stripes("x", 4.0),
            Stripes("y", 4.0), Checkerboard(2.0), Checkerboard(4.0), RandomCells(2.0, seed=1),
            RandomCells(3.0, seed=2)]


def _write_table(a: Analysis, stem: Path) -> list[Path]:
    rows = a.table()
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with stem.with_suffix(".csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if v is None else v for k, v in r.items()})
    stem.with_suffix(".json").write_text(json.dumps({"run": str(a.path), "geometries": rows},
                                                    indent=1, allow_nan=False), encoding="utf-8")
    return [stem.with_suffix(".csv"), stem.with_suffix(".json")]


def _end_pool(executor: ProcessPoolExecutor, grace_s: float = 10.0) -> bool:
    """Cancel the queued chunks, let each worker finish the chunk at hand (well under a second)
    and exit; kill the workers if that takes over grace_s seconds (s) or a second signal comes.

    Returns True if the workers had to be killed: the pool's manager thread may then wait for
    ever on a half-written result, and the process must leave without joining it."""
    procs = list(getattr(executor, "_processes", {}).values())
    # the pool's own shutdown reaps the workers; waiting for them here as well would race it
    ending = threading.Thread(target=executor.shutdown, kwargs={"wait": True, "cancel_futures": True},
                              name="end-pool", daemon=True)
    ending.start()
    try:
        ending.join(grace_s)
    except BaseException:            # a second Ctrl-C / SIGTERM: stop waiting
        pass
    if not ending.is_alive():
        return False
    for p in procs:                  # not reaped yet: the manager thread has not joined them
        with contextlib.suppress(OSError):
            os.kill(p.pid, signal.SIGKILL)
    return True


def _inputs(args: argparse.Namespace, out: Path, cal: ImagingCalibration | None) -> list[Path]:
    """The run files to analyse: folders of labscript shots converted into OUT first."""
    from app.offline.labscript import LabscriptMapping, convert_folder

    paths = []
    mapping = None
    for p in map(Path, args.runs):
        if not p.is_dir():
            paths.append(p)
            continue
        if args.labscript_map is None:
            raise RunFileError(f"{p}: is a folder; for labscript shot files give --labscript-map "
                               "MAP.toml (docs/labscript-input.md)")
        mapping = mapping or LabscriptMapping.load(args.labscript_map)
        out.mkdir(parents=True, exist_ok=True)
        final = out / f"{p.resolve().name}-labscript.h5"
        tmp = out / f".{final.name}.converting.h5"
        tmp.unlink(missing_ok=True)
        convert_folder(p, mapping, tmp, cal.to_dict() if cal is not None else None)
        tmp.replace(final)               # an output of analyze, like its CSV files
        paths.append(final)
    return paths


def run(args: argparse.Namespace) -> int:
    from app.offline import figures

    try:
        widths = [float(w) for w in args.widths.split(",") if w.strip()]
        if not widths or min(widths) < 0:
            raise ValueError
    except ValueError:
        print(f"{PROG}: --widths {args.widths!r}: expected comma-separated gap widths >= 0", file=sys.stderr)
        return 2
    if not 0 < args.ratio < 1:
        print(f"{PROG}: --ratio {args.ratio}: expected a splitting ratio between 0 and 1", file=sys.stderr)
        return 2
    if args.workers < 1 or args.chunk < 1:
        print(f"{PROG}: --workers and --chunk must be >= 1", file=sys.stderr)
        return 2
    try:
        cal, unc = load_calibration(args.calibration) if args.calibration else (None, None)
    except (FieldError, CalibrationError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        paths = _inputs(args, out, cal)
    except (RunFileError, CalibrationError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    executor: Any = None
    client: Any = None
    try:
        if args.scheduler:
            from distributed import Client
            client = Client(args.scheduler, timeout=10)
            executor = client
        elif args.workers > 1:
            executor = ProcessPoolExecutor(max_workers=args.workers, initializer=ignore_interrupts_in_worker)
        bar = _Bar(not args.no_progress)
        runs = [RunAnalysis(p, cal, executor=executor, chunk=args.chunk, uncertainty=unc) for p in paths]
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        scans = []
        for r in runs:
            r.mean_images(bar(f"{r.path.name}: mean images"))
            pos = r.position_for_ratio(args.ratio, args.axis, args.gap)
            # the ratio scan, the patterns and the gap scan counted in one pass over the frames
            scan, pat, gaps = r.analyse_sets(
                [r.ratio_scan_geometries(args.axis, args.gap), patterns(args.axis, args.gap),
                 gap_width_scan(args.axis, pos, widths)],
                bar(f"{r.path.name}: ratio scan, patterns, gap widths"))
            scans.append((r, scan))
            written += _write_table(scan, out / f"{r.path.stem}-ratio-scan")
            written += _write_table(pat, out / f"{r.path.stem}-patterns")
            written.append(figures.fig2b(r, pat, out / f"{r.path.stem}-fig2b-patterns.png"))
            written += _write_table(gaps, out / f"{r.path.stem}-gap-scan")
            written.append(figures.fig3bc(r, gaps, args.ratio, out / f"{r.path.stem}-fig3bc-gap-width.png"))
            if (r.plan or {}).get("scan"):       # a scan plan's run: the criteria per point too
                written += write_scan_points(r.path, out / f"{r.path.stem}-scan-points",
                                             axis=args.axis, gap_px=args.gap, ratio=args.ratio,
                                             executor=executor, chunk=args.chunk)
        written.append(figures.fig2a(scans, out / "fig2a-entanglement-vs-ratio.png"))
        written.append(figures.fig3a(scans, out / "fig3a-steering-vs-ratio.png"))
    except (RunFileError, CalibrationError, GeometryError, FieldError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except BaseException as exc:
        # Ctrl-C / SIGTERM (or a bug): drop the queued chunks instead of computing them
        if isinstance(executor, ProcessPoolExecutor) and _end_pool(executor):
            print(f"{PROG}: interrupted; a worker process did not stop and was killed", file=sys.stderr)
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED if isinstance(exc, (KeyboardInterrupt, Interrupted)) else 1)
        raise
    finally:
        if isinstance(executor, ProcessPoolExecutor):
            executor.shutdown()
        if client is not None:
            client.close()
    print(f"{PROG}: {len(runs)} run(s), {len(written)} files in {out}")
    # numbers at fixed, pre-chosen ratios (not the minimum over the scan, which would be biased low)
    for r, scan in scans:
        for key, target in (("E_Ent", 0.5), ("E_EPR_AB", args.ratio), ("E_EPR_BA", 1 - args.ratio)):
            i = int(np.nanargmin(np.abs(scan.splitting_ratios - target)))
            parts = []
            for label, res in (("corrected", scan.result.corrected), ("raw", scan.result)):
                if res is None:
                    continue
                p = float(res[key].p_value()[i])
                verdict = str(res.verdicts(key)[i])
                verdict = "certified < 1" if verdict == "certified" else verdict
                parts.append(f"{label} {res[key].value[i]:.3f} +- {res[key].error[i]:.3f} "
                             f"({verdict}, p = {p:.2g})")
            print(f"  {r.path.name} ({r.state}): {key} at splitting ratio "
                  f"{scan.splitting_ratios[i]:.2f}: " + " | ".join(parts))
            for w in scan.result.to_dict(i).get("warnings") or []:
                print(f"  WARNING {r.path.name} at splitting ratio {scan.splitting_ratios[i]:.2f}: {w}")
    return 0
