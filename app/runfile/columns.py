"""Typed per-shot columns of schema 2: one 1-D dataset per quantity, with a ``units`` attribute.

``SETTING_COLUMNS`` are the planned (``pulse.*``) and read-back (``mw.*``, ``card.*``) instrument
settings of every shot, taken from the shot's settings by key; ``TIME_COLUMNS`` its timestamps.
A shot without a key gets NaN (floats) or -1 (flags). Rows are
collected and written a whole chunk at a time (see ``ShotColumns``). The JSON text of each shot
stays the complete record; the columns are its typed view for generic HDF5 viewers.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import h5py
import numpy as np

from sequences.shot import ShotRecord, ShotTime

COLUMNS = "shots/columns"
COUNTS = "shots/counts"
ROWS_PER_CHUNK = 256
COUNT_ROWS_PER_CHUNK = 256


@dataclass(frozen=True)
class Column:
    """One per-shot column: dataset ``name``, from settings ``key`` (or a shot field), numpy
    ``dtype`` ('<f8' or 'i1' for flags), ``units`` (UDUNITS-style; '1' dimensionless), origin."""

    name: str
    key: str
    dtype: str
    units: str
    description: str


def _setting(name: str, units: str, what: str, dtype: str = "<f8") -> Column:
    origin = "planned" if name.startswith("pulse.") else "read back from the instrument"
    return Column(name.replace(".", "_"), name, dtype, units, f"{what} ({origin})")


SETTING_COLUMNS: tuple[Column, ...] = (
    _setting("pulse.mw_phase_deg", "degree", "microwave phase of the Rabi pulse"),
    _setting("pulse.mw_gate_s", "s", "microwave gate length"),
    _setting("pulse.mw_start_s", "s", "microwave gate start after the trap switch-off"),
    _setting("mw.frequency_hz", "Hz", "microwave frequency"),
    _setting("mw.level_dbm", "dBm", "microwave level"),
    _setting("mw.phase_deg", "degree", "microwave phase"),
    _setting("mw.output_enabled", "1", "microwave RF output on (1), off (0)", "i1"),
    _setting("mw.pulse_modulation_enabled", "1", "pulse modulation on (1), off (0)", "i1"),
    _setting("card.program_duration_s", "s", "timing-card program duration"),
    _setting("card.instructions", "1", "timing-card instructions in the program"),
    _setting("card.max_rounding_error_s", "s", "largest timing rounding of the program"),
)
TIME_COLUMNS: tuple[Column, ...] = (
    Column("start_time", "start_utc", "<f8", "s", "shot start, seconds since 1970-01-01T00:00:00Z"),
    Column("end_time", "end_utc", "<f8", "s", "shot end, seconds since 1970-01-01T00:00:00Z"),
    Column("duration_s", "duration_s", "<f8", "s", "shot duration (writer host's monotonic clock)"),
    Column("index", "index", "<i8", "1", "run-wide shot attempt number (as /shots/table)"),
)
ALL_COLUMNS = TIME_COLUMNS + SETTING_COLUMNS
DTYPES = ("<f8", "<i8", "i1")
MISSING = {"<f8": math.nan, "<i8": -1, "i1": -1}
"""What a shot without the key gets, per column dtype."""

SCAN_UNITS_ATTR = "scan_axis"


def scan_columns(scan: Mapping[str, Any] | None) -> tuple[Column, ...]:
    """The columns of a plan's scan (``RunPlan.to_dict()["scan"]``; none without a scan):
    ``scan_point`` and ``scan_visit``, then per axis its value (``scan_<field>``, numeric axes, in
    the field's unit) and its index (``scan_<field>_index``), from the shot's ``scan.*`` settings."""
    if not scan:
        return ()
    cols = [Column("scan_point", "scan.point", "<i8", "1", "scan point number (-1: none)"),
            Column("scan_visit", "scan.visit", "<i8", "1", "visit of the scan point, in run order")]
    for k, axis in enumerate(scan.get("axes", [])):
        field, unit = str(axis["field"]), str(axis.get("unit", ""))
        flat = field.replace(".", "_")
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool)
                      for v in axis.get("values", []))
        if numeric:
            cols.append(Column(f"scan_{flat}", f"scan.{field}", "<f8", unit or "1",
                               f"scan axis {k}: {field} at this shot's point"))
        cols.append(Column(f"scan_{flat}_index", f"scan.{field}.index", "<i8", "1",
                           f"scan axis {k}: index of {field}'s value at this shot's point"))
    return tuple(cols)


def group_columns(group: h5py.Group) -> tuple[Column, ...]:
    """The columns a file's ``shots/columns`` group holds: ALL_COLUMNS, then any others it
    describes (a scan's) from their attributes."""
    known = {c.name for c in ALL_COLUMNS}
    extra = []
    for name in sorted(group):
        if name in known:
            continue
        ds = group[name]
        attrs = ds.attrs
        key = attrs.get("settings_key", name)
        extra.append(Column(name, key.decode() if isinstance(key, bytes) else str(key),
                            ds.dtype.str if ds.dtype.str != "|i1" else "i1",
                            str(attrs.get("units", "1")), str(attrs.get("long_name", ""))))
    return ALL_COLUMNS + tuple(c for c in extra if c.dtype in DTYPES)

# per-shot region counts of the chosen geometry (geometry 0), written when the run closes
COUNT_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("index", "<i8", "1", "shot index (the /shots/table row with this index)"),
    ("N1A", "<f8", "atoms", "atoms in |1> in region A"),
    ("N2A", "<f8", "atoms", "atoms in |2> in region A"),
    ("N1B", "<f8", "atoms", "atoms in |1> in region B"),
    ("N2B", "<f8", "atoms", "atoms in |2> in region B"),
    ("det_SA", "<f8", "atoms", "detection noise sample: (N1 - N2)/2 of region A's mask moved "
                               "onto atom-free pixels (NaN: no room)"),
    ("det_SB", "<f8", "atoms", "detection noise sample: (N1 - N2)/2 of region B's mask moved "
                               "onto atom-free pixels (NaN: no room)"),
)


def _epoch_s(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return math.nan


def _number(v: Any) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        return math.nan
    return float(v)


def _flag(v: Any) -> int:
    return int(bool(v)) if isinstance(v, (bool, int, np.integer, np.bool_)) else -1


def _value(col: Column, index: int, settings: Mapping[str, Any], timing: ShotTime) -> float | int:
    if col.key in ("start_utc", "end_utc"):
        return _epoch_s(getattr(timing, col.key))
    if col.key == "duration_s":
        return timing.duration_s
    if col.key == "index":
        return index
    v: Any = settings.get(col.key)
    return _cell(col.dtype, v)


def _cell(dtype: str, v: Any) -> float | int:
    if dtype == "i1":
        return _flag(v)
    if dtype == "<i8":
        return int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else -1
    return _number(v)


def column_arrays(rows: list[tuple[int, Mapping[str, Any], ShotTime]],
                  columns: tuple[Column, ...] = ALL_COLUMNS) -> dict[str, np.ndarray]:
    """Every column for (shot index, settings, timing) rows: how repair rebuilds the columns
    from the shots' table rows and JSON text."""
    return {c.name: np.array([_value(c, *r) for r in rows], dtype=c.dtype) for c in columns}


class ChunkAppender:
    """Appends to a 1-D, unfiltered, chunked dataset by writing whole chunks directly.

    The chunk being filled is kept in memory and rewritten with ``write_direct_chunk`` after each
    append: no HDF5 type conversion and no chunk cache (a high-level ``ds[a:b] = v`` of one compound
    shot row costs ~90 us, this ~7 us). The dataset must be large enough for the appended items."""

    def __init__(self, ds: h5py.Dataset) -> None:
        self._id = ds.id
        self._per_chunk = int(ds.chunks[0])
        self._buf = np.zeros(self._per_chunk, dtype=ds.dtype)
        self._chunk = 0          # index of the chunk held in ``_buf``

    def write(self, start: int, values: np.ndarray) -> None:
        """Write ``values`` (same dtype) at items ``start``..; items are appended, never rewritten
        out of order, so every chunk before ``start``'s is already on disk."""
        pos, end, k = start, start + values.shape[0], self._per_chunk
        while pos < end:
            chunk = pos // k
            if chunk != self._chunk:
                self._buf[:] = 0
                self._chunk = chunk
            lo = pos - chunk * k
            n = min(end - pos, k - lo)
            self._buf[lo:lo + n] = values[pos - start:pos - start + n]
            self._id.write_direct_chunk((chunk * k,), self._buf.data)
            pos += n


def create_columns(f: h5py.File, extra: tuple[Column, ...] = ()) -> None:
    """The empty per-shot columns (ALL_COLUMNS and ``extra``, e.g. ``scan_columns``) and count
    columns (before SWMR), with units and descriptions."""
    g = f.require_group(COLUMNS)
    g.attrs["NX_class"] = "NXcollection"
    g.attrs["description"] = ("typed per-shot columns (row i = /shots/table row i, valid below "
                              "/shots/n_complete)")
    for col in ALL_COLUMNS + extra:
        ds = g.create_dataset(col.name, shape=(0,), maxshape=(None,), dtype=col.dtype,
                              chunks=(ROWS_PER_CHUNK,), fillvalue=0 if col.dtype == "<f8" else -1)
        ds.attrs["units"] = col.units
        ds.attrs["long_name"] = col.description
        if col.key != col.name:
            ds.attrs["settings_key"] = col.key
        if col.dtype == "i1":
            ds.attrs["missing_value"] = np.int8(-1)
        elif col.dtype == "<i8" and col.name != "index":
            ds.attrs["missing_value"] = np.int64(-1)
    c = f.require_group(COUNTS)
    c.attrs["NX_class"] = "NXcollection"
    c.attrs["description"] = ("region counts of the chosen geometry (geometry 0 of /results) for "
                              "every counted ok shot, written when the run closes")
    for name, dtype, units, what in COUNT_COLUMNS:
        ds = c.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype,
                              chunks=(COUNT_ROWS_PER_CHUNK,))
        ds.attrs["units"] = units
        ds.attrs["long_name"] = what


class ShotColumns:
    """The writer's handle on the per-shot columns (after SWMR is on).

    Rows are collected in memory and written a whole chunk (ROWS_PER_CHUNK shots) at a time, and
    the last partial chunk at close, with the datasets opened only for that: every dataset kept
    open makes each of the writer's two flushes per shot slower (HDF5 visits the open datasets),
    and opening 15 datasets by name costs ~1.5 ms, so columns cost ~15 us a shot this way. A file
    whose writer did not close it (crash, or still running) has typed columns for the first
    ``valid_rows(n_complete, closed=False)`` rows only; the shots' table and JSON text hold every
    committed shot, and repair rebuilds the columns from them."""

    def __init__(self, f: h5py.File) -> None:
        self._group = f[COLUMNS]
        self._all = group_columns(self._group)
        self._kinds = {"<f8": [c for c in self._all if c.dtype == "<f8"],
                       "i1": [c for c in self._all if c.dtype == "i1"],
                       "<i8": [c for c in self._all if c.dtype == "<i8" and c.name != "index"]}
        self._f8_keys = [c.key for c in self._kinds["<f8"]]
        self._i1_keys = [c.key for c in self._kinds["i1"]]
        self._i8_keys = [c.key for c in self._kinds["<i8"]]
        self._f8 = np.zeros((ROWS_PER_CHUNK, len(self._f8_keys)))
        self._i1 = np.full((ROWS_PER_CHUNK, len(self._i1_keys)), -1, dtype=np.int8)
        self._i8 = np.full((ROWS_PER_CHUNK, len(self._i8_keys)), -1, dtype=np.int64)
        self._index = np.zeros(ROWS_PER_CHUNK, dtype=np.int64)
        self._chunk = 0           # chunk index of the rows held in the buffers
        self._pending = False     # buffers hold rows not yet written

    def write(self, row: int, shot: ShotRecord) -> None:
        """Shot ``shot``'s values at ``row`` (rows in order)."""
        chunk, k = divmod(row, ROWS_PER_CHUNK)
        if chunk != self._chunk:
            self.flush()
            self._chunk = chunk
        t, settings = shot.timing, shot.settings
        times = {"start_utc": _epoch_s(t.start_utc), "end_utc": _epoch_s(t.end_utc),
                 "duration_s": t.duration_s}
        self._f8[k] = [times[key] if key in times else _number(settings.get(key))
                       for key in self._f8_keys]
        self._i1[k] = [_flag(settings.get(key)) for key in self._i1_keys]
        if self._i8_keys:
            self._i8[k] = [_cell("<i8", settings.get(key)) for key in self._i8_keys]
        self._index[k] = shot.index
        self._pending = True
        if k == ROWS_PER_CHUNK - 1:
            self.flush()

    def flush(self, rows: int | None = None) -> None:
        """Write the chunk in the buffers (complete, or the last one at close: then the columns
        are cut to ``rows``)."""
        end = (self._chunk + 1) * ROWS_PER_CHUNK
        at = (self._chunk * ROWS_PER_CHUNK,)
        data: dict[str, np.ndarray] = {c.name: np.ascontiguousarray(self._f8[:, j])
                                       for j, c in enumerate(self._kinds["<f8"])}
        data.update({c.name: np.ascontiguousarray(self._i1[:, j])
                     for j, c in enumerate(self._kinds["i1"])})
        data.update({c.name: np.ascontiguousarray(self._i8[:, j])
                     for j, c in enumerate(self._kinds["<i8"])})
        data["index"] = self._index
        for col in self._all:
            ds = self._group[col.name]
            if self._pending:
                if ds.shape[0] < end:
                    ds.resize(end, axis=0)
                ds.id.write_direct_chunk(at, data[col.name].data)
            if rows is not None:
                ds.resize(rows, axis=0)
        self._f8[:] = 0
        self._i1[:] = -1
        self._i8[:] = -1
        self._index[:] = 0
        self._pending = False


def valid_rows(n_complete: int, closed: bool) -> int:
    """How many rows of the typed columns a file holds: all of them once closed, else the whole
    chunks below ``n_complete`` (the writer writes a column chunk when it is full)."""
    return n_complete if closed else n_complete // ROWS_PER_CHUNK * ROWS_PER_CHUNK


def write_counts(f: h5py.File, counts: dict[str, np.ndarray]) -> int:
    """Fill the count columns (equal-length arrays by COUNT_COLUMNS name); returns the rows."""
    n = len(counts["index"])
    g = f[COUNTS]
    for name, dtype, _, _ in COUNT_COLUMNS:
        values = np.asarray(counts.get(name, np.full(n, np.nan)), dtype=dtype)
        if values.shape != (n,):
            raise ValueError(f"count column {name}: {values.shape}, expected ({n},)")
        g[name].resize(n, axis=0)
        if n:
            g[name][:] = values
    return n
