"""Schema 2's NeXus structure, provenance and typed final results.

Layout (NeXus base classes where they fit; the data live once, at the schema 1 paths, and the
NXentry holds hard links to them, so old and new readers find the same objects):

- ``/`` NXroot, ``default = "entry"``; ``/entry`` NXentry (``title``, ``start_time``,
  ``end_time``, ``default = "data"``); ``/entry/data`` NXdata with ``signal = "frames"``, a hard
  link to ``/frames`` (shots x frames x H x W camera counts).
- ``/instrument`` NXinstrument: one NXcollection per instrument with its identity and settings at
  the start as typed scalars (units from the key suffix: ``_hz`` Hz, ``_s`` s, ``_deg`` degree,
  ``_dbm`` dBm).
- ``/provenance`` NXcollection: versions, code revision, host, user, hashes (scalar strings).
- ``/shots`` and ``/results`` NXcollection; ``/results/criteria`` and ``/results/regions``:
  every geometry's criteria (corrected and raw: value, error, bias, p-value, verdict), written
  from the final results when the run closes.
"""
from __future__ import annotations

import getpass
import hashlib
import json
import math
import platform
import re
import socket
import subprocess
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import h5py
import numpy as np

CRITERIA = "results/criteria"
REGIONS = "results/regions"
PROVENANCE = "provenance"
INSTRUMENT = "instrument"
VERDICTS = {True: "certified", False: "not certified", None: ""}
_TEXT = h5py.string_dtype("utf-8")
_UNITS = (("_hz", "Hz"), ("_s", "s"), ("_deg", "degree"), ("_dbm", "dBm"), ("_px", "pixel"),
          ("_m", "m"))
# long-format criteria table: one row per (geometry, criterion); corrected first, as displayed
CRITERIA_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("geometry", "<i4", "index into /results/regions"),
    ("criterion", "S16", "N, xi_R2, xi_R2_dB, E_Ent, E_EPR_AB, E_EPR_BA, product_A, product_B"),
    ("units", "S8", "units of the value, error and bias columns ('1': dimensionless)"),
    *((f"{v}_{q}", dt, f"{what} ({'detection-noise and PSF corrected' if v == 'corrected' else 'raw'})")
      for v in ("corrected", "raw")
      for q, dt, what in (("value", "<f8", "estimate"), ("error", "<f8", "jackknife error"),
                          ("bias", "<f8", "estimated bias"),
                          ("p_value", "<f8", "p-value of 'criterion < 1' (NaN: not a criterion)"),
                          ("verdict", "S16", "'certified', 'unresolved', 'not certified' or ''"))),
)
REGION_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("name", "S64", "", "geometry name"),
    ("kind", "S16", "", "chosen, ratio_scan, gap_scan, pattern"),
    ("splitting_ratio", "<f8", "1", "fraction of the atoms in region A"),
    ("n_shots_x", "<i8", "1", "shots counted along x"),
    ("n_shots_y", "<i8", "1", "shots counted along y"),
    ("n_shots_z", "<i8", "1", "shots counted along z"),
    ("detection_var_a", "<f8", "atoms^2", "detection-noise variance of S^A (hbar = 1)"),
    ("detection_var_b", "<f8", "atoms^2", "detection-noise variance of S^B"),
    ("detection_cov_ab", "<f8", "atoms^2", "detection-noise covariance of S^A, S^B"),
)
PACKAGES = ("numpy", "h5py", "hdf5plugin", "pyvisa", "harvesters", "PySide6", "PySide6-Essentials")


def units_of(key: str) -> str:
    """Units from a settings key's suffix ('' when the key says none)."""
    for suffix, units in _UNITS:
        if key.endswith(suffix):
            return units
    return ""


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: str | Path) -> str:
    """The file's SHA-256, or '' if it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def git_describe(where: Path | None = None) -> str:
    """``git describe --always --dirty --tags`` of the checkout steerlab runs from, '' if none."""
    root = where or Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return ""
    try:
        out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--tags"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def provenance(software_version: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What produced a run file: versions, revision, host, user (plus ``extra``: file hashes)."""
    out = {"steerlab_version": software_version, "code_revision": git_describe(),
           "python": platform.python_version(), "hdf5": h5py.version.hdf5_version,
           "platform": platform.platform(), "host": socket.gethostname()}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = ""
    try:
        out["user"] = getpass.getuser()
    except (KeyError, OSError):
        out["user"] = ""
    out.update(extra or {})
    return out


def _scalar(g: h5py.Group, name: str, value: Any) -> None:
    name = re.sub(r"[^A-Za-z0-9_]", "_", name)[:64] or "_"
    if name in g:
        return
    if isinstance(value, bool):
        ds = g.create_dataset(name, data=np.int8(value))
        ds.attrs["units"] = "1"
        return
    if isinstance(value, int) and not -2**63 <= value < 2**63:
        value = str(value)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and not math.isfinite(value)):
        ds = g.create_dataset(name, data=np.int64(value) if isinstance(value, int) else np.float64(value))
        units = units_of(name)
        if units:
            ds.attrs["units"] = units
        return
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    g.create_dataset(name, data=text, dtype=_TEXT)


def _flat(prefix: str, value: Any, out: dict[str, Any], depth: int = 0) -> None:
    if isinstance(value, Mapping) and depth < 2:
        for k, v in value.items():
            _flat(f"{prefix}_{k}" if prefix else str(k), v, out, depth + 1)
    else:
        out[prefix] = value


def create_structure(f: h5py.File, *, instruments: Mapping[str, Any], prov: Mapping[str, str],
                     run_name: str, created_utc: str) -> None:
    """Everything of schema 2 beyond schema 1 (before SWMR): NeXus groups and links, instrument
    scalars, provenance, the empty results tables. ``/frames``, ``/shots``, ``/results`` and
    ``/run`` must exist."""
    f.attrs["NX_class"] = "NXroot"
    f.attrs["default"] = "entry"
    inst = f.create_group(INSTRUMENT)
    inst.attrs["NX_class"] = "NXinstrument"
    for name, desc in instruments.items():
        if not isinstance(desc, Mapping):
            _scalar(inst, str(name), desc)
            continue
        g = inst.create_group(re.sub(r"[^A-Za-z0-9_]", "_", str(name)))
        g.attrs["NX_class"] = "NXcollection"
        flat: dict[str, Any] = {}
        _flat("", desc, flat)
        for key, value in sorted(flat.items()):
            if key and key not in g:
                _scalar(g, key, value)
    p = f.create_group(PROVENANCE)
    p.attrs["NX_class"] = "NXcollection"
    for key, value in prov.items():
        p.create_dataset(key, data=str(value), dtype=_TEXT)
    for path in ("shots", "results", "meta", "run"):
        f[path].attrs["NX_class"] = "NXcollection"
    for path, columns in ((CRITERIA, [(n, d, "", w) for n, d, w in CRITERIA_COLUMNS]),
                          (REGIONS, [("index", "<i4", "1", "geometry index"), *REGION_COLUMNS])):
        g = f.create_group(path)
        g.attrs["NX_class"] = "NXcollection"
        for name, dtype, units, what in columns:
            ds = g.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(64,))
            ds.attrs["long_name"] = what
            if units:
                ds.attrs["units"] = units
    link_entry(f, run_name, created_utc)


def link_entry(f: h5py.File, run_name: str, created_utc: str) -> None:
    """``/entry`` (NXentry) with its NXdata and hard links to the objects it gathers."""
    frames = f["frames"]
    frames.attrs["interpretation"] = "image"
    frames.attrs["long_name"] = "camera frames (shot, frame, y, x)"
    entry = f.create_group("entry")
    entry.attrs["NX_class"] = "NXentry"
    entry.attrs["default"] = "data"
    entry.create_dataset("title", data=run_name, dtype=_TEXT)
    entry.create_dataset("start_time", data=created_utc, dtype=_TEXT)
    entry["end_time"] = f["run/end_utc"]
    data = entry.create_group("data")
    data.attrs["NX_class"] = "NXdata"
    data.attrs["signal"] = "frames"
    data["frames"] = frames
    for name in (INSTRUMENT, PROVENANCE, "shots", "results"):
        entry[name] = f[name]


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def _criterion_units(name: str) -> str:
    return {"N": "atoms", "xi_R2_dB": "dB"}.get(name, "1")


def results_tables(results: Mapping[str, Any]) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """The final results JSON (``RunMonitor.results_json``) as criteria rows and region rows."""
    crit: dict[str, list[Any]] = {name: [] for name, _, _ in CRITERIA_COLUMNS}
    regions: dict[str, list[Any]] = {"index": [], **{name: [] for name, *_ in REGION_COLUMNS}}
    entries = results.get("criteria") or []
    by_index = {int(r.get("index", i)): r for i, r in enumerate(results.get("regions") or [])
                if isinstance(r, Mapping)}
    for g, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            continue
        region = by_index.get(g, {})
        n = entry.get("n_shots") or {}
        det = entry.get("detection_noise") or {}
        row = {"index": g, "name": str(region.get("name", ""))[:64],
               "kind": str(region.get("kind", ""))[:16],
               "splitting_ratio": _num(region.get("splitting_ratio")),
               "n_shots_x": int(n.get("x", 0)), "n_shots_y": int(n.get("y", 0)),
               "n_shots_z": int(n.get("z", 0)), "detection_var_a": _num(det.get("var_a")),
               "detection_var_b": _num(det.get("var_b")), "detection_cov_ab": _num(det.get("cov_ab"))}
        for k, v in row.items():
            regions[k].append(v)
        corrected = entry.get("corrected") or {}
        for name, raw in entry.items():
            if not isinstance(raw, Mapping) or "value" not in raw:
                continue
            crit["geometry"].append(g)
            crit["criterion"].append(name[:16])
            crit["units"].append(_criterion_units(name))
            for variant, est in (("corrected", corrected.get(name) or {}), ("raw", raw)):
                crit[f"{variant}_value"].append(_num(est.get("value")))
                crit[f"{variant}_error"].append(_num(est.get("error")))
                crit[f"{variant}_bias"].append(_num(est.get("bias")))
                crit[f"{variant}_p_value"].append(_num(est.get("p_value")))
                crit[f"{variant}_verdict"].append(str(est["verdict"]) if est.get("verdict")
                                                  else VERDICTS.get(est.get("certified")))
    return crit, regions


def write_results_tables(f: h5py.File, results: Mapping[str, Any]) -> None:
    """Fill ``/results/criteria`` and ``/results/regions`` from the final results."""
    for path, table in zip((CRITERIA, REGIONS), results_tables(results)):
        g = f[path]
        for name, values in table.items():
            ds = g[name]
            arr = np.array([v.encode() if isinstance(v, str) else v for v in values],
                           dtype=ds.dtype) if values else np.zeros(0, ds.dtype)
            ds.resize(len(arr), axis=0)
            if len(arr):
                ds[:] = arr
