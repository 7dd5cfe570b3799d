"""Run files: one HDF5 file per run, SWMR, crash-safe (format: docs/run-file-format.md).

- ``RunWriter(path, frame_names=..., frame_shape=..., ...)``: ``write_shot``, ``write_results``, ``close``.
- ``open_run(path) -> RunReader``: plan, calibration, instruments, shot table, frames, results.
- ``repair(src, dst)``: a clean copy of a crashed file that any plain h5py reader opens.
"""
from __future__ import annotations

from app.runfile.reader import RunReader, open_run
from app.runfile.repair import repair
from app.runfile.schema import FORMAT, SCHEMA_VERSION, RunFileError
from app.runfile.writer import RunWriter

__all__ = ["FORMAT", "SCHEMA_VERSION", "RunFileError", "RunReader", "RunWriter", "open_run", "repair"]
