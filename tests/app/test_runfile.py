"""Run files: round trip through writer and reader, the writer's refusals, repair."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from app.runfile import FORMAT, SCHEMA_VERSION, RunFileError, RunWriter, open_run, repair
from sequences.shot import FRAME_NAMES
from tests.app.runfile_helpers import H, W, shot, write_run


@pytest.mark.parametrize("compression", ["none", "blosc-lz4"])
def test_round_trip_keeps_everything(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "run.h5"
    write_run(path, 5, compression=compression, failed=(3,),
              results={"regions": {"A": [[0, 3]], "B": [[4, 6]]}, "E_EPR_AB": 0.9})
    with open_run(path) as run:
        assert run.schema_version == SCHEMA_VERSION and run.software_version
        assert run.run_name == "test" and run.compression == compression
        assert run.end_state == "completed" and run.closed_cleanly and run.end_utc
        assert run.plan_toml == "[run]\nshots = 5\n" and run.plan == {"n_shots": 5}
        assert run.calibration == {"record": "cal-1", "pulse_s": 1e-4}
        assert run.instruments["microwave"]["idn"].startswith("Rohde&Schwarz")
        assert run.config == {"channels": {"probe": 1}}
        assert run.frame_names == FRAME_NAMES and run.frame_shape == (H, W)
        assert run.n_shots == 5 and not run.warnings
        t = run.table()
        assert list(t["status"]) == ["ok", "ok", "ok", "failed", "ok"]
        assert list(t["direction"]) == ["x", "y", "z", "x", "y"]
        assert list(t["has_frames"]) == [True, True, True, False, True]
        assert run.results == {"regions": {"A": [[0, 3]], "B": [[4, 6]]}, "E_EPR_AB": 0.9}
        for i in (0, 1, 2, 4):
            original, back = shot(i), run.shot(i)
            np.testing.assert_array_equal(back.frames, original.frames)
            assert back.metadata() | {"start_utc": 0, "end_utc": 0, "start_monotonic_s": 0,
                                      "end_monotonic_s": 0} == original.metadata() | {
                "start_utc": 0, "end_utc": 0, "start_monotonic_s": 0, "end_monotonic_s": 0}
        failed = run.shot(3)
        assert not failed.is_ok and failed.reason == "camera: timeout on shot 3"
        assert [s.index for s in run.iter_shots()] == [0, 1, 2, 4]
        assert [s.index for s in run.iter_shots(None)] == [0, 1, 2, 3, 4]
        blocks = list(run.iter_frames(chunk=2))
        assert [a for a, _ in blocks] == [0, 2, 4] and blocks[0][1].shape == (2, 5, H, W)
        with pytest.raises(IndexError):
            run.frames(5)


def test_results_are_replaced_and_absent_results_are_none(tmp_path: Path) -> None:
    w = write_run(tmp_path / "a.h5", 2, close=None)
    w.write_results({"v": 1, "long": "x" * 1000})
    w.write_results({"v": 2})
    w.write_results({"v": 3})
    w.close("stopped")
    with open_run(tmp_path / "a.h5") as run:
        assert run.results == {"v": 3} and run.end_state == "stopped"
    write_run(tmp_path / "b.h5", 1)
    with open_run(tmp_path / "b.h5") as run:
        assert run.results is None


def test_writer_refuses_duplicates_and_mismatches(tmp_path: Path) -> None:
    w = write_run(tmp_path / "r.h5", 3, close=None)
    with pytest.raises(RunFileError, match="shot index 2 already written or out of order"):
        w.write_shot(shot(2))
    with pytest.raises(RunFileError, match="shot index 1 already written"):
        w.write_shot(shot(1))
    wrong = shot(5)
    object.__setattr__(wrong, "frames", np.zeros((5, H + 1, W), np.uint16))
    with pytest.raises(RunFileError, match="7x7, the run file expects 6x7"):
        w.write_shot(wrong)
    with pytest.raises(RunFileError, match="results cannot be stored as JSON"):
        w.write_results({"E": float("nan")})
    with pytest.raises(RunFileError, match="end_state = 'done'"):
        w.close("done")
    w.close("aborted")
    with pytest.raises(RunFileError, match="closed"):
        w.write_shot(shot(9))
    with open_run(tmp_path / "r.h5") as run:
        assert run.n_shots == 3 and run.end_state == "aborted"
    with pytest.raises(RunFileError, match="already exists"):
        write_run(tmp_path / "r.h5", 1)
    with pytest.raises(RunFileError, match="compression = 'gzip'"):
        RunWriter(tmp_path / "c.h5", frame_names=FRAME_NAMES, frame_shape=(H, W), compression="gzip")
    with pytest.raises(RunFileError, match="frame_shape"):
        RunWriter(tmp_path / "d.h5", frame_names=FRAME_NAMES, frame_shape=(0, W))
    assert not (tmp_path / "c.h5").exists() and not (tmp_path / "d.h5").exists()


def test_fsync_writer_and_context_manager_marks_faults(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with RunWriter(tmp_path / "f.h5", frame_names=FRAME_NAMES, frame_shape=(H, W),
                       fsync=True) as w:
            w.write_shot(shot(0))
            raise RuntimeError("camera fell off the table")
    with open_run(tmp_path / "f.h5") as run:
        assert run.n_shots == 1 and run.end_state == "faulted"


def test_repair_copy_opens_in_a_plain_h5py_without_hdf5plugin(tmp_path: Path) -> None:
    src = tmp_path / "src.h5"
    w = write_run(src, 4, failed=(1,), results={"regions": {"A": 1}}, close=None)
    dst = tmp_path / "clean.h5"
    assert repair(src, dst) == 4
    w.close()
    code = ("import h5py, json, sys; f = h5py.File(sys.argv[1], 'r'); "
            "print(json.dumps([int(f['shots/n_complete'][()]), int(f['frames'][2, 0, 1, 1]), "
            "f.attrs['format'], f['run/end_state'][()].decode()]))")
    out = subprocess.run([sys.executable, "-c", code, str(dst)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert json.loads(out) == [4, 2, FORMAT, "crashed"]
    with open_run(dst) as run:
        assert run.n_shots == 4 and run.results == {"regions": {"A": 1}}
        assert run.repaired_from == str(src) and run.compression == "none"
        assert not run.shot(1).is_ok
        np.testing.assert_array_equal(run.frames(3), shot(3).frames)
    with pytest.raises(RunFileError, match="already exists"):
        repair(src, dst)
    with pytest.raises(RunFileError, match="different file"):
        repair(src, src)
    assert repair(dst, tmp_path / "again.h5", compression="blosc-lz4") == 4
    assert not list(tmp_path.glob("*.partial"))


def test_repair_of_an_unreadable_file_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(RunFileError, match="not an HDF5 file"):
        repair(bad, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_writer_creates_no_file_on_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(RunFileError, match="cannot create"):
        RunWriter(tmp_path / "no" / "such" / "dir.h5", frame_names=FRAME_NAMES, frame_shape=(H, W))
    assert os.listdir(tmp_path) == []
    with h5py.File(tmp_path / "x.h5", "w"):
        pass


@pytest.mark.parametrize("close", [True, False])
def test_texts_across_chunk_and_growth_boundaries_read_back(tmp_path: Path, close: bool) -> None:
    """Shot texts longer than a text chunk, rows past several row chunks and past the block the
    writer allocates ahead; the file read while still open (SWMR) and after close."""
    from app.runfile import schema as S
    from app.runfile.writer import GROW_SHOTS, GROW_TEXT_BYTES
    from sequences.shot import ShotClock, ShotRecord

    path = tmp_path / "long.h5"
    w = RunWriter(path, frame_names=FRAME_NAMES, frame_shape=(H, W), compression="none")
    n = GROW_SHOTS + 2 * S.SHOT_ROWS_PER_CHUNK + 3
    reasons = {}
    for i in range(n):
        if i % 7 == 3:      # failed, with a reason of 2 KiB to 64 KiB of UTF-8 (up to 16 text chunks)
            reasons[i] = f"shot {i}: " + "é" * (S.TEXT_BYTES_PER_CHUNK // 4 + 331 * i)
            w.write_shot(ShotRecord.failed(index=i, cycle=i // 3, sequence_index=i % 3,
                                           direction="xyz"[i % 3], reason=reasons[i],
                                           settings={"i": i}, timing=ShotClock().finish()))
        else:
            w.write_shot(shot(i))
    assert sum(len(r.encode()) for r in reasons.values()) > GROW_TEXT_BYTES
    if close:
        w.close()
    with open_run(path) as run:
        assert run.n_shots == n and not run.warnings
        for i in range(n):
            s = run.shot(i)
            if i in reasons:
                assert s.reason == reasons[i] and s.settings == {"i": i}
            else:
                np.testing.assert_array_equal(s.frames, shot(i).frames)
                assert s.extra == {"note": f"shot {i}"}
    if not close:
        w.close()
        with h5py.File(path, "r") as f:     # trimmed to what was written
            assert f[S.SHOTS].shape == (n,) and f[S.FRAMES].shape[0] == n


def test_blosc_frames_compressed_by_the_writer_or_by_the_hdf5_filter_read_alike(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer's own Blosc buffers (python-blosc, direct chunk writes) are what HDF5's Blosc
    filter reads; without python-blosc the writer goes through the filter pipeline."""
    from app.runfile import schema as S

    assert S.frame_compressor("blosc-lz4") is not None and S.frame_compressor("none") is None
    write_run(tmp_path / "direct.h5", 4, compression="blosc-lz4")
    monkeypatch.setattr(S, "frame_compressor", lambda compression: None)
    write_run(tmp_path / "filter.h5", 4, compression="blosc-lz4")
    with h5py.File(tmp_path / "direct.h5", "r") as a, h5py.File(tmp_path / "filter.h5", "r") as b:
        assert a["frames"].compression_opts == b["frames"].compression_opts
        assert a["frames"]._filters.keys() == b["frames"]._filters.keys() == {"32001"}
        for i in range(4):
            np.testing.assert_array_equal(a["frames"][i], shot(i).frames)
            np.testing.assert_array_equal(b["frames"][i], shot(i).frames)
