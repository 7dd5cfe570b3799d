"""Opening HDF5 files for SWMR reading with a bounded number of metadata read attempts.

An SWMR reader retries a metadata read whose checksum fails (the writer may be rewriting it),
sleeping 1 ns, 2 ns, 4 ns, ... between attempts. HDF5's default for SWMR is 100 attempts, i.e. a
corrupt file makes the reader sleep ~2^100 ns: it hangs for ever. h5py does not expose
``H5Pset_metadata_read_attempts``, so it is called through ctypes on the HDF5 library h5py itself
loaded (found in /proc/self/maps, Linux). Where that is impossible ``swmr_read_attempts_bounded()``
is False and callers open without SWMR first.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import re
from pathlib import Path

import h5py

log = logging.getLogger(__name__)

# 24 attempts sleep at most 2^24 ns ~ 17 ms in all: plenty for a live writer, bounded for corruption
READ_ATTEMPTS = 24


@functools.lru_cache(maxsize=1)
def _set_attempts_fn() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for lib in sorted(set(re.findall(r"(/\S*/libhdf5(?:-[0-9a-f]+)?\.so[.\d]*)$", maps, re.M))):
        try:
            fn = ctypes.CDLL(lib).H5Pset_metadata_read_attempts
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_int64, ctypes.c_uint]
        fn.restype = ctypes.c_int
        return fn
    log.warning("HDF5 library of h5py not found: SWMR reads keep HDF5's unbounded retries")
    return None


def swmr_read_attempts_bounded() -> bool:
    """True if SWMR opens from ``open_swmr_read`` bound their metadata read retries."""
    return _set_attempts_fn() is not None


def open_swmr_read(path: Path) -> h5py.File:
    """``h5py.File(path, 'r', libver='latest', swmr=True)`` with at most READ_ATTEMPTS metadata reads."""
    fn = _set_attempts_fn()
    if fn is None:
        return h5py.File(path, "r", libver="latest", swmr=True)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
    if fn(fapl.id, READ_ATTEMPTS) < 0:
        raise RuntimeError("H5Pset_metadata_read_attempts failed")
    fid = h5py.h5f.open(str(path).encode(), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, fapl=fapl)
    return h5py.File(fid)
