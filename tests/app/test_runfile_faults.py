"""Faults while writing: a full disk ends the run FAULTED with the file closed (flag clear, every
committed shot kept); an error in the final results still closes the file with the run's end
state; a kill during creation leaves no unopenable file under the run's name; repair removes its
partial output and tells the truth about the file's state.

The full-disk test mounts a real 8 MB tmpfs (needs root, as in the CI container); where mounting is
refused it fails, naming why, rather than skipping."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from app.cli import main
from app.runfile import RunFileError, RunWriter, open_run, repair
from app.runfile.writer import temp_name
from sequences.shot import FRAME_NAMES
from tests.app.runfile_helpers import H, W, shot, write_run
from tests.app.test_run_cli import small_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def small_disk(tmp_path: Path) -> Path:
    """An 8 MB tmpfs mounted for this test (a real full disk: ENOSPC from the kernel)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.fail(f"cannot mount an 8 MB tmpfs at {mnt} for the full-disk test (needs root): "
                    f"{proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def test_full_disk_ends_the_run_faulted_with_the_file_closed(tmp_path: Path, small_disk: Path
                                                             ) -> None:
    cfg = small_config(tmp_path)
    cfg.write_text(cfg.read_text().replace(f'data_dir = "{tmp_path / "runs"}"',
                                           f'data_dir = "{small_disk}"'))
    written = tmp_path / "written.txt"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "app.cli", "run", "--config", str(cfg),
                           "--shots", "3000", "--out", "full.h5", "--no-progress",
                           "--written-log", str(written)], capture_output=True, text=True,
                          timeout=240, cwd=ROOT, env=env)
    assert proc.returncode == 1, proc.stderr[-2000:]
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    full = [line for line in err if "no space left on device" in line]
    assert len(full) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert str(small_disk / "full.h5") in full[0] and "shots committed" in full[0]
    committed = [int(line.split()[0]) for line in written.read_text().splitlines()]
    assert len(committed) > 5
    with h5py.File(small_disk / "full.h5", "r") as f:     # plain h5py: the write flag is clear
        assert f["run/end_state"][()] == b"faulted"
        assert int(f["shots/n_complete"][()]) == len(committed)
        assert f["frames"].shape[0] == len(committed)
    with open_run(small_disk / "full.h5") as run:
        assert run.closed_cleanly and run.open_for_write_flag is False
        assert [int(i) for i in run.table()["index"]] == committed     # 0 committed shots lost
        for i in range(run.n_shots):
            run.shot(i)                                                  # CRCs hold
    assert sorted(p.name for p in small_disk.iterdir()) == ["full.h5"]   # reserve deleted


def test_repair_says_how_the_file_was_left(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    write_run(tmp_path / "faulted.h5", 3, close="faulted")
    assert main(["repair", str(tmp_path / "faulted.h5"), str(tmp_path / "a.h5")]) == 0
    assert "closed by its writer, end state 'faulted'" in capsys.readouterr().out
    w = write_run(tmp_path / "live.h5", 3, close=None)
    assert main(["repair", str(tmp_path / "live.h5"), str(tmp_path / "b.h5")]) == 0
    assert "not closed by its writer (end state 'running'" in capsys.readouterr().out
    w.close()


def test_a_write_error_stops_writing_and_the_file_still_closes(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    path = tmp_path / "io.h5"
    w = write_run(path, 3, compression="none", close=None)

    def broken(*args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(w, "_commit", broken)
    with pytest.raises(RunFileError, match="writing shot 3 failed: OSError: .*Input/output error"
                                           ".*3 shots committed, writing stopped"):
        w.write_shot(shot(3))
    monkeypatch.undo()
    with pytest.raises(RunFileError, match="writing stopped after an earlier error"):
        w.write_shot(shot(4))
    with pytest.raises(RunFileError, match="writing stopped after an earlier error"):
        w.write_results({"x": 1})
    w.close("faulted")
    with h5py.File(path, "r") as f:
        assert f["frames"].shape[0] == 3 and f["run/end_state"][()] == b"faulted"
    assert not list(tmp_path.glob(".*"))


def test_plan_without_reference_and_dark_frames_completes_and_closes(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]
                                                                    ) -> None:
    cfg = small_config(tmp_path)
    plan = (ROOT / "configs" / "plans" / "default.toml").read_text()
    plan = plan.replace("reference_frames = true", "reference_frames = false")
    plan = plan.replace("dark_frame = true", "dark_frame = false")
    (tmp_path / "noref.toml").write_text(plan)
    code = main(["run", "--config", str(cfg), "--plan", str(tmp_path / "noref.toml"),
                 "--shots", "30", "--out", "noref.h5", "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "run completed" in out.out + out.err
    # said once, plainly (no per-shot monitor failures), in the summary as well
    assert "FrameError" not in out.err and "consumer monitor" not in out.err
    assert "no criteria: the plan's shots hold no ref2 or ref1 or dark frames" in out.out
    with h5py.File(tmp_path / "runs" / "noref.h5", "r") as f:           # closed: flag clear
        assert f["run/end_state"][()] == b"completed"
        assert list(f["frames"].attrs["frame_names"]) == ["atoms2", "atoms1"]
    with open_run(tmp_path / "runs" / "noref.h5") as run:
        assert run.n_shots == 30 and run.closed_cleanly


CREATOR = """
import sys
from app.runfile import RunWriter
from sequences.shot import FRAME_NAMES
print("start", flush=True)
w = RunWriter(sys.argv[1], frame_names=FRAME_NAMES, frame_shape=(64, 64), compression=sys.argv[2])
print("created", flush=True)
w.close()
"""


def test_kills_during_creation_leave_no_unopenable_file_under_the_run_name(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    outcomes = {"absent": 0, "opened": 0}
    for k, delay_s in enumerate(np.linspace(0.0, 0.08, 16)):   # creation takes ~35 ms
        path = tmp_path / f"run{k}.h5"
        proc = subprocess.Popen([sys.executable, "-c", CREATOR, str(path),
                                 ("none", "blosc-lz4")[k % 2]], stdout=subprocess.PIPE, text=True,
                                cwd=ROOT, env=env, start_new_session=True)
        assert proc.stdout.readline().strip() == "start"      # imports done: creation is next
        time.sleep(float(delay_s))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        if not path.exists():
            outcomes["absent"] += 1
            continue
        with open_run(path) as run:                          # never an unopenable file
            assert run.n_shots == 0
        outcomes["opened"] += 1
    assert outcomes["absent"] > 0, outcomes
    # the next writer in the directory removes what the killed ones left (dead pids)
    RunWriter(tmp_path / "next.h5", frame_names=FRAME_NAMES, frame_shape=(H, W)).close()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers


def test_repair_removes_its_partial_output_on_failure_and_next_start(tmp_path: Path) -> None:
    src = tmp_path / "src.h5"
    write_run(src, 6, compression="none")
    with h5py.File(src, "r") as f:
        offset = f["frames"].id.get_chunk_info(4).byte_offset
    with open(src, "r+b") as fh:                  # shot 4's frames fail their CRC during the copy
        fh.seek(offset + 10)
        fh.write(b"\xff\xff")
    dst = tmp_path / "clean.h5"
    with pytest.raises(RunFileError, match="fail their CRC32"):
        repair(src, dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.h5"]
    mine = temp_name(dst, "partial").name.rsplit(".", 3)[1]
    killed = dst.with_name(f".{dst.name}.{mine}.999999999.partial")
    killed.write_bytes(b"\0" * 4096)              # as left by a repair killed with SIGKILL
    other_host = dst.with_name(f".{dst.name}.otherhost.999999999.partial")
    other_host.write_bytes(b"\0")                 # another computer's, on a shared directory
    good = tmp_path / "good.h5"
    write_run(good, 2)
    repair(good, dst)
    assert not killed.exists() and dst.exists() and other_host.exists()
