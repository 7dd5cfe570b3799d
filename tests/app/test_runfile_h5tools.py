"""Run files open in HDF5 1.10 readers: Debian 12's ``h5dump``/``h5ls`` (package hdf5-tools, HDF5
1.10.8) read a fresh run file (compressed and not) and a repaired copy, metadata and data.

These tests do not skip: without the tools they fail, naming the package to install."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import hdf5plugin
import numpy as np
import pytest

from app.runfile import repair
from tests.app.runfile_helpers import H, W, shot, write_run

N = 5


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install Debian's hdf5-tools (apt-get install hdf5-tools); "
                    "these tests check that HDF5 1.10 readers open run files")
    return path


def _run(*cmd: str) -> str:
    env = dict(os.environ, HDF5_PLUGIN_PATH=hdf5plugin.PLUGIN_PATH)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0 and "error" not in proc.stderr.lower() \
        and "h5dump error" not in proc.stdout and "*ERROR*" not in proc.stdout, \
        f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}"
    return proc.stdout


def _tool_version() -> str:
    out = subprocess.run([_tool("h5dump"), "--version"], capture_output=True, text=True,
                         timeout=30).stdout
    return out.split("Version")[-1].strip()


def _check_with_tools(path: Path, tmp_path: Path) -> None:
    h5dump, h5ls = _tool("h5dump"), _tool("h5ls")
    header = _run(h5dump, "-H", str(path))
    assert 'DATASET "frames"' in header and 'DATASET "table"' in header
    listing = _run(h5ls, "-r", str(path))
    assert f"Dataset {{{N}/Inf, 5, {H}, {W}}}" in listing or f"Dataset {{{N}, 5, {H}, {W}}}" \
        in listing, listing
    assert "/shots/table" in listing and "*ERROR*" not in listing
    raw = tmp_path / f"{path.stem}-frames.bin"
    _run(h5dump, "-d", "/frames", "-b", "LE", "-o", str(raw), str(path))
    frames = np.fromfile(raw, dtype="<u2").reshape(N, 5, H, W)
    for i in range(N):
        np.testing.assert_array_equal(frames[i], shot(i).frames)
    table = _run(h5dump, "-d", "/shots/table", str(path))
    assert table.count('"ok\\000\\000\\000\\000"') == N


def test_debian_h5dump_is_hdf5_1_10() -> None:
    assert _tool_version().startswith("1.10"), _tool_version()


@pytest.mark.parametrize("compression", ["none", "blosc-lz4"])
def test_fresh_run_file_opens_in_h5dump_and_h5ls_1_10(tmp_path: Path, compression: str) -> None:
    path = tmp_path / f"fresh-{compression}.h5"
    write_run(path, N, compression=compression, results={"regions": {"A": 1}})
    _check_with_tools(path, tmp_path)


@pytest.mark.parametrize("compression", ["none", "blosc-lz4"])
def test_repaired_run_file_opens_in_h5dump_and_h5ls_1_10(tmp_path: Path, compression: str) -> None:
    src = tmp_path / "crashed.h5"
    w = write_run(src, N, compression="blosc-lz4", close=None)   # never closed: as after a kill
    dst = tmp_path / f"repaired-{compression}.h5"
    assert repair(src, dst, compression=compression) == N
    w.close()
    _check_with_tools(dst, tmp_path)
