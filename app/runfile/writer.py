"""Writing a run file: metadata first, then SWMR appends of one shot at a time, crash-safe.

Commit protocol per shot: append the frames, the shot's JSON text and its table row, flush; then
write the committed-shot counter ``shots/n_complete`` and flush again. A reader trusts only rows
below the counter, so a kill at any moment leaves either the previous or the new shot count, never a
half-written shot. ``write_shot`` returns only after both flushes: the shot is then complete.

Faults: the file is created under a hidden temporary name and renamed (without overwriting) once
its structure is complete and SWMR is on, so a kill during creation never leaves an unopenable file
under the run's name. Beside it the writer keeps a reserve file (a few MB, allocated at start);
when a write fails (a full disk, an I/O error) the writer stops writing shots, deletes the reserve
and closes the file as 'faulted' in the space it freed, so the file's open-for-write flag is
cleared and every committed shot stays readable by any HDF5 reader.
"""
from __future__ import annotations

import json
import errno
import logging
import os
import re
import socket
import zlib
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from app.runfile import schema as S
from app.runfile import nexus
from app.runfile.columns import (ChunkAppender, ShotColumns, create_columns, scan_columns,
                                 write_counts)
from sequences.shot import ShotRecord, utc_now_iso

log = logging.getLogger(__name__)

_TEXT_DT = h5py.string_dtype("utf-8")


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise S.RunFileError(f"{what} cannot be stored as JSON: {exc}") from None


GROW_SHOTS = 64   # frames and table rows are allocated this many shots at a time
GROW_TEXT_BYTES = 65536
RESERVE_MIN_BYTES = 4 << 20      # the reserve file: room to close the file after a full disk
RESERVE_MAX_BYTES = 64 << 20


def _one_line(exc: BaseException) -> str:
    """An HDF5/OS error as one short line (HDF5 messages span lines and repeat the file name)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "errno = 28" in str(exc):
        return "no space left on device"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:240]}"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def temp_name(path: Path, kind: str) -> Path:
    """``.NAME.<host>.<pid>.<kind>`` beside ``path``: hidden, and removable once this process is
    gone (the host in the name: a data directory shared between computers keeps the others')."""
    return path.with_name(f".{path.name}.{_host()}.{os.getpid()}.{kind}")


TEMP_KINDS = ("creating", "reserve", "partial")


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the ``.NAME.<host>.<pid>.creating|reserve|partial`` files of this host in
    ``directory`` left by writers and repairs that were killed (their process no longer exists);
    returns what was deleted."""
    removed = []
    host = _host()
    for tmp in [p for kind in TEMP_KINDS for p in directory.glob(f".*.{kind}")]:
        parts = tmp.name.rsplit(".", 3)
        if len(parts) != 4 or parts[1] != host or not parts[2].isdigit() or _alive(int(parts[2])):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def publish_no_overwrite(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the name ``path`` without ever overwriting ``path`` (hard link + unlink; a
    checked rename where the file system has no hard links)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise S.RunFileError(f"{path}: already exists; a run never overwrites a file") from None
    except OSError:
        if path.exists():
            raise S.RunFileError(f"{path}: already exists; a run never overwrites a file") from None
        os.rename(tmp, path)
        return
    os.unlink(tmp)


class RunWriter:
    """One run file, opened for SWMR appends. Use as a context manager or call ``close()``.

    ``frame_shape`` is (H, W) in pixels; every ok shot must carry ``len(frame_names)`` frames of
    that shape. ``compression`` is 'none' (the writer's default; raw chunks written directly) or
    'blosc-lz4' (lossless, ~1.8x smaller files, needs ``hdf5plugin`` to read; the default of a
    run, as it does not slow acquisition). ``fsync`` also forces each committed shot to the
    disk (survives a power cut; two disk syncs per shot). ``provenance``: items added to the
    file's provenance (e.g. the configuration file's hash); versions, host and user are added here.
    """

    def __init__(self, path: str | Path, *, frame_names: tuple[str, ...],
                 frame_shape: tuple[int, int], plan_toml: str = "", plan_json: str = "{}",
                 calibration: Mapping[str, Any] | None = None,
                 instruments: Mapping[str, Any] | None = None,
                 config: Mapping[str, Any] | None = None, run_name: str = "",
                 compression: str = "none", fsync: bool = False,
                 software_version: str | None = None,
                 provenance: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        names = tuple(frame_names)
        if not names or len(set(names)) != len(names):
            raise S.RunFileError(f"{self.path}: frame_names = {frame_names!r}: expected unique names")
        h, w = (int(v) for v in frame_shape)
        if h < 1 or w < 1:
            raise S.RunFileError(f"{self.path}: frame_shape = {frame_shape!r}: expected (H, W) >= 1")
        filters = S.frame_filter(compression)
        texts = {
            "plan_toml": plan_toml,
            "plan_json": plan_json,
            "calibration_json": _json(calibration, "calibration"),
            "instruments_json": _json(dict(instruments or {}), "instruments"),
            "config_json": _json(dict(config or {}), "config"),
        }
        try:
            json.loads(plan_json)
        except ValueError as exc:
            raise S.RunFileError(f"{self.path}: plan_json is not JSON: {exc}") from None
        self.frame_names = names
        self.frame_shape = (h, w)
        self.compression = compression
        self._compress = S.frame_compressor(compression)
        self.fsync = fsync
        self.n_shots = 0
        self._last_index = -1
        self._text_len = 0
        self._shot_slots = 0        # allocated length of the frames and table datasets
        self._text_slots = 0        # allocated length of the text dataset (bytes)
        self._results_slot = -1
        self._results: Mapping[str, Any] | None = None
        self._closed = False
        if self.path.exists():
            raise S.RunFileError(f"{self.path}: already exists; a run never overwrites a file")
        if not self.path.parent.is_dir():
            raise S.RunFileError(f"{self.path}: cannot create: directory {self.path.parent} "
                                 "does not exist")
        remove_stale_temporaries(self.path.parent)
        tmp = temp_name(self.path, "creating")
        self.failed = ""             # why writing failed (the writer then only closes the file)
        try:
            # frame chunks start on 4 KiB boundaries: page-aligned copies into the page cache.
            # fs_strategy "aggregate": no in-memory free-space manager. The file is append-only,
            # so it frees nothing worth tracking, and with it (the default) direct chunk writes
            # beside variable-size compressed chunks left ~35 MB of heap per 1000 shots
            # (tests/app/test_runfile_memory.py); files are the same size either way.
            self._f = h5py.File(tmp, "w-", libver=S.LIBVER, alignment_threshold=65536,
                                alignment_interval=4096, fs_strategy="aggregate")
        except OSError as exc:
            raise S.RunFileError(f"{self.path}: cannot create: {_one_line(exc)}") from None
        self._reserve = temp_name(self.path, "reserve")
        try:
            version = software_version or S.software_version()
            prov = nexus.provenance(version, {
                "config_json_sha256": nexus.sha256_text(texts["config_json"]),
                "calibration_json_sha256": nexus.sha256_text(texts["calibration_json"]),
                "plan_toml_sha256": nexus.sha256_text(plan_toml), **dict(provenance or {})})
            self._create(texts, filters, run_name, version)
            nexus.create_structure(self._f, instruments=dict(instruments or {}), prov=prov,
                                   run_name=run_name, created_utc=str(self._f.attrs["created_utc"]))
            self._f.swmr_mode = True
            self._f.flush()
            self._make_reserve(len(names) * h * w * 2)
            publish_no_overwrite(tmp, self.path)
        except BaseException as exc:
            try:
                self._f.close()
            finally:
                tmp.unlink(missing_ok=True)
                self._reserve.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise S.RunFileError(f"{self.path}: cannot create: {_one_line(exc)}") from None
            raise
        self._fd = self._f.id.get_vfd_handle() if fsync else None
        # handles kept open: looking datasets up by path costs more than writing a row
        f = self._f
        self._ds_frames, self._ds_text = f[S.FRAMES], f[S.SHOT_TEXT]
        self._ds_table, self._ds_count = f[S.SHOTS], f[S.N_COMPLETE]
        self._rows, self._text = ChunkAppender(self._ds_table), ChunkAppender(self._ds_text)
        self._columns = ShotColumns(f)
        self._scalar = h5py.h5s.create(h5py.h5s.SCALAR)
        self._count_buf = np.zeros((), dtype="<i8")
        self._frame_block = (1, len(names), h, w)
        self._frame_mspace = h5py.h5s.create_simple(self._frame_block)
        self._frame_type = h5py.h5t.py_create(np.dtype("<u2"))
        self._count_type = h5py.h5t.py_create(self._count_buf.dtype)
        log.info("run file %s created (%s, frames %s x %dx%d)", self.path, compression,
                 len(names), h, w)

    def _make_reserve(self, shot_bytes: int) -> None:
        """Allocate the reserve file (real blocks, not a sparse file) that a full disk frees."""
        size = min(max(RESERVE_MIN_BYTES, 2 * shot_bytes), RESERVE_MAX_BYTES)
        fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                block = b"\0" * (1 << 20)
                for _ in range(0, size, len(block)):
                    os.write(fd, block)
        finally:
            os.close(fd)

    def _create(self, texts: dict[str, str], filters: dict[str, object], run_name: str,
                version: str) -> None:
        f = self._f
        f.attrs["format"] = S.FORMAT
        f.attrs["schema_version"] = S.SCHEMA_VERSION
        f.attrs["software_version"] = version
        f.attrs["created_utc"] = utc_now_iso()
        f.attrs["run_name"] = run_name
        for key, path in S.META.items():
            f.create_dataset(path, data=texts[key], dtype=_TEXT_DT)
        nf, (h, w) = len(self.frame_names), self.frame_shape
        frames = f.create_dataset(S.FRAMES, shape=(0, nf, h, w), maxshape=(None, nf, h, w),
                                  dtype="<u2", chunks=(1, nf, h, w), **filters)
        frames.attrs["frame_names"] = list(self.frame_names)
        frames.attrs["units"] = "camera counts"
        frames.attrs["compression"] = self.compression
        f.create_dataset(S.SHOTS, shape=(0,), maxshape=(None,), dtype=S.SHOT_DTYPE,
                         chunks=(S.SHOT_ROWS_PER_CHUNK,))
        f.create_dataset(S.SHOT_TEXT, shape=(0,), maxshape=(None,), dtype="u1",
                         chunks=(S.TEXT_BYTES_PER_CHUNK,))
        f.create_dataset(S.N_COMPLETE, data=np.int64(0))
        for slot in S.RESULTS_SLOTS:
            f.create_dataset(slot, shape=(0,), maxshape=(None,), dtype="u1",
                             chunks=(S.RESULTS_BYTES_PER_CHUNK,))
        f.create_dataset(S.RESULTS_STATE, data=np.array([-1, 0], dtype="<i8"))
        f.create_dataset(S.END_STATE, data=np.bytes_(b"running"), dtype=S.END_STATE_DTYPE)
        f.create_dataset(S.END_UTC, data=np.bytes_(b""), dtype=S.UTC_DTYPE)
        create_columns(f, scan_columns(json.loads(texts["plan_json"] or "{}").get("scan")))

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close("faulted" if exc_type is not None else "completed")

    def _check_open(self) -> None:
        if self._closed:
            raise S.RunFileError(f"{self.path}: the run file is closed")
        if self.failed:
            raise S.RunFileError(f"{self.path}: writing stopped after an earlier error "
                                 f"({self.failed}); {self.n_shots} shots committed")

    def _fail_write(self, what: str, exc: BaseException) -> S.RunFileError:
        """Stop writing after an HDF5/OS error; the error to raise (one line)."""
        self.failed = f"{what}: {_one_line(exc)}"
        log.info("run file %s: %s; %d shots committed, writing stopped", self.path, self.failed,
                  self.n_shots)
        return S.RunFileError(f"{self.path}: {self.failed}; {self.n_shots} shots committed, "
                              "writing stopped")

    def _commit(self) -> None:
        self._f.flush()
        if self._fd is not None:
            os.fsync(self._fd)

    def write_shot(self, shot: ShotRecord) -> int:
        """Append one shot and commit it; returns its row. Raises RunFileError for a duplicate or
        out-of-order shot index, other frame names or another frame shape."""
        self._check_open()
        if shot.index <= self._last_index:
            raise S.RunFileError(f"{self.path}: shot index {shot.index} already written or out of "
                                 f"order (last written: {self._last_index}); not written twice")
        if shot.frame_names != self.frame_names:
            raise S.RunFileError(f"{self.path}: shot {shot.index} has frames {shot.frame_names}, "
                                 f"the run file expects {self.frame_names}")
        if shot.frames is not None and shot.frames.shape[1:] != self.frame_shape:
            raise S.RunFileError(f"{self.path}: shot {shot.index} frames are "
                                 f"{shot.frames.shape[1]}x{shot.frames.shape[2]}, the run file "
                                 f"expects {self.frame_shape[0]}x{self.frame_shape[1]} (H x W)")
        text = _json({"reason": shot.reason, "settings": dict(shot.settings),
                      "extra": dict(shot.extra)}, f"shot {shot.index} settings").encode("utf-8")
        frames_crc = 0
        if shot.frames is not None:
            frames_crc = shot.frames_crc32       # computed when the shot was assembled
        row = np.zeros((), dtype=S.SHOT_DTYPE)
        t = shot.timing
        row[()] = (shot.index, shot.cycle, shot.sequence_index, shot.attempt,
                   shot.direction.encode(), shot.status.encode(), shot.frames is not None,
                   t.start_utc.encode(), t.end_utc.encode(), t.start_monotonic_s,
                   t.end_monotonic_s, self._text_len, len(text), frames_crc, zlib.crc32(text))
        # compressed before any HDF5 call: Blosc threads, the GIL released, h5py's lock free
        chunk = self._compress(shot.frames) if self._compress and shot.frames is not None \
            else None
        try:
            n = self.n_shots
            frames = self._ds_frames
            if self._shot_slots <= n:         # grown in blocks; readers count committed shots only
                slots = n + GROW_SHOTS           # (length kept here: Dataset.shape costs ~7 us a call)
                frames.resize(slots, axis=0)
                self._ds_table.resize(slots, axis=0)
                self._shot_slots = slots
            if shot.frames is not None:
                if self.compression == "none":
                    # one chunk per shot: hand HDF5 the bytes directly (no type conversion or
                    # selection machinery), as fast as a raw file write
                    frames.id.write_direct_chunk((n, 0, 0, 0),
                                                 np.ascontiguousarray(shot.frames, dtype="<u2").data)
                elif chunk is not None:          # Blosc buffer, as the HDF5 filter writes it
                    frames.id.write_direct_chunk((n, 0, 0, 0), chunk)
                else:                          # through the filter pipeline, without h5py's checks
                    fspace = frames.id.get_space()
                    fspace.select_hyperslab((n, 0, 0, 0), self._frame_block)
                    frames.id.write(self._frame_mspace, fspace,
                                    np.ascontiguousarray(shot.frames, dtype="<u2"),
                                    mtype=self._frame_type)
            if text:
                buf = self._ds_text
                if self._text_slots < self._text_len + len(text):
                    slots = self._text_len + len(text) + GROW_TEXT_BYTES
                    buf.resize(slots, axis=0)
                    self._text_slots = slots
                self._text.write(self._text_len, np.frombuffer(text, dtype=np.uint8))
            self._columns.write(n, shot)
            self._rows.write(n, row.reshape(1))
            self._commit()
            self._count_buf[()] = n + 1
            self._ds_count.id.write(self._scalar, self._scalar, self._count_buf, mtype=self._count_type)
            self._commit()
        except Exception as exc:      # full disk, I/O error: no further shot is written
            raise self._fail_write(f"writing shot {shot.index} failed", exc) from None
        self.n_shots = n + 1
        self._text_len += len(text)
        self._last_index = shot.index
        return n

    def write_results(self, results: Mapping[str, Any]) -> None:
        """Store (or replace) the monitor's results: a JSON object that should include the region
        definitions. Double-buffered, so a crash keeps the previous results intact."""
        self._check_open()
        data = _json(dict(results), "results").encode("utf-8")
        slot = 1 - self._results_slot if self._results_slot >= 0 else 0
        try:
            ds = self._f[S.RESULTS_SLOTS[slot]]
            ds.resize(len(data), axis=0)
            if data:
                ds[:] = np.frombuffer(data, dtype=np.uint8)
            self._commit()
            self._f[S.RESULTS_STATE][:] = np.array([slot, len(data)], dtype="<i8")
            self._commit()
        except Exception as exc:
            raise self._fail_write("writing the results failed", exc) from None
        self._results_slot = slot
        self._results = results

    def write_counts(self, counts: Mapping[str, Any]) -> int:
        """Store the chosen geometry's per-shot region counts (arrays by the names of
        ``columns.COUNT_COLUMNS``: index, N1A, N2A, N1B, N2B, det_SA, det_SB; atoms); replaces
        earlier ones. Returns the rows written."""
        self._check_open()
        try:
            n = write_counts(self._f, {k: np.asarray(v) for k, v in counts.items()})
            self._commit()
        except ValueError as exc:
            raise S.RunFileError(f"{self.path}: {exc}") from None
        except Exception as exc:
            raise self._fail_write("writing the shot counts failed", exc) from None
        return n

    def close(self, end_state: str = "completed") -> None:
        """Record how the run ended ('completed', 'stopped', 'aborted', 'faulted') and close."""
        if self._closed:
            return
        if end_state not in S.WRITER_END_STATES:
            raise S.RunFileError(f"end_state = {end_state!r}: expected one of "
                                 f"{', '.join(S.WRITER_END_STATES)}")
        self._closed = True
        if self.failed:                 # room to close in: the reserve goes first
            self._reserve.unlink(missing_ok=True)
        error = None
        try:
            if self._results is not None and not self.failed:     # typed copy of the results
                nexus.write_results_tables(self._f, self._results)
            self._columns.flush(rows=self.n_shots)
        except Exception as exc:
            error = exc
        try:
            self._ds_frames.resize(self.n_shots, axis=0)    # drop the slots allocated ahead
            self._ds_table.resize(self.n_shots, axis=0)
            self._ds_text.resize(self._text_len, axis=0)
            self._f[S.END_STATE][()] = np.bytes_(end_state.encode())
            self._f[S.END_UTC][()] = np.bytes_(utc_now_iso().encode())
            self._commit()
        except Exception as exc:
            error = error or exc
        try:
            self._f.close()
        except Exception as exc:
            error = error or exc
        finally:
            self._reserve.unlink(missing_ok=True)
        if error is not None:
            raise S.RunFileError(f"{self.path}: closing the run file failed ({_one_line(error)}); "
                                 f"{self.n_shots} shots committed") from None
        log.info("run file %s closed (%s, %d shots)", self.path, end_state, self.n_shots)
