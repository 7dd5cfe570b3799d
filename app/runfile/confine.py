"""Run files from outside are untrusted: before anything is read, the whole file is checked to be
self-contained and shaped as the schema says.

Refused, with one line naming the object: external links, soft links and user-defined links
(steerlab writes hard links only), datasets whose raw data lives in other files (HDF5 external
storage) or is assembled from other datasets (virtual datasets), filters other than the lossless
ones steerlab and common writers use, more objects than any run file holds, and schema datasets of
another type or shape. Nothing here follows a link or reads raw data: only link and creation
property lists are inspected, so a crafted file cannot make steerlab open another file.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from app.runfile.schema import HDF5_ERRORS, RunFileError, reraise_interrupt

_ERRORS = HDF5_ERRORS
MAX_OBJECTS = 20_000          # a run file holds ~100 objects; a crafted file cannot make us walk for ever
# HDF5 filter ids allowed on any dataset (lossless ones only; registered ids, hdf5plugin's list)
ALLOWED_FILTERS = {
    1: "deflate", 2: "shuffle", 3: "fletcher32", 32001: "blosc", 32004: "lz4",
    32008: "bitshuffle", 32015: "zstd", 32026: "blosc2",
}


@dataclass(frozen=True)
class Expect:
    """What a schema dataset must be: ``check(ds)`` is True; ``text`` says what was expected."""

    check: Callable[[h5py.Dataset], bool]
    text: str


def is_text_scalar(ds: h5py.Dataset) -> bool:
    """A scalar string (variable-length UTF-8/ASCII or fixed-size bytes)."""
    return ds.shape == () and (h5py.check_string_dtype(ds.dtype) is not None or ds.dtype.kind == "S")


def is_int_scalar(ds: h5py.Dataset) -> bool:
    return ds.shape == () and ds.dtype.kind in "iu"


def is_bytes_1d(ds: h5py.Dataset) -> bool:
    return ds.ndim == 1 and ds.dtype == np.uint8


TEXT = Expect(is_text_scalar, "a scalar string")
INT = Expect(is_int_scalar, "a scalar integer")
BYTES = Expect(is_bytes_1d, "1-D uint8")


def _describe(ds: h5py.Dataset) -> str:
    return f"{ds.dtype} {ds.shape}"


def _check_storage(path: Path, name: str, ds: h5py.Dataset) -> None:
    plist = ds.id.get_create_plist()
    if plist.get_layout() == h5py.h5d.VIRTUAL:
        sources = {plist.get_virtual_filename(k) for k in range(plist.get_virtual_count())}
        raise RunFileError(f"{path}: /{name} is a virtual dataset (data from "
                           f"{', '.join(sorted(sources)) or 'other datasets'}); run files hold "
                           "their own data, refused")
    if plist.get_external_count() > 0:
        target = plist.get_external(0)[0].decode("utf-8", "replace")
        raise RunFileError(f"{path}: /{name} stores its data in external file {target!r}; run "
                           "files hold their own data, refused")
    for k in range(plist.get_nfilters()):
        fid = plist.get_filter(k)[0]
        if fid not in ALLOWED_FILTERS:
            raise RunFileError(f"{path}: /{name} uses HDF5 filter {fid}; expected one of "
                               + ", ".join(f"{v} ({i})" for i, v in ALLOWED_FILTERS.items()))


def check_confined(f: h5py.File, path: Path, schema: Mapping[str, Expect]) -> None:
    """Raise RunFileError unless every link in ``f`` is a hard link, every dataset holds its own
    data with allowed filters, and every ``schema`` path (relative, no leading '/') that exists is
    a dataset of the expected kind. Missing schema paths are left to the caller."""
    seen = 0

    def visit(name: str, link: h5py.HardLink | h5py.SoftLink | h5py.ExternalLink) -> str | None:
        """The refusal of one link, or None (a non-None return stops the walk: raising inside an
        h5py visit callback is not safe)."""
        nonlocal seen
        seen += 1
        if seen > MAX_OBJECTS:
            return f"more than {MAX_OBJECTS} objects; not a run file, refused"
        if isinstance(link, h5py.ExternalLink):
            return (f"/{name} is an external link to {link.filename}:{link.path}; run files are "
                    "self-contained, refused")
        if isinstance(link, h5py.SoftLink):
            return f"/{name} is a soft link to {link.path}; run files hold hard links only, refused"
        if not isinstance(link, h5py.HardLink):
            return (f"/{name} is a {type(link).__name__}; run files hold hard links only, "
                    "refused")
        return None

    try:
        refusal = f.visititems_links(visit)
    except _ERRORS as exc:
        reraise_interrupt(exc)
        raise RunFileError(f"{path}: damaged or truncated file: its links cannot be listed: "
                           f"{exc}") from None
    if refusal is not None:
        raise RunFileError(f"{path}: {refusal}")
    # only hard links remain: objects are inside this file
    datasets: list[tuple[str, h5py.Dataset]] = []

    def collect(name: str, obj: h5py.Group | h5py.Dataset | h5py.Datatype) -> None:
        if isinstance(obj, h5py.Dataset):
            datasets.append((name, obj))

    try:
        f.visititems(collect)
    except _ERRORS as exc:
        reraise_interrupt(exc)
        raise RunFileError(f"{path}: damaged or truncated file: its objects cannot be "
                           f"inspected: {exc}") from None
    for name, ds in datasets:
        try:
            _check_storage(path, name, ds)
        except RunFileError:
            raise
        except _ERRORS as exc:
            reraise_interrupt(exc)
            raise RunFileError(f"{path}: damaged or truncated file: /{name} cannot be "
                               f"inspected: {exc}") from None
    for name, expect in schema.items():
        try:
            obj = f.get(name)
            ok = obj is None or (isinstance(obj, h5py.Dataset) and expect.check(obj))
        except _ERRORS as exc:
            reraise_interrupt(exc)
            raise RunFileError(f"{path}: damaged or truncated file: /{name} cannot be "
                               f"inspected: {exc}") from None
        if obj is None or ok:
            continue
        if not isinstance(obj, h5py.Dataset):
            raise RunFileError(f"{path}: /{name} is a {type(obj).__name__}, expected a dataset "
                               f"({expect.text})")
        raise RunFileError(f"{path}: /{name} is {_describe(obj)}, expected {expect.text}")
