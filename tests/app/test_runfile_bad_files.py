"""Bad run files: every problem gives a RunFileError naming the file and what is wrong."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from app.runfile import RunFileError, open_run
from tests.app.runfile_helpers import write_run


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("good") / "good.h5"
    write_run(path, 6, compression="none", failed=(4,), results={"regions": {"A": 1}})
    return path


def _expect(path: Path, match: str) -> None:
    with pytest.raises(RunFileError, match=match) as info:
        open_run(path)
    assert str(path) in str(info.value)


def test_missing_directory_empty_and_foreign_formats(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.h5", "file not found")
    _expect(tmp_path, "is a directory")
    (tmp_path / "empty.h5").write_bytes(b"")
    _expect(tmp_path / "empty.h5", "not an HDF5 file")
    (tmp_path / "text.h5").write_text("direction,N1A\n")
    _expect(tmp_path / "text.h5", "not an HDF5 file")
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["data"] = np.arange(3)
        f.attrs["creator"] = "someone else"
    _expect(tmp_path / "foreign.h5", "not a steerlab run file: root attribute 'format' is None, "
                                     "expected 'steerlab-run' \\(root attributes: creator\\)")


def test_wrong_schema_version_and_missing_parts(tmp_path: Path, good: Path) -> None:
    cases = {
        "v3": lambda f: f.attrs.__setitem__("schema_version", 3),
        "nover": lambda f: f.attrs.__delitem__("schema_version"),
        "noframes": lambda f: f.__delitem__("frames"),
        "nometa": lambda f: f.__delitem__("meta"),
        "badtable": lambda f: (f.__delitem__("shots/table"), f.create_dataset("shots/table",
                                                                              data=np.arange(3))),
        "badplan": lambda f: (f.__delitem__("meta/plan_json"), f.create_dataset(
            "meta/plan_json", data="{not json", dtype=h5py.string_dtype())),
        "badcount": lambda f: f["shots/n_complete"].__setitem__((), 99),
        "badresults": lambda f: f["results/state"].__setitem__(slice(None), [5, 3]),
    }
    for name, edit in cases.items():
        path = tmp_path / f"{name}.h5"
        path.write_bytes(good.read_bytes())
        with h5py.File(path, "a") as f:
            edit(f)
        if name == "badcount":
            with open_run(path) as run:  # readable, with a warning
                assert run.n_shots == 6 and "n_complete = 99" in run.warnings[0]
            continue
        if name == "badresults":
            with open_run(path) as run, pytest.raises(RunFileError, match=r"results/state = \[5, 3\]"):
                run.results
            continue
        _expect(path, {"v3": "schema version 3 is not supported; this steerlab reads versions 1, 2",
                       "nover": "'schema_version' is missing",
                       "noframes": "missing dataset\\(s\\) /frames",
                       "nometa": "missing dataset\\(s\\) /meta/plan_toml, /meta/plan_json",
                       "badtable": "/shots/table is int64",
                       "badplan": "/meta/plan_json is not valid JSON"}[name])


def test_truncated_files(tmp_path: Path, good: Path) -> None:
    data = good.read_bytes()
    for k, size in enumerate((8, 100, 2000, len(data) // 2, len(data) - 10)):
        path = tmp_path / f"t{k}.h5"
        path.write_bytes(data[:size])
        _expect(path, "not an HDF5 file|corrupt or truncated|truncated: the file has|damaged or truncated")


def test_truncated_crashed_file_opens_with_a_warning(tmp_path: Path) -> None:
    src = tmp_path / "live.h5"
    w = write_run(src, 6, compression="none", close=None)  # never closed: like a crash
    data = src.read_bytes()
    w.close()
    path = tmp_path / "cut.h5"
    path.write_bytes(data[:-10])
    with open_run(path) as run:
        assert run.end_state == "running"
        assert any("truncated" in w for w in run.warnings)
        try:
            for _ in run.iter_shots(None):
                pass
        except RunFileError as exc:
            assert str(path) in str(exc)


def test_corrupted_frame_bytes_fail_their_crc(tmp_path: Path, good: Path) -> None:
    path = tmp_path / "flip.h5"
    path.write_bytes(good.read_bytes())
    with h5py.File(good, "r") as f:
        offset = f["frames"].id.get_chunk_info(2).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset + 40)
        byte = fh.read(1)
        fh.seek(offset + 40)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with open_run(path) as run:
        run.frames(1)
        with pytest.raises(RunFileError, match=r"frames of shot row 2 \(index 2\) fail their CRC32"):
            run.frames(2)
        with pytest.raises(RunFileError, match="CRC32"):
            list(run.iter_frames())


@pytest.mark.parametrize("compression", ["none", "blosc-lz4"])
def test_random_corruption_never_escapes_as_another_exception(tmp_path: Path,
                                                              compression: str) -> None:
    src = tmp_path / "src.h5"
    write_run(src, 6, compression=compression, failed=(4,), results={"regions": {"A": 1}})
    data = src.read_bytes()
    rng = np.random.default_rng(7)
    outcomes = {"ok": 0, "error": 0}
    for k in range(120):
        b = bytearray(data)
        if k % 3 == 0:
            b = b[: int(rng.integers(0, len(b)))]
        else:
            for pos in rng.integers(0, len(b), size=int(rng.integers(1, 20))):
                b[pos] = int(rng.integers(0, 256))
        path = tmp_path / f"c{k}.h5"
        path.write_bytes(bytes(b))
        try:
            with open_run(path) as run:
                for _ in run.iter_shots(None):
                    pass
                run.results, run.end_state, run.table()
                run.columns(), run.counts(), run.results_tables(), run.provenance
            outcomes["ok"] += 1
        except RunFileError as exc:
            assert str(path) in str(exc)
            outcomes["error"] += 1
        path.unlink()
    assert outcomes["error"] > 20 and outcomes["ok"] > 0
