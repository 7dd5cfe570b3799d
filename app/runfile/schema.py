"""The layout of a steerlab run file (schema version 2; version 1 still read); documented in
docs/run-file-format.md. Schema 2 adds typed per-shot columns (app/runfile/columns.py), the NeXus
structure, provenance and typed final results (app/runfile/nexus.py) to schema 1's objects.

Everything that is appended during a run has a fixed-size type (SWMR cannot grow variable-length
data safely): per-shot metadata is one compound row, per-shot text (reason, settings read back)
is UTF-8 JSON appended to a byte dataset and addressed by offset/length in the row.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

FORMAT = "steerlab-run"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)

FRAMES = "frames"
SHOTS = "shots/table"
SHOT_TEXT = "shots/text"
N_COMPLETE = "shots/n_complete"
RESULTS_SLOTS = ("results/slot0", "results/slot1")
RESULTS_STATE = "results/state"
END_STATE = "run/end_state"
END_UTC = "run/end_utc"
META = {
    "plan_toml": "meta/plan_toml",
    "plan_json": "meta/plan_json",
    "calibration_json": "meta/calibration_json",
    "instruments_json": "meta/instruments_json",
    "config_json": "meta/config_json",
}
REQUIRED = (FRAMES, SHOTS, SHOT_TEXT, N_COMPLETE, *RESULTS_SLOTS, RESULTS_STATE, END_STATE,
            END_UTC, *META.values())

SHOT_DTYPE = np.dtype([
    ("index", "<i8"),
    ("cycle", "<i8"),
    ("sequence_index", "<i8"),
    ("attempt", "<i4"),
    ("direction", "S1"),
    ("status", "S6"),
    ("has_frames", "u1"),
    ("start_utc", "S32"),
    ("end_utc", "S32"),
    ("start_monotonic_s", "<f8"),
    ("end_monotonic_s", "<f8"),
    ("text_offset", "<i8"),
    ("text_length", "<i8"),
    ("frames_crc32", "<u4"),  # zlib.crc32 of the shot's (F, H, W) little-endian uint16 frames
    ("text_crc32", "<u4"),  # zlib.crc32 of the shot's UTF-8 JSON text
])

# "running": the writer has not closed the file (still writing, or it crashed);
# "crashed": set by repair() on a copy of a file left "running".
END_STATES = ("running", "completed", "stopped", "aborted", "faulted", "crashed")
WRITER_END_STATES = ("completed", "stopped", "aborted", "faulted")
END_STATE_DTYPE = "S16"
UTC_DTYPE = "S32"
SHOT_ROWS_PER_CHUNK = 16
TEXT_BYTES_PER_CHUNK = 4096
RESULTS_BYTES_PER_CHUNK = 64 * 1024

COMPRESSIONS = ("none", "blosc-lz4")

# HDF5 library-version bounds of every file steerlab writes: SWMR needs a low bound of v110, and
# the high bound keeps the object header, layout and datatype messages at versions that HDF5 1.10
# readers (Debian 12's h5dump/h5ls, h5py built on HDF5 1.10-1.14) can read. "latest" would let the
# installed HDF5 (2.0 in the h5py 3.16 wheel) pick message versions that 1.10 refuses ("bad version
# number for layout message").
LIBVER = ("v110", "v110")


class RunFileError(Exception):
    """A run file cannot be written or read; the message names the file and what is wrong or missing."""


# what h5py raises on a damaged file; it turns an exception raised inside a visit callback into
# SystemError
HDF5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, SystemError)


def reraise_interrupt(exc: BaseException) -> None:
    """Raise the Ctrl-C / SIGTERM hidden behind an HDF5 error, if there is one.

    A signal handler that raises while h5py is inside a call (its lock's ``__exit__``, a visit
    callback) comes out as SystemError "returned a result with an exception set", chained to the
    KeyboardInterrupt; that is an interruption, not a damaged file."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            raise e
        seen.add(id(e))
        e = e.__cause__ or e.__context__


def frame_filter(compression: str) -> dict[str, object]:
    """h5py ``create_dataset`` keywords for the frame compression ('none' or 'blosc-lz4')."""
    if compression == "none":
        return {}
    if compression == "blosc-lz4":
        import hdf5plugin

        return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE))
    raise RunFileError(f"compression = {compression!r}: expected one of {', '.join(COMPRESSIONS)}")


def frame_compressor(compression: str) -> Callable[[np.ndarray], bytes] | None:
    """A function giving the bytes of one frame chunk exactly as the HDF5 filter of
    ``frame_filter(compression)`` stores them, for direct chunk writes; None if the writer must
    go through HDF5's filter pipeline (no compression, or python-blosc not installed).

    'blosc-lz4' chunks are Blosc 1 buffers (lz4, level 5, bit-shuffle, 2-byte items), which the
    HDF5 Blosc filter (id 32001) decompresses as its own. python-blosc compresses ~2x faster than
    the filter pipeline (no chunk copies), with the GIL released, in Blosc's thread pool."""
    if compression != "blosc-lz4":
        return None
    try:
        import blosc
    except ImportError:
        return None

    def compress(frames: np.ndarray) -> bytes:
        a = np.ascontiguousarray(frames, dtype="<u2")
        return blosc.compress_ptr(a.__array_interface__["data"][0], a.size, typesize=2,
                                  clevel=5, shuffle=blosc.BITSHUFFLE, cname="lz4")

    return compress


def software_version() -> str:
    """The installed steerlab version (package metadata), or 'unknown'."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("steerlab")
    except PackageNotFoundError:
        return "unknown"
