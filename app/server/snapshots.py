"""Monitor snapshots across the process boundary: a :class:`analysis.monitor.MonitorSnapshot`
(criteria with errors and verdicts, geometries, crosstalk, clouds, images, history) as plain data
for the wire format of :mod:`app.server.protocol` (JSON + numpy buffers), and back.

Dataclasses travel as ``{"__dc__": NAME, field: value, ...}`` and are rebuilt only if NAME is one of
the classes listed in ``CLASSES`` (nothing else is ever constructed from a message); dicts with
non-string keys as ``{"__items__": [[key, value], ...]}``; tuples as ``{"__tuple__": [...]}``;
non-finite floats as ``{"__float__": "nan"}``; the region counter as the arguments that rebuild it.
A client thus shows exactly the numbers the server's monitor computed, without recomputing them and
without taking the monitor's lock.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from analysis.cloud import CloudShape
from analysis.criteria import CriteriaResult, DetectionNoise, Estimate
from analysis.crosstalk import Crosstalk, PartitionTerms
from analysis.geometries import Checkerboard, RandomCells, Split, Stripes, UserPattern
from analysis.imaging import AtomImage, ShotImages
from analysis.regions import RegionCounter
from analysis.monitor import MonitorSnapshot

CLASSES: dict[str, type] = {c.__name__: c for c in (
    MonitorSnapshot, CriteriaResult, Estimate, DetectionNoise, Crosstalk, PartitionTerms, CloudShape,
    Split, Stripes, Checkerboard, RandomCells, UserPattern, AtomImage, ShotImages)}
MAX_DEPTH = 24


class SnapshotError(ValueError):
    """Data that is not an encoded snapshot (unknown class, wrong fields)."""


def to_wire(value: Any, depth: int = 0) -> Any:
    """``value`` (a snapshot or any part of it) as plain data for :func:`app.server.protocol.encode`."""
    if depth > MAX_DEPTH:
        raise SnapshotError(f"snapshot nested deeper than {MAX_DEPTH}")
    if isinstance(value, np.ndarray) or value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else {"__float__": repr(f)}
    if isinstance(value, RegionCounter):
        return {"__counter__": to_wire({"geometries": value.geometries, "clouds": value.clouds,
                                        "image_shape": value.image_shape, "roi_half_px": value.roi_half_px,
                                        "scale_with_cloud": value.scale_with_cloud,
                                        "fractional": value.fractional}, depth + 1)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if CLASSES.get(name) is not type(value):
            raise SnapshotError(f"{name} cannot be sent in a snapshot")
        out: dict[str, Any] = {"__dc__": name}
        for fld in dataclasses.fields(value):
            out[fld.name] = to_wire(getattr(value, fld.name), depth + 1)
        return out
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: to_wire(v, depth + 1) for k, v in value.items()}
        return {"__items__": [[to_wire(k, depth + 1), to_wire(v, depth + 1)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [to_wire(v, depth + 1) for v in value]}
    if isinstance(value, list):
        return [to_wire(v, depth + 1) for v in value]
    raise SnapshotError(f"a {type(value).__name__} cannot be sent in a snapshot")


def from_wire(value: Any, depth: int = 0) -> Any:
    """The object :func:`to_wire` encoded; SnapshotError for anything else."""
    if depth > MAX_DEPTH:
        raise SnapshotError(f"snapshot nested deeper than {MAX_DEPTH}")
    if isinstance(value, list):
        return [from_wire(v, depth + 1) for v in value]
    if not isinstance(value, dict):
        return value
    if "__float__" in value:
        text = value["__float__"]
        if text not in ("nan", "inf", "-inf"):
            raise SnapshotError(f"__float__ {text!r}: expected nan, inf or -inf")
        return float(text)
    if "__tuple__" in value:
        return tuple(from_wire(value["__tuple__"], depth + 1))
    if "__items__" in value:
        items = value["__items__"]
        if not isinstance(items, list) or not all(isinstance(p, list) and len(p) == 2 for p in items):
            raise SnapshotError("__items__: expected [[key, value], ...]")
        return {_key(from_wire(k, depth + 1)): from_wire(v, depth + 1) for k, v in items}
    if "__counter__" in value:
        key = _counter_key(value["__counter__"])
        cached = _COUNTERS.get(key) if key is not None else None
        if cached is not None:
            return cached
        args = from_wire(value["__counter__"], depth + 1)
        try:
            counter = RegionCounter(args["geometries"], args["clouds"], tuple(args["image_shape"]),
                                    roi_half_px=tuple(args["roi_half_px"]),
                                    scale_with_cloud=bool(args["scale_with_cloud"]),
                                    fractional=bool(args["fractional"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"region counter: {exc}") from None
        if key is not None:
            if len(_COUNTERS) >= 4:
                _COUNTERS.pop(next(iter(_COUNTERS)))
            _COUNTERS[key] = counter
        return counter
    if "__dc__" in value:
        name = value["__dc__"]
        cls = CLASSES.get(name) if isinstance(name, str) else None
        if cls is None:
            raise SnapshotError(f"class {name!r} is not one a snapshot holds")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        given = {k: from_wire(v, depth + 1) for k, v in value.items() if k != "__dc__"}
        unknown = set(given) - set(fields)
        if unknown:
            raise SnapshotError(f"{name}: unknown fields {sorted(unknown)}")
        init = {k: v for k, v in given.items() if fields[k].init}
        try:
            obj = cls(**init)
        except (TypeError, ValueError) as exc:
            raise SnapshotError(f"{name}: {exc}") from None
        for k, v in given.items():
            if not fields[k].init:
                object.__setattr__(obj, k, v)
        return obj
    return {k: from_wire(v, depth + 1) for k, v in value.items()}


# the masks of a run change only when its regions do: a rebuilt counter is kept for the snapshots
# that follow (each rebuild costs milliseconds of mask geometry)
_COUNTERS: dict[str, RegionCounter] = {}


def _counter_key(encoded: Any) -> str | None:
    """The counter's arguments as canonical JSON (None if they hold arrays, e.g. a user pattern)."""
    try:
        return json.dumps(encoded, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None


def _key(k: Any) -> Any:
    if isinstance(k, (str, int, float, bool, tuple)) or k is None:
        return k
    raise SnapshotError(f"dict key of type {type(k).__name__}")


def split_from_wire(d: Any) -> Split:
    """A chosen split from a client's ``{axis, position_px, gap_px, a_side}`` (px); ValueError
    naming the field otherwise."""
    if not isinstance(d, dict):
        raise ValueError(f"regions = {str(d)[:60]!r}: expected {{axis, position_px, gap_px, a_side}}")
    unknown = set(d) - {"axis", "position_px", "gap_px", "a_side"}
    if unknown:
        raise ValueError(f"regions: unknown field(s) {', '.join(sorted(map(str, unknown)))}; expected "
                         "axis, position_px, gap_px, a_side")
    px = {"position_px": d.get("position_px", 0.0), "gap_px": d.get("gap_px", 3.0)}
    for k, v in px.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"regions.{k} = {v!r}: expected a number of pixels")
    return Split(str(d.get("axis", "x")), float(px["position_px"]), float(px["gap_px"]),
                 a_side=str(d.get("a_side", "low")))


def split_to_wire(s: Split) -> dict[str, Any]:
    """The JSON form of a chosen split (what ``split_from_wire`` reads)."""
    return {"axis": s.axis, "position_px": s.position_px, "gap_px": s.gap_px, "a_side": s.a_side}
