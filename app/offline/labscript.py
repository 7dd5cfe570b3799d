"""Other people's data: a folder of labscript shot files as input to ``steerlab analyze``.

The labscript suite writes one HDF5 file per shot; cameras store images under
``/images/<orientation>/<label>/<image>`` (lyse's ``Run.get_image``) and runmanager stores the
shot's evaluated globals as attributes of ``/globals``. A mapping file says which images are
steerlab's frames and which global gives the measured direction::

    [labscript]
    direction_global = "direction"          # a global whose value is x, y or z
    [labscript.frames]                      # paths under /images
    atoms2 = "side/absorption/atoms2"
    atoms1 = "side/absorption/atoms1"
    ref2 = "side/absorption/ref2"
    ref1 = "side/absorption/ref1"
    dark = "side/absorption/dark"
    [imaging]                               # the imaging calibration (or analyze --calibration)
    camera_pixel_size_m = ...

``convert_folder`` reads the shots in file-name order (labscript names sort by sequence and
shot number) and writes one steerlab run file, which the offline analysis then reads like any
run: frames as uint16 counts, the globals of each shot in its settings (``globals.NAME``). Shot
files are untrusted: each is checked like a run file (no external links or storage, no virtual
datasets, images 2-D integer arrays within 0..65535 of one shape), and any problem is one line
naming the file, the object, the value and what was expected.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import h5py
import numpy as np

from app.runfile import RunFileError, RunWriter
from app.runfile.confine import Expect, check_confined
from sequences.shot import FRAME_NAMES, Direction, ShotRecord, ShotTime
from sequences.tomlfields import FieldError, parse_toml, read_text

MAX_SHOT_FILES = 1_000_000


@dataclass(frozen=True)
class LabscriptMapping:
    """Which labscript images are steerlab's frames, and which global gives the direction."""

    frames: dict[str, str]                 # steerlab frame name -> path under /images
    direction_global: str
    imaging: dict[str, Any] | None          # the [imaging] calibration table, if given
    source: str

    @classmethod
    def load(cls, path: str | Path) -> LabscriptMapping:
        """Read a mapping file (TOML, see the module docstring); RunFileError naming the problem."""
        src = str(path)
        try:
            data = parse_toml(read_text(src), src)
        except FieldError as exc:
            raise RunFileError(str(exc)) from None
        table = data.get("labscript")
        if not isinstance(table, dict):
            raise RunFileError(f"{src}: no [labscript] table; expected direction_global and "
                               "[labscript.frames]")
        frames = table.get("frames")
        if not isinstance(frames, dict) or set(frames) != set(FRAME_NAMES) \
                or not all(isinstance(v, str) and v.strip("/") for v in frames.values()):
            raise RunFileError(f"{src}: [labscript.frames] = {frames!r}: expected image paths "
                               f"under /images for each of {', '.join(FRAME_NAMES)}")
        direction = table.get("direction_global")
        if not isinstance(direction, str) or not direction:
            raise RunFileError(f"{src}: labscript.direction_global = {direction!r}: expected the "
                               "name of the global whose value is x, y or z")
        imaging = data.get("imaging")
        if imaging is not None and not isinstance(imaging, dict):
            raise RunFileError(f"{src}: [imaging] = {imaging!r}: expected a table")
        return cls({k: v.strip("/") for k, v in frames.items()}, direction, imaging, src)


def _plain(value: Any) -> Any:
    """A global's value as JSON-ready Python (numbers, strings, bools, lists)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.size <= 64 else f"array{value.shape}"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value if isinstance(value, (int, float, str, bool, list)) or value is None \
        else str(value)


def _image_ok(ds: h5py.Dataset) -> bool:
    return ds.ndim == 2 and ds.dtype.kind in "iu" and ds.size > 0


def read_shot(path: Path, mapping: LabscriptMapping) -> tuple[str, np.ndarray, dict[str, Any],
                                                             ShotTime]:
    """(direction, (5, H, W) uint16 frames, globals, time) of one labscript shot file."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise RunFileError(f"{path}: not a readable HDF5 shot file: "
                           f"{' '.join(str(exc).split())[:200]}") from None
    with f:
        images = {name: f"images/{p}" for name, p in mapping.frames.items()}
        check_confined(f, path, {p: Expect(_image_ok, "a 2-D integer image (camera counts)")
                                 for p in images.values()})
        missing = [p for p in images.values() if p not in f]
        if missing:
            raise RunFileError(f"{path}: image(s) /{', /'.join(missing)} missing (mapping "
                               f"{mapping.source}); expected one per frame")
        globals_ = {str(k): _plain(v) for k, v in f["globals"].attrs.items()} \
            if isinstance(f.get("globals"), h5py.Group) else {}
        frames = []
        for name in FRAME_NAMES:
            a = f[images[name]][()]
            lo, hi = (int(a.min()), int(a.max()))
            if lo < 0 or hi > 65535:
                raise RunFileError(f"{path}: /{images[name]} holds counts {lo}..{hi}; expected "
                                   "camera counts within 0..65535")
            frames.append(a.astype(np.uint16))
    shapes = {a.shape for a in frames}
    if len(shapes) != 1:
        raise RunFileError(f"{path}: images of one shot have shapes {sorted(shapes)}; expected "
                           "one shape")
    direction = globals_.get(mapping.direction_global)
    if direction not in ("x", "y", "z"):
        raise RunFileError(f"{path}: global {mapping.direction_global!r} = {direction!r}; "
                           "expected 'x', 'y' or 'z' (labscript.direction_global)")
    stamp = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat()
    return str(direction), np.stack(frames), globals_, ShotTime(stamp, stamp, 0.0, 0.0)


def convert_folder(folder: str | Path, mapping: LabscriptMapping, out: str | Path,
                   calibration: Mapping[str, Any] | None = None) -> Path:
    """Write the shots of ``folder`` (``*.h5``, name order) as the steerlab run file ``out``
    (schema 2, uncompressed); returns ``out``. ``calibration``: the imaging calibration table
    (default: the mapping's [imaging])."""
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise RunFileError(f"{folder}: not a folder of labscript shot files")
    files = sorted(p for p in folder.glob("*.h5") if p.is_file())
    if not files:
        raise RunFileError(f"{folder}: no shot files (*.h5)")
    if len(files) > MAX_SHOT_FILES:
        raise RunFileError(f"{folder}: {len(files)} shot files; at most {MAX_SHOT_FILES}")
    imaging = dict(calibration or mapping.imaging or {})
    first = read_shot(files[0], mapping)
    shape = first[1].shape[1:]
    record = {"id": f"labscript mapping {mapping.source}", "source": mapping.source,
              "imaging": imaging} if imaging else None
    plan = {"name": folder.name, "source": "labscript shot files", "folder": str(folder),
            "state": {"kind": "labscript"},
            "frames": mapping.frames, "direction_global": mapping.direction_global}
    w = RunWriter(out, frame_names=FRAME_NAMES, frame_shape=shape, plan_json=json.dumps(plan),
                  calibration=record, run_name=folder.name, compression="none",
                  provenance={"labscript_folder": str(folder), "labscript_mapping": mapping.source})
    try:
        counts = {"x": 0, "y": 0, "z": 0}
        for k, path in enumerate(files):
            direction, frames, globals_, timing = first if k == 0 else read_shot(path, mapping)
            if frames.shape[1:] != shape:
                raise RunFileError(f"{path}: images are {frames.shape[1]}x{frames.shape[2]}; "
                                   f"expected {shape[0]}x{shape[1]} as in {files[0].name}")
            seq = "xyz".index(direction)
            w.write_shot(ShotRecord.ok(
                index=k, cycle=counts[direction], sequence_index=seq, direction=cast(Direction, direction),
                frames=frames, timing=timing,
                settings={f"globals.{n}": v for n, v in globals_.items()},
                extra={"labscript_file": path.name}))
            counts[direction] += 1
    except BaseException:
        w.close("faulted")
        out.unlink(missing_ok=True)
        raise
    w.close("completed")
    return out
