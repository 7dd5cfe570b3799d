"""``repair(src, dst)``: a clean, closed copy of a run file (e.g. after a crash) that any h5py opens.

The copy holds the committed shots only, the latest complete results, and every metadata item; it
is written without SWMR (plain HDF5, default library-version bounds) to ``dst`` via a temporary
file ``.DST.<host>.<pid>.partial`` renamed at the end, so a failed repair never leaves a half-written
``dst``; a failed repair deletes its temporary file, and the next one deletes those of repairs
that were killed.
"""
from __future__ import annotations

from pathlib import Path

from typing import Any

import h5py
import numpy as np

from app.runfile import columns as C
from app.runfile import nexus as NX
from app.runfile import schema as S
from app.runfile.reader import open_run
from app.runfile.writer import publish_no_overwrite, remove_stale_temporaries, temp_name
from sequences.shot import ShotTime, utc_now_iso


def repair(src: str | Path, dst: str | Path, *, compression: str = "none") -> int:
    """Copy the readable content of ``src`` into a new file ``dst``; returns the number of shots.

    ``compression`` of the copy's frames: 'none' (readable without hdf5plugin) or 'blosc-lz4'.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise S.RunFileError(f"{dst}: the copy must be a different file from {src}")
    if dst.exists():
        raise S.RunFileError(f"{dst}: already exists; repair never overwrites a file")
    filters = S.frame_filter(compression)
    remove_stale_temporaries(dst.parent)          # left by a repair that was killed
    tmp = temp_name(dst, "partial")
    with open_run(src) as run:
        n = run.n_shots
        table = run._f[S.SHOTS][:n]
        text_end = int((table["text_offset"] + table["text_length"]).max()) if n else 0
        try:
            with h5py.File(tmp, "w") as out:
                for key, value in run._f.attrs.items():
                    out.attrs[key] = value
                out.attrs["repaired_from"] = str(src)
                out.attrs["repaired_utc"] = utc_now_iso()
                for path in S.META.values():
                    out.create_dataset(path, data=run._f[path][()],
                                       dtype=h5py.string_dtype("utf-8"))
                nf, (h, w) = len(run.frame_names), run.frame_shape
                frames = out.create_dataset(S.FRAMES, shape=(n, nf, h, w),
                                            maxshape=(None, nf, h, w), dtype="<u2",
                                            chunks=(1, nf, h, w), **filters)
                for key, value in run.frames_dataset.attrs.items():
                    frames.attrs[key] = value
                frames.attrs["compression"] = compression
                has = table["has_frames"].astype(bool)
                for first, block in run.iter_frames(chunk=16):
                    for k in range(block.shape[0]):
                        if has[first + k]:
                            frames[first + k] = block[k]
                out.create_dataset(S.SHOTS, data=table, maxshape=(None,),
                                   chunks=(S.SHOT_ROWS_PER_CHUNK,))
                text = run._f[S.SHOT_TEXT][:text_end]
                out.create_dataset(S.SHOT_TEXT, data=text, maxshape=(None,),
                                   chunks=(S.TEXT_BYTES_PER_CHUNK,))
                out.create_dataset(S.N_COMPLETE, data=np.int64(n))
                _copy_results(run, out)
                end = run.end_state if run.closed_cleanly else "crashed"
                out.create_dataset(S.END_STATE, data=np.bytes_(end.encode()),
                                   dtype=S.END_STATE_DTYPE)
                out.create_dataset(S.END_UTC, data=np.bytes_(run.end_utc.encode()),
                                   dtype=S.UTC_DTYPE)
                if run.schema_version >= 2:
                    _copy_v2(run, out, n)
            publish_no_overwrite(tmp, dst)
        finally:
            if tmp.exists():
                tmp.unlink()
    return n


def _copy_results(run: Any, out: h5py.File) -> None:
    results = run.results
    state = np.array([-1, 0], dtype="<i8")
    data = np.zeros(0, dtype=np.uint8)
    if results is not None:
        slot, length = (int(v) for v in run._f[S.RESULTS_STATE][()])
        data = run._f[S.RESULTS_SLOTS[slot]][:length]
        state[:] = (0, length)
    out.create_dataset(S.RESULTS_SLOTS[0], data=data, maxshape=(None,),
                       chunks=(S.RESULTS_BYTES_PER_CHUNK,))
    out.create_dataset(S.RESULTS_SLOTS[1], shape=(0,), maxshape=(None,), dtype="u1",
                       chunks=(S.RESULTS_BYTES_PER_CHUNK,))
    out.create_dataset(S.RESULTS_STATE, data=state)


def _copy_tree(src: h5py.Group, dst: h5py.Group, rows: int | None = None) -> None:
    """Copy groups, datasets (values read and written again: nothing but data crosses) and
    attributes; 1-D datasets cut to ``rows`` if given."""
    for key, value in src.attrs.items():
        dst.attrs[key] = value
    for name, obj in src.items():
        if isinstance(obj, h5py.Group):
            _copy_tree(obj, dst.create_group(name), rows)
            continue
        data = obj[()] if obj.ndim == 0 else obj[: rows if rows is not None else obj.shape[0]]
        ds = dst.create_dataset(name, data=data, dtype=obj.dtype)
        for key, value in obj.attrs.items():
            ds.attrs[key] = value


def _copy_v2(run: Any, out: h5py.File, n: int) -> None:
    """Schema 2's typed columns, counts, results tables, instrument, provenance and NeXus entry."""
    src = run._f
    cols = out.create_group(C.COLUMNS)       # rebuilt from table + text: complete after a crash
    for key, value in src[C.COLUMNS].attrs.items():
        cols.attrs[key] = value
    table = run.table()
    rows = [(int(table["index"][i]), run.shot_text(i).get("settings", {}),
             ShotTime(str(table["start_utc"][i]), str(table["end_utc"][i]),
                      float(table["start_monotonic_s"][i]), float(table["end_monotonic_s"][i])))
            for i in range(n)]
    for name, values in C.column_arrays(rows, C.group_columns(src[C.COLUMNS])).items():
        ds = cols.create_dataset(name, data=values)
        for key, value in src[C.COLUMNS][name].attrs.items():
            ds.attrs[key] = value
    for path in (C.COUNTS, NX.CRITERIA, NX.REGIONS, NX.INSTRUMENT, NX.PROVENANCE):
        _copy_tree(src[path], out.create_group(path))
    for path in ("shots", "results", "meta", "run"):
        for key, value in src[path].attrs.items():
            out[path].attrs[key] = value
    entry = src.get("entry")
    title = run.run_name
    start = run.created_utc
    if isinstance(entry, h5py.Group) and "start_time" in entry:
        start = run._text("entry/start_time")
    NX.link_entry(out, title, start)
