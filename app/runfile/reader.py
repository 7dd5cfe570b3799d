"""Reading run files, including files of crashed runs and files still being written (SWMR).

``open_run(path)`` checks the file before returning: HDF5 at all, steerlab's format, a supported
schema version, every required dataset with the expected type. Anything else raises
``RunFileError`` naming the file and what is missing or wrong. Only committed shots (rows below
``shots/n_complete``) are visible.
"""
from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filter for compressed frames)
import numpy as np
from numpy.typing import NDArray

from app.runfile import columns as C
from app.runfile import nexus as NX
from app.runfile import schema as S
from app.runfile.confine import BYTES, INT, TEXT, Expect, check_confined
from app.runfile.h5open import open_swmr_read, swmr_read_attempts_bounded
from sequences.shot import ShotRecord, ShotTime


def _fixed_text(ds: h5py.Dataset) -> bool:
    return ds.shape == () and ds.dtype.kind == "S"


V1_SCHEMA: dict[str, Expect] = {
    S.FRAMES: Expect(lambda ds: ds.ndim == 4 and ds.dtype == np.uint16,
                     "uint16 (shots, frames, H, W)"),
    S.SHOTS: Expect(lambda ds: ds.ndim == 1 and ds.dtype == S.SHOT_DTYPE, f"1-D {S.SHOT_DTYPE}"),
    S.SHOT_TEXT: BYTES, S.N_COMPLETE: INT, S.RESULTS_SLOTS[0]: BYTES, S.RESULTS_SLOTS[1]: BYTES,
    S.RESULTS_STATE: Expect(lambda ds: ds.shape == (2,) and ds.dtype.kind in "iu",
                            "int64 (2,)"),
    S.END_STATE: Expect(_fixed_text, "a scalar fixed-size string"),
    S.END_UTC: Expect(_fixed_text, "a scalar fixed-size string"),
    **{p: TEXT for p in S.META.values()},
}


def _column(dtype: str) -> Expect:
    return Expect(lambda ds: ds.ndim == 1 and ds.dtype == np.dtype(dtype), f"1-D {dtype}")


V2_SCHEMA: dict[str, Expect] = {
    **V1_SCHEMA,
    **{f"{C.COLUMNS}/{c.name}": _column(c.dtype) for c in C.ALL_COLUMNS},
    **{f"{C.COUNTS}/{name}": _column(dtype) for name, dtype, _, _ in C.COUNT_COLUMNS},
    **{f"{NX.CRITERIA}/{name}": _column(dtype) for name, dtype, _ in NX.CRITERIA_COLUMNS},
    **{f"{NX.REGIONS}/{name}": _column(dtype) for name, dtype, _, _ in NX.REGION_COLUMNS},
}
V2_REQUIRED = tuple(p for p in V2_SCHEMA if p not in V1_SCHEMA)


def _open_h5(path: Path) -> tuple[h5py.File, bool]:
    """Open read-only: SWMR first (crashed or live files), then plain (files not written with SWMR)."""
    if not path.exists():
        raise S.RunFileError(f"{path}: file not found")
    if path.is_dir():
        raise S.RunFileError(f"{path}: is a directory, expected a run file")
    try:
        is_h5 = h5py.is_hdf5(path)
    except OSError as exc:
        raise S.RunFileError(f"{path}: cannot read: {exc}") from None
    if not is_h5:
        raise S.RunFileError(f"{path}: not an HDF5 file (no HDF5 signature; empty, truncated to "
                             "nothing or another format)")
    errors = []
    # SWMR first (crashed and live files need it) unless its retries on a corrupt file are unbounded
    for swmr in ((True, False) if swmr_read_attempts_bounded() else (False, True)):
        try:
            return (open_swmr_read(path) if swmr else h5py.File(path, "r")), swmr
        except (OSError, ValueError, RuntimeError) as exc:
            errors.append(f"{'SWMR' if swmr else 'plain'} open: {exc}")
    raise S.RunFileError(f"{path}: corrupt or truncated HDF5 file, cannot be opened ("
                         + "; ".join(errors) + ")")


_READ_ERRORS = S.HDF5_ERRORS
_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_EOF_FIELD = {0: 40, 1: 44, 2: 28, 3: 28}  # superblock version -> byte offset of the EOF address


def _superblock_eof(path: Path) -> int | None:
    """The end-of-file address stored in the superblock at offset 0 (8-byte addresses), or None."""
    with open(path, "rb") as fh:
        head = fh.read(48)
    if len(head) < 48 or not head.startswith(_SIGNATURE) or head[8] not in _EOF_FIELD:
        return None
    if (head[13] if head[8] < 2 else head[9]) != 8:  # size of offsets
        return None
    at = _EOF_FIELD[head[8]]
    return int.from_bytes(head[at:at + 8], "little")


def superblock_open_flag(path: Path) -> bool | None:
    """True if the HDF5 superblock's file-consistency flags say a writer still has (or had, at a
    crash) the file open for writing; None if the superblock cannot be read."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or not head.startswith(_SIGNATURE):
        return None
    flags = head[11] if head[8] >= 2 else int.from_bytes(head[20:24], "little")
    return flags != 0


class RunReader:
    """A run file open for reading. Use ``open_run(path)``; close it (or use ``with``).

    Every read error (corrupt data, failed checksum, missing object) raises RunFileError naming
    the file and the dataset or shot concerned.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._f, self.swmr = _open_h5(self.path)
        self.warnings: list[str] = []
        try:
            self._check()
            self._load_meta()
            self._check_size()
            self._count()
        except S.RunFileError:
            self._f.close()
            raise
        except _READ_ERRORS as exc:
            self._f.close()
            S.reraise_interrupt(exc)
            raise S.RunFileError(f"{self.path}: damaged or truncated run file: {exc}") from None

    def _fail(self, what: str) -> S.RunFileError:
        return S.RunFileError(f"{self.path}: {what}")

    def _read(self, path: str, sel: Any = ()) -> Any:
        """``file[path][sel]``, with any HDF5 error turned into RunFileError naming the dataset."""
        try:
            return self._f[path][sel]
        except _READ_ERRORS as exc:
            S.reraise_interrupt(exc)
            raise self._fail(f"/{path} cannot be read (damaged file): {exc}") from None

    def _check(self) -> None:
        attrs = self._f.attrs
        fmt = attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode("utf-8", "replace")
        if fmt != S.FORMAT:
            found = ", ".join(sorted(attrs.keys())) or "none"
            raise self._fail(f"not a steerlab run file: root attribute 'format' is {fmt!r}, "
                             f"expected {S.FORMAT!r} (root attributes: {found})")
        version = attrs.get("schema_version")
        if version is None:
            raise self._fail("root attribute 'schema_version' is missing")
        try:
            version = int(version)
        except (TypeError, ValueError):
            raise self._fail(f"root attribute schema_version = {version!r}: expected an "
                             "integer") from None
        if version not in S.READABLE_VERSIONS:
            raise self._fail(f"schema version {version} is not supported; this steerlab "
                             f"reads versions {', '.join(map(str, S.READABLE_VERSIONS))}")
        check_confined(self._f, self.path, V1_SCHEMA if version == 1 else V2_SCHEMA)
        required = S.REQUIRED if version == 1 else (*S.REQUIRED, *V2_REQUIRED)
        missing = [p for p in required if not isinstance(self._f.get(p), h5py.Dataset)]
        if missing:
            more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
            raise self._fail("missing dataset(s) " + ", ".join("/" + p for p in missing[:4])
                             + more + " (damaged, or written by another program)")
        frames = self._f[S.FRAMES]
        names = frames.attrs.get("frame_names")
        if names is None or len(names) != frames.shape[1]:
            raise self._fail(f"/{S.FRAMES} attribute 'frame_names' is {names!r}, expected "
                             f"{frames.shape[1]} names")

    def _load_meta(self) -> None:
        f = self._f
        self.schema_version = int(f.attrs["schema_version"])
        self.software_version = str(f.attrs.get("software_version", ""))
        self.created_utc = str(f.attrs.get("created_utc", ""))
        self.run_name = str(f.attrs.get("run_name", ""))
        self.repaired_from = str(f.attrs.get("repaired_from", ""))
        self.frame_names: tuple[str, ...] = tuple(
            n.decode() if isinstance(n, bytes) else str(n) for n in f[S.FRAMES].attrs["frame_names"])
        h, w = f[S.FRAMES].shape[2:]
        self.frame_shape: tuple[int, int] = (int(h), int(w))
        self.compression = str(f[S.FRAMES].attrs.get("compression", "none"))
        self.plan_toml = self._text(S.META["plan_toml"])
        self.plan = self._json(S.META["plan_json"])
        self.calibration = self._json(S.META["calibration_json"])
        self.instruments = self._json(S.META["instruments_json"])
        self.config = self._json(S.META["config_json"])

    def _check_size(self) -> None:
        """Compare the file size with the end-of-file address in the HDF5 superblock (an SWMR
        open skips HDF5's own truncation check)."""
        stored = _superblock_eof(self.path)
        size = self.path.stat().st_size
        if stored is None or size >= stored:
            return
        what = f"truncated: the file has {size} bytes, its HDF5 superblock says {stored}"
        if self.closed_cleanly:
            raise self._fail(what + " (an incomplete copy?)")
        self.warnings.append(what + "; data written after the last flush may be missing")

    def _text(self, path: str) -> str:
        value = self._read(path)
        try:
            return value.decode("utf-8") if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError as exc:
            raise self._fail(f"/{path} is not UTF-8 text: {exc}") from None

    def _json(self, path: str) -> Any:
        try:
            return json.loads(self._text(path))
        except ValueError as exc:
            raise self._fail(f"/{path} is not valid JSON text: {exc}") from None

    def _count(self) -> None:
        committed = int(self._read(S.N_COMPLETE))
        rows, slots = self._f[S.SHOTS].shape[0], self._f[S.FRAMES].shape[0]
        n = max(min(committed, rows, slots), 0)
        if n != committed:
            self.warnings.append(f"shots/n_complete = {committed} but the table has {rows} rows "
                                 f"and frames {slots}: reading {n} shots")
        self.n_shots = n
        self._table = self._read(S.SHOTS, slice(0, n))
        self._text_len = self._f[S.SHOT_TEXT].shape[0]

    def refresh(self) -> int:
        """Pick up shots committed since opening (live files opened with SWMR); returns the count."""
        if self.swmr:
            extra = [f"{C.COLUMNS}/{c.name}" for c in C.group_columns(self._f[C.COLUMNS])] \
                if self.schema_version >= 2 else []
            for path in (S.N_COMPLETE, S.SHOTS, S.SHOT_TEXT, S.FRAMES, S.RESULTS_STATE,
                         S.END_STATE, S.END_UTC, *S.RESULTS_SLOTS, *extra):
                try:
                    self._f[path].refresh()
                except _READ_ERRORS as exc:
                    S.reraise_interrupt(exc)
                    raise self._fail(f"/{path} cannot be refreshed: {exc}") from None
        self._count()
        return self.n_shots

    # --- run-level facts -------------------------------------------------------------------------
    @property
    def end_state(self) -> str:
        """'completed', 'stopped', 'aborted', 'faulted', 'running' (still written, or crashed),
        or 'crashed' (a repaired copy of a file left 'running')."""
        return bytes(self._read(S.END_STATE)).decode("ascii", "replace").rstrip("\x00")

    @property
    def end_utc(self) -> str:
        """When the writer closed the file (empty if it did not)."""
        return bytes(self._read(S.END_UTC)).decode("ascii", "replace").rstrip("\x00")

    @property
    def open_for_write_flag(self) -> bool | None:
        """HDF5's open-for-write flag in the superblock (set while a writer has the file, and left
        set by a crash): plain HDF5 readers refuse such a file; None if unreadable."""
        return superblock_open_flag(self.path)

    @property
    def closed_cleanly(self) -> bool:
        """False for a file whose writer never closed it (crash, kill, power cut) or still writes."""
        return self.end_state not in ("running", "crashed")

    @property
    def results(self) -> dict[str, Any] | None:
        """The monitor's results (with region definitions), or None if none were written."""
        slot, length = (int(v) for v in self._read(S.RESULTS_STATE))
        if slot < 0:
            return None
        if slot > 1 or length < 0:
            raise self._fail(f"/{S.RESULTS_STATE} = [{slot}, {length}]: expected slot 0 or 1 "
                             "and a length >= 0")
        path = S.RESULTS_SLOTS[slot]
        if length > self._f[path].shape[0]:
            raise self._fail(f"/{S.RESULTS_STATE} says {length} bytes but /{path} holds "
                             f"{self._f[path].shape[0]}")
        try:
            value = json.loads(self._read(path, slice(0, length)).tobytes().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._fail(f"/{path} is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise self._fail(f"/{path} holds a {type(value).__name__}, expected a JSON object")
        return value

    @property
    def provenance(self) -> dict[str, str]:
        """What wrote the file (schema 2): versions, code revision, host, user, hashes; {} for 1."""
        try:
            g = self._f.get(NX.PROVENANCE)
            if not isinstance(g, h5py.Group):
                return {}
            keys = [k for k, ds in g.items()
                    if isinstance(ds, h5py.Dataset) and ds.shape == () and ds.dtype.kind in "OS"]
        except _READ_ERRORS as exc:
            S.reraise_interrupt(exc)
            raise self._fail(f"/{NX.PROVENANCE} cannot be read (damaged file): {exc}") from None
        return {k: self._text(f"{NX.PROVENANCE}/{k}") for k in keys}

    def _columns_of(self, group: str, names: list[str], n: int | None) -> dict[str, NDArray[Any]]:
        out = {}
        for name in names:
            path = f"{group}/{name}"
            try:
                present = path in self._f
            except _READ_ERRORS as exc:
                S.reraise_interrupt(exc)
                raise self._fail(f"/{path} cannot be read (damaged file): {exc}") from None
            if present:
                col = self._read(path, slice(0, n))
                out[name] = np.char.decode(col, "utf-8", "replace") if col.dtype.kind == "S" else col
        return out

    def units(self, path: str) -> str:
        """The ``units`` attribute of dataset ``path`` ('' if none)."""
        try:
            value = self._f[path].attrs.get("units", "")
        except _READ_ERRORS as exc:
            S.reraise_interrupt(exc)
            raise self._fail(f"/{path} cannot be read (damaged file): {exc}") from None
        return value.decode() if isinstance(value, bytes) else str(value)

    def columns(self) -> dict[str, NDArray[Any]]:
        """Schema 2's typed per-shot columns of the committed shots (units: ``units(path)`` with
        path ``shots/columns/NAME``); {} for schema 1 files. A file not closed by its writer
        (crashed, live) has them for whole chunks of 16 shots only (``columns.valid_rows``);
        ``table()`` and ``shot_text()`` hold every committed shot."""
        if self.schema_version < 2:
            return {}
        n = C.valid_rows(self.n_shots, closed=self.end_state != "running")
        return self._columns_of(C.COLUMNS, [c.name for c in C.group_columns(self._f[C.COLUMNS])], n)

    def counts(self) -> dict[str, NDArray[Any]]:
        """The chosen geometry's per-shot region counts written at close (index, N1A, N2A, N1B,
        N2B, det_SA, det_SB; atoms); {} for schema 1 files or runs not closed."""
        if self.schema_version < 2:
            return {}
        return self._columns_of(C.COUNTS, [c[0] for c in C.COUNT_COLUMNS], None)

    def results_tables(self) -> tuple[dict[str, NDArray[Any]], dict[str, NDArray[Any]]]:
        """Schema 2's typed final results: (criteria rows, region rows); empty for schema 1."""
        if self.schema_version < 2:
            return {}, {}
        return (self._columns_of(NX.CRITERIA, [c[0] for c in NX.CRITERIA_COLUMNS], None),
                self._columns_of(NX.REGIONS, ["index", *(c[0] for c in NX.REGION_COLUMNS)], None))

    # --- per-shot metadata -----------------------------------------------------------------------
    def table(self) -> dict[str, NDArray[Any]]:
        """Per-shot columns of the committed shots (strings decoded to str arrays)."""
        out: dict[str, NDArray[Any]] = {}
        for name in S.SHOT_DTYPE.names or ():
            col = self._table[name]
            out[name] = np.char.decode(col, "ascii", "replace") if col.dtype.kind == "S" \
                else col.copy()
        out["has_frames"] = out["has_frames"].astype(bool)
        return out

    def _row(self, i: int) -> tuple[int, np.void]:
        if not -self.n_shots <= i < self.n_shots:
            raise IndexError(f"{self.path}: shot row {i} outside 0..{self.n_shots - 1}")
        i = i % self.n_shots
        return i, self._table[i]

    def shot_text(self, i: int) -> dict[str, Any]:
        """The JSON text of shot row ``i``: reason, settings read back, extra."""
        i, row = self._row(i)
        off, length = int(row["text_offset"]), int(row["text_length"])
        if off < 0 or length < 0 or off + length > self._text_len:
            raise self._fail(f"shot row {i}: text at {off}+{length} lies outside /{S.SHOT_TEXT} "
                             f"({self._text_len} bytes)")
        raw = self._read(S.SHOT_TEXT, slice(off, off + length)).tobytes()
        if zlib.crc32(raw) != int(row["text_crc32"]):
            raise self._fail(f"shot row {i}: its text fails its CRC32 check (corrupt data)")
        try:
            value = json.loads(raw.decode("utf-8")) if raw else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._fail(f"shot row {i}: its text is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise self._fail(f"shot row {i}: its text is {type(value).__name__}, expected an object")
        return value

    def _verified(self, i: int, frames: NDArray[np.uint16]) -> NDArray[np.uint16]:
        row = self._table[i]
        # an ndarray is a buffer (the stubs know it only through Python 3.12's __buffer__)
        crc = zlib.crc32(np.ascontiguousarray(frames, "<u2"))  # type: ignore[arg-type]
        if row["has_frames"] and crc != int(row["frames_crc32"]):
            raise self._fail(f"frames of shot row {i} (index {int(row['index'])}) fail their "
                             "CRC32 check (corrupt data)")
        return frames

    def frames(self, i: int) -> NDArray[np.uint16]:
        """The (F, H, W) frames of shot row ``i``, CRC-checked (zeros for a shot without frames)."""
        i, _ = self._row(i)
        return self._verified(i, self._read(S.FRAMES, i))

    def iter_frames(self, start: int = 0, stop: int | None = None,
                    chunk: int = 32) -> Iterator[tuple[int, NDArray[np.uint16]]]:
        """Yield (first row, (n, F, H, W) frames, CRC-checked) in blocks of ``chunk`` shots."""
        stop = self.n_shots if stop is None else min(stop, self.n_shots)
        for a in range(max(start, 0), stop, max(chunk, 1)):
            block = self._read(S.FRAMES, slice(a, min(a + chunk, stop)))
            for k in range(block.shape[0]):
                self._verified(a + k, block[k])
            yield a, block

    def shot(self, i: int) -> ShotRecord:
        """Shot row ``i`` as a ShotRecord (frames read now)."""
        i, row = self._row(i)
        text = self.shot_text(i)
        try:
            timing = ShotTime(row["start_utc"].decode(), row["end_utc"].decode(),
                              float(row["start_monotonic_s"]), float(row["end_monotonic_s"]))
            common = dict(index=int(row["index"]), cycle=int(row["cycle"]),
                          sequence_index=int(row["sequence_index"]),
                          direction=row["direction"].decode(),
                          settings=text.get("settings", {}), timing=timing,
                          frame_names=self.frame_names, attempt=int(row["attempt"]),
                          extra=text.get("extra", {}))
            if row["status"].decode() == "ok":
                return ShotRecord.ok(frames=self.frames(i), **common)
            return ShotRecord.failed(reason=str(text.get("reason") or "unknown"), **common)
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise self._fail(f"shot row {i} is inconsistent: {exc}") from None

    def iter_shots(self, status: str | None = "ok") -> Iterator[ShotRecord]:
        """Every committed shot in order (only those with ``status``; None: all)."""
        for i in range(self.n_shots):
            if status is None or self._table[i]["status"] == status.encode():
                yield self.shot(i)

    @property
    def frames_dataset(self) -> h5py.Dataset:
        """The raw (rows, F, H, W) h5py dataset; rows at and beyond ``n_shots`` are not committed."""
        return self._f[S.FRAMES]

    def close(self) -> None:
        """Close the file."""
        self._f.close()

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_run(path: str | Path) -> RunReader:
    """Open a run file for reading (also crashed or live files); raises RunFileError if unusable."""
    return RunReader(path)
