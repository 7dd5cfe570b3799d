"""Run a calibration procedure and write the updated calibration record (TOML) and a plot of the fit.

Procedures: rabi (pulse-length scan through the instruments: virtual lab or real), reinaudi
(effective cross-section from several probe intensities), detectivity (differential detectivity
of |1> and |2>), projection-noise (slope of Var(N1 - N2) vs N), psf (point-spread function),
detection-noise (atom-free shots), blur (Joffe bound with the PSF), or all of them in this order.
Every procedure but blur (computed) runs as plans through the sequencer on the instruments
(virtual or real alike; calibration/plan_shots.py), with what the lab provides named in its
[calibration_plans] table: reinaudi scans the probe intensity (a real lab: the channels that
switch the probe AOM's level, probe_levels; the virtual lab: its state.probe_saturation); psf uses
a point-like cloud on the virtual lab and the atoms' shot-noise correlation on a real one.
--atoms-only runs every procedure on the simulated atoms directly.
Exit status 0, 1 if a fit fails or the instruments are unreachable, 2 for bad input.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

from app.lab import LabBuildError, virtual_atoms, virtual_lab_config
from app.labconfig import LabConfigError, load_lab_config
from app.paths import default_config
from calibration import procedures as P
from calibration.plan_shots import CalibrationPlanError
from calibration.record import CalibrationRecord, RecordError, load_record

PROG = "steerlab calibrate"
NAMES = ("rabi", "reinaudi", "detectivity", "projection-noise", "psf", "detection-noise", "blur")
PLANNED = ("rabi", "reinaudi", "detectivity", "projection-noise", "psf", "detection-noise")
"""Procedures that run as plans on the instruments (reinaudi: the virtual lab's probe intensity;
psf: its point-like cloud)."""
ATOMS_ONLY = ("reinaudi",)
"""Procedures a real lab can run only with what its configuration names: reinaudi needs the
channels that set the probe intensity ([calibration_plans] probe_levels). (psf runs everywhere:
on a real lab from the atoms' shot-noise correlation instead of a point-like cloud.)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=NAMES + ("all",), help="procedure")
    parser.add_argument("--config", help="lab configuration (default: the virtual lab)")
    parser.add_argument("--record", help="calibration record to start from (default: the configuration's)")
    parser.add_argument("--out", required=True, help="where to write the updated record (TOML)")
    parser.add_argument("--plot-dir", default=".", help="directory for the fit plots (PNG)")
    parser.add_argument("--seed", type=int, default=0, help="virtual lab seed")
    parser.add_argument("--atoms-only", action="store_true",
                        help="every procedure on the simulated atoms directly instead of through "
                         "plans on the instruments (virtual lab)")


def _why_not(names: Any) -> str:
    """Why a real lab cannot run these procedures here, in words."""
    reasons = {"reinaudi": "needs control of the probe intensity (name the channels that switch "
                           "the probe AOM's level in [calibration_plans] probe_levels)"}
    names = [n for n in names if n in reasons]
    if len(names) == 1:
        return reasons[names[0]]
    return "; ".join(f"{n} {reasons[n]}" for n in names)


def _check_writable(path: Path, option: str) -> None:
    """LabConfigError unless ``path`` can be created (its nearest existing parent is a writable directory)."""
    probe = path.parent.resolve()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK) or str(probe).startswith(("/proc", "/sys")):
        raise LabConfigError(f"{option} {str(path.parent if option == '--plot-dir' else path)!r}: {probe} is not a "
                             f"writable directory; expected a place this user can write")
    if path.is_dir():
        raise LabConfigError(f"{option} {str(path)!r}: is a directory; expected a file name")


def _record_from_config(cal: dict[str, Any], source: str) -> CalibrationRecord:
    mw = dict(cal.get("microwave", {}))
    return CalibrationRecord(str(cal.get("id") or "from-config"), mw, dict(cal["imaging"]),
                             dict(cal.get("uncertainty", {})), dict(cal.get("origin", {})), source=source)


def _calibration_plan(config: Any) -> Any:
    """The one-shot coherent plan the calibration builds the virtual lab for (the atoms' state)."""
    from sequences.plan import build_plan
    return build_plan({"run": {"shots": 1}, "state": {"kind": "coherent", "atom_number_sd": 0.0}}, "calibrate",
                      config.microwave_calibration)


def _rabi_instruments(config: Any, record: CalibrationRecord, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    from app.lab import open_lab, sequencer_config
    from calibration.instrument_rabi import rabi_scan
    f = float(record.microwave.get("rabi_frequency_hz", 1.0 / (4 * record.microwave["x"]["pulse_s"])))
    lengths = np.linspace(0.0, 2.0 / f, 21)
    lab = open_lab(config, _calibration_plan(config), seed)
    try:
        t, p1 = rabi_scan(lab.instruments, sequencer_config(config, lab.virtual), record, lengths.tolist())
    finally:
        lab.close()
    how = f"virtual lab through the instruments, seed {seed}" if lab.virtual is not None \
        else f"{config.name} instruments"
    return t, p1, how


def run(args: argparse.Namespace) -> int:
    from drivers.errors import DriverError
    try:
        config = load_lab_config(args.config or default_config())
        record = load_record(args.record) if args.record else _record_from_config(
            dict(config.calibration_record), config.source)
        sim_config = virtual_lab_config(config, _calibration_plan(config)) if config.kind == "virtual" else None
        if args.seed < 0:
            raise LabConfigError(f"--seed {args.seed}: expected an integer >= 0")
        _check_writable(Path(args.out), "--out")
        _check_writable(Path(args.plot_dir) / "x.png", "--plot-dir")
    except (LabConfigError, RecordError, LabBuildError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    names: tuple[str, ...] = NAMES if args.name == "all" else (args.name,)
    # what a real lab cannot run: reinaudi without [calibration_plans] probe_levels
    unable = tuple(n for n in ATOMS_ONLY if not config.calibration_plans.probe_levels)
    if args.name == "all" and config.kind != "virtual" and not args.atoms_only and unable:
        names = tuple(n for n in NAMES if n not in unable)
        print(f"{PROG}: all on {config.name}: {', '.join(names)} ({', '.join(unable)}: "
              f"{_why_not(unable)})", file=sys.stderr)
    atoms_only = [n for n in names if n in unable]
    if config.kind != "virtual" and (atoms_only or args.atoms_only):
        print(f"{PROG}: {', '.join(atoms_only) or '--atoms-only'}: {_why_not(atoms_only or unable)}; "
              f"on a real lab {', '.join(n for n in PLANNED if n not in unable)} run as plans here",
              file=sys.stderr)
        return 2
    plots = Path(args.plot_dir)
    plots.mkdir(parents=True, exist_ok=True)
    src = None
    if config.kind == "virtual":
        src = virtual_atoms(config, _calibration_plan(config), args.seed)
    lab: Any = None

    def through_plans() -> Any:
        nonlocal lab
        from app.lab import open_lab, sequencer_config
        from calibration.plan_shots import PlanShots
        if lab is None:
            lab = open_lab(config, _calibration_plan(config), args.seed)
        cp = config.calibration_plans
        return PlanShots(lab.instruments, sequencer_config(config, lab.virtual), record,
                         config.source, cp.blast_channel, cp.blast_s, cp.atom_number_field,
                         cp.atom_number_values, atom_number_step=cp.atom_number_step,
                         probe_levels=cp.probe_levels)

    try:
        for name in names:
            png = plots / f"calibration-{name}.png"
            if name in PLANNED and name != "rabi" and not args.atoms_only:
                shots = through_plans()
                result = {"detection-noise": shots.detection_noise, "detectivity": shots.detectivity,
                          "projection-noise": shots.projection_noise,
                          "reinaudi": shots.reinaudi, "psf": shots.psf}[name](png)
                how = (f"virtual lab through plans on the instruments, seed {args.seed}"
                       if lab.virtual is not None else f"{config.name} instruments, through plans")
            elif name == "rabi":
                if args.atoms_only and src is not None:
                    result = P.rabi_virtual(src, record, png)
                    how = f"simulated atoms, seed {args.seed}"
                else:
                    t, p1, how = _rabi_instruments(config, record, args.seed)
                    result = P.rabi_from_populations(t, p1, record, png, how)
            elif name == "blur":
                result, how = P.blur(record, png), "Joffe bound with the record's PSF"
            else:
                procedures: dict[str, Callable[..., Any]] = {
                    "reinaudi": P.reinaudi, "detectivity": P.detectivity,
                    "projection-noise": P.projection_noise, "psf": P.psf,
                    "detection-noise": P.detection_noise}
                fn = procedures[name]
                result, how = fn(src, record, png), f"virtual lab atoms, seed {args.seed}"
            result.apply(record, how)
            for section, key, value, err in result.updates:
                print(f"{name}: {section}.{key} = {value:.6g} +- {err:.2g}")
            print(f"{name}: plot {result.plot}")
    except CalibrationPlanError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except DriverError as exc:
        print(f"{PROG}: instruments: {exc}", file=sys.stderr)
        return 1
    except (ValueError, RuntimeError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    finally:
        if lab is not None:
            lab.close()
    record.id = f"{record.id}+{args.name}"
    out = record.save(args.out)
    print(f"{PROG}: record written to {out}")
    return 0
