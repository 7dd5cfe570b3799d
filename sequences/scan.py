"""Scans in a run plan: the ``[scan]`` table (format: docs/run-plans.md).

A scan varies plan fields over *points*. Each axis names one field (``imaging.tof_s``) and its
values (a list, a linear or a logarithmic range); several axes combine as an outer product (the
last axis fastest, as numpy's ``ndindex``) or zipped (all axes the same length); with ``group``
names (labscript's zip groups) the axes of one group are zipped and the groups combined as an
outer product. A *visit* of a
point runs ``run.cycles`` direction cycles (or ``run.shots`` shots) at that point; every point is
visited ``repeats`` times, in one of three orders:

- ``sequential``: all visits of point 0, then of point 1, ...;
- ``interleaved``: point 0, 1, ..., n-1, then again (``repeats`` rounds) - with ``run.cycles = 1``
  each point gets one x/y/z cycle at a time, so slow drifts spread over all points;
- ``shuffled``: every (point, repeat) visit in a random order drawn from ``seed`` (required), the
  same order for the same seed.

Each point's plan is the plan with the point's values put in and validated as a whole plan
(``sequences.plan.parse_plan``), so a point outside a field's range is refused before the run,
naming the point and the field. This module only reads the table and builds points and orders.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sequences.tomlfields import FieldError, Table

COMBINES = ("product", "zip")
ORDERS = ("sequential", "interleaved", "shuffled")
MAX_POINTS = 100_000

ScanValue = float | int | str

# field -> unit (for the run file's columns; '1': dimensionless). ``steps.<name>.offset_s`` and
# ``steps.<name>.duration_s`` (a user step's timing) are scannable too.
SCANNABLE: dict[str, str] = {
    "imaging.tof_s": "s",
    "imaging.probe_pulse_s": "s",
    "imaging.exposure_separation_s": "s",
    "imaging.reference_delay_s": "s",
    "imaging.dark_delay_s": "s",
    "imaging.camera_lead_s": "s",
    "imaging.probe_level_channel": "",
    "microwave.frequency_hz": "Hz",
    "microwave.detuning_hz": "Hz",
    "microwave.power_dbm": "dBm",
    "microwave.pulse_start_s": "s",
    "microwave.x.phase_deg": "degree",
    "microwave.x.pulse_s": "s",
    "microwave.y.phase_deg": "degree",
    "microwave.y.pulse_s": "s",
    "state.kind": "",
    "state.atom_number": "1",
    "state.atom_number_sd": "1",
    "state.squeezing_dB": "dB",
    "state.probe_saturation": "1",
    "state.cloud_half_width_um": "um",
}
STEP_FIELDS = {"offset_s": "s", "duration_s": "s"}
INTEGER_FIELDS = {"state.atom_number"}
STRING_FIELDS = {"state.kind", "imaging.probe_level_channel"}
VIRTUAL_ONLY_PREFIX = "state."
"""Fields the virtual lab prepares (a real lab sets its atoms by its own channels)."""


@dataclass(frozen=True)
class ScanAxis:
    """One scanned field and its values (``unit`` as in the run file's columns)."""

    field: str
    values: tuple[ScanValue, ...]
    unit: str
    group: str = ""


@dataclass(frozen=True)
class ScanPoint:
    """One point: its number, the index along each axis and the values (axis order)."""

    number: int
    indices: tuple[int, ...]
    values: tuple[ScanValue, ...]


@dataclass(frozen=True)
class Scan:
    """A validated scan: axes, how they combine, the visit order and repeats."""

    axes: tuple[ScanAxis, ...]
    combine: str
    order: str
    repeats: int
    seed: int | None
    points: tuple[ScanPoint, ...]
    visits: tuple[int, ...]
    """The point of every visit, in run order (len = points x repeats)."""
    groups: tuple[tuple[int, ...], ...] = ()
    """The axes (numbers) of each zip group, in product order (one group per axis without groups)."""

    @property
    def fields(self) -> tuple[str, ...]:
        """The scanned fields, in axis order."""
        return tuple(a.field for a in self.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        """Points along each zip group (product; an axis without a group is its own), or (n,)
        for zipped axes."""
        return tuple(len(self.axes[g[0]].values) for g in self.groups)

    def values_of(self, point: int) -> dict[str, ScanValue]:
        """``{field: value}`` of a point."""
        p = self.points[point]
        return dict(zip(self.fields, p.values))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (for the run file's plan_json)."""
        return {"axes": [{"field": a.field, "values": list(a.values), "unit": a.unit}
                         for a in self.axes],
                "combine": self.combine, "order": self.order, "repeats": self.repeats,
                "seed": self.seed, "n_points": len(self.points), "shape": list(self.shape),
                "groups": [list(g) for g in self.groups]}


def field_unit(name: str) -> str | None:
    """The unit of a scannable field (None: not scannable)."""
    if name in SCANNABLE:
        return SCANNABLE[name]
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "steps" and parts[2] in STEP_FIELDS and parts[1]:
        return STEP_FIELDS[parts[2]]
    return None


def _range(t: Table, key: str, log: bool) -> tuple[float, ...]:
    r = t.table(key)
    start = r.number("start", unit="")
    stop = r.number("stop", unit="")
    num = r.integer("num", minimum=1, maximum=MAX_POINTS)
    r.done()
    if log:
        if start <= 0 or stop <= 0:
            raise t.fail(key, t.data[key], "start and stop > 0 for a logarithmic range")
        return tuple(float(v) for v in np.geomspace(start, stop, num))
    return tuple(float(v) for v in np.linspace(start, stop, num))


def _axis(t: Table) -> ScanAxis:
    name = t.string("field")
    group = t.string("group", "")
    unit = field_unit(name)
    if unit is None:
        raise t.fail("field", name, "a scannable field: " + ", ".join(SCANNABLE)
                     + ", steps.<name>.offset_s or steps.<name>.duration_s")
    given = [k for k in ("values", "linspace", "logspace") if t.has(k)]
    if len(given) != 1:
        raise t.error(f"{t.source}: {t.path}: expected exactly one of values, linspace = "
                      f"{{start, stop, num}} or logspace = {{start, stop, num}}, got "
                      + (", ".join(given) or "none"))
    values: tuple[ScanValue, ...]
    if given[0] == "values":
        raw = t.raw("values")
        if not isinstance(raw, list) or not raw or len(raw) > MAX_POINTS:
            raise t.fail("values", raw, f"a non-empty list of at most {MAX_POINTS} values")
        kind = str if name in STRING_FIELDS else (int, float)
        if any(isinstance(v, bool) or not isinstance(v, kind) for v in raw) or (
                kind is not str and not all(math.isfinite(v) for v in raw)):
            raise t.fail("values", raw, "a list of strings" if kind is str
                         else f"a list of finite numbers in {unit or 'units of the field'}")
        values = tuple(raw)
    else:
        if name in STRING_FIELDS:
            raise t.fail(given[0], t.data[given[0]], f"a list of values for {name}")
        values = _range(t, given[0], given[0] == "logspace")
    if name in INTEGER_FIELDS:
        if any(float(v) != round(float(v)) for v in values):
            raise t.fail(given[0], t.data[given[0]], f"whole numbers for {name}")
        values = tuple(int(round(float(v))) for v in values)
    t.done()
    return ScanAxis(name, values, unit, group)


def parse_scan(data: object, source: str, error: type[FieldError]) -> Scan:
    """Validate the ``[scan]`` table (the fields' values are checked later, point by point)."""
    t = Table(data, source, "scan", error)
    combine = t.string("combine", "product", choices=COMBINES)
    order = t.string("order", "sequential", choices=ORDERS)
    repeats = t.integer("repeats", 1, minimum=1, maximum=MAX_POINTS)
    seed = t.integer("seed", None, minimum=0)
    raw_axes = t.raw("axes", None)
    if not isinstance(raw_axes, list) or not raw_axes:
        raise t.fail("axes", raw_axes, "a non-empty array of tables [[scan.axes]] with field and "
                     "values, linspace or logspace")
    t.done()
    axes = tuple(_axis(Table(a, source, f"scan.axes[{k}]", error)) for k, a in enumerate(raw_axes))
    fields = [a.field for a in axes]
    for k, f in enumerate(fields):
        if f in fields[:k]:
            raise error(f"{source}: scan.axes[{k}].field = {f!r}: expected each field once")
    if "microwave.frequency_hz" in fields and "microwave.detuning_hz" in fields:
        raise error(f"{source}: scan.axes: microwave.frequency_hz and microwave.detuning_hz: "
                    f"expected one of them")
    if order == "shuffled" and seed is None:
        raise error(f"{source}: scan.seed: missing; expected an integer seed (>= 0) for order = "
                    f"'shuffled', so that the order can be reproduced")
    if order != "shuffled" and seed is not None:
        raise t.fail("seed", seed, "no seed unless order = 'shuffled'")
    groups = _groups(axes, combine, source, error)
    points = _points(axes, groups, source, error)
    return Scan(axes, combine, order, repeats, seed, points,
                visit_order(len(points), order, repeats, seed), groups)


def _groups(axes: Sequence[ScanAxis], combine: str, source: str,
            error: type[FieldError]) -> tuple[tuple[int, ...], ...]:
    """Axis numbers per zip group, in order of first appearance; zipped axes have equal lengths."""
    if combine == "zip":
        if any(a.group for a in axes):
            raise error(f"{source}: scan.axes: group with combine = 'zip'; expected groups only "
                        f"with combine = 'product' (zip groups inside an outer product)")
        out: list[list[int]] = [list(range(len(axes)))]
    else:
        named: dict[str, list[int]] = {}
        out = []
        for k, a in enumerate(axes):
            if a.group and a.group in named:
                named[a.group].append(k)
                continue
            out.append([k])
            if a.group:
                named[a.group] = out[-1]
    for g in out:
        n = len(axes[g[0]].values)
        for k in g[1:]:
            if len(axes[k].values) != n:
                what = f"group {axes[k].group!r}" if axes[k].group else "combine = 'zip'"
                raise error(f"{source}: scan.axes[{k}] ({axes[k].field}): {len(axes[k].values)} "
                            f"values; expected {n} like scan.axes[{g[0]}] ({what})")
    return tuple(tuple(g) for g in out)


def _points(axes: Sequence[ScanAxis], groups: Sequence[Sequence[int]], source: str,
            error: type[FieldError]) -> tuple[ScanPoint, ...]:
    shape = tuple(len(axes[g[0]].values) for g in groups)
    total = math.prod(shape)
    if total > MAX_POINTS:
        raise error(f"{source}: scan: {' x '.join(map(str, shape))} = {total} points; expected at "
                    f"most {MAX_POINTS}")
    out = []
    for i, gidx in enumerate(np.ndindex(*shape)):
        idx = axis_indices(groups, tuple(int(v) for v in gidx), len(axes))
        out.append(ScanPoint(i, idx, tuple(a.values[j] for a, j in zip(axes, idx))))
    return tuple(out)


def axis_indices(groups: Sequence[Sequence[int]], group_index: Sequence[int],
                 n_axes: int) -> tuple[int, ...]:
    """Each axis' value index from each group's index."""
    idx = [0] * n_axes
    for g, i in zip(groups, group_index):
        for k in g:
            idx[k] = int(i)
    return tuple(idx)


def point_indices(scan: Mapping[str, Any], point: int) -> tuple[int, ...]:
    """A point's index along each axis, from a scan's ``to_dict()`` (as stored in plan_json)."""
    axes = scan.get("axes", [])
    groups = scan.get("groups") or ([list(range(len(axes)))] if scan.get("combine") == "zip"
                                    else [[k] for k in range(len(axes))])
    shape = [len(axes[g[0]]["values"]) for g in groups]
    return axis_indices(groups, [int(v) for v in np.unravel_index(point, shape)], len(axes))


def visit_order(n_points: int, order: str, repeats: int, seed: int | None) -> tuple[int, ...]:
    """The point of each visit: sequential, interleaved, or shuffled by ``numpy.random.default_rng(seed)``."""
    if order == "sequential":
        return tuple(p for p in range(n_points) for _ in range(repeats))
    visits = tuple(p for _ in range(repeats) for p in range(n_points))
    if order == "interleaved":
        return visits
    rng = np.random.default_rng(seed)
    return tuple(int(visits[i]) for i in rng.permutation(len(visits)))


def shot_settings(scan: Scan | None, point: int, visit: int) -> dict[str, ScanValue]:
    """A shot's scan point for its record: ``scan.point``, ``scan.visit`` and, per axis,
    ``scan.<field>`` (the value) and ``scan.<field>.index`` (empty without a scan)."""
    if scan is None or point < 0:
        return {}
    p = scan.points[point]
    out: dict[str, ScanValue] = {"scan.point": p.number, "scan.visit": visit}
    for f, i, v in zip(scan.fields, p.indices, p.values):
        out[f"scan.{f}"] = v
        out[f"scan.{f}.index"] = i
    return out


def apply_point(doc: Mapping[str, Any], values: Mapping[str, ScanValue], *,
                base_frequency_hz: float | None) -> dict[str, Any]:
    """A copy of the plan document (tables as dicts, without ``scan``) with a point's values set.

    ``microwave.detuning_hz`` sets ``microwave.frequency_hz`` to ``base_frequency_hz`` + detuning;
    ``steps.<name>.<field>`` sets the field of the ``[[steps]]`` entry called ``name`` (KeyError
    naming it if there is none)."""
    out: dict[str, Any] = {k: v for k, v in doc.items() if k != "scan"}
    for name, value in values.items():
        parts = name.split(".")
        if parts[0] == "steps":
            steps = [dict(s) if isinstance(s, dict) else s for s in out.get("steps", [])]
            match = [s for s in steps if isinstance(s, dict) and s.get("name") == parts[1]]
            if not match:
                raise KeyError(parts[1])
            match[0][parts[2]] = value
            out["steps"] = steps
            continue
        if name == "microwave.detuning_hz":
            assert base_frequency_hz is not None
            parts, value = ["microwave", "frequency_hz"], base_frequency_hz + float(value)
        if name == "state.kind" and value == "coherent":
            st = dict(out.get("state", {})) if isinstance(out.get("state"), dict) else {}
            st.pop("squeezing_dB", None)
            out["state"] = st
        table = out
        for p in parts[:-1]:
            sub = table.get(p, {})
            table[p] = dict(sub) if isinstance(sub, dict) else sub
            table = table[p]
            if not isinstance(table, dict):
                break                       # the plan's own check names the bad table
        else:
            table[parts[-1]] = value
    return out
