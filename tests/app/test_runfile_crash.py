"""Crash safety: a writer process killed with SIGKILL (its whole process group) at random moments
leaves a file that opens through the reader and holds every shot reported complete."""
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

from app.runfile import RunFileError, open_run, repair
from tests.app.runfile_crash_writer import expected_frames

WRITER = Path(__file__).with_name("runfile_crash_writer.py")
ROOT = Path(__file__).resolve().parents[2]
H, W = 24, 32


def _run_and_kill(path: Path, delay_s: float, compression: str, after_ready: bool) -> list[str]:
    """Start the writer in its own process group, kill the group after ``delay_s``; its stdout lines."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(WRITER), str(path), "100000", str(H), str(W),
                             compression], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                            start_new_session=True)
    try:
        lines = []
        if after_ready:
            first = proc.stdout.readline()
            assert first.strip() == "ready", first
            lines.append(first.strip())
        time.sleep(delay_s)
        os.killpg(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return lines + rest.splitlines()


@pytest.mark.parametrize("seed", range(6))
def test_killed_writer_leaves_every_reported_shot(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    compression = ("none", "blosc-lz4")[seed % 2]
    path = tmp_path / f"run{seed}.h5"
    lines = _run_and_kill(path, float(rng.uniform(0.0, 0.4)), compression, after_ready=True)
    done = [int(line.split()[1]) for line in lines if line.startswith("done ")]
    assert done == list(range(len(done)))  # the writer reports shots in order
    with open_run(path) as run:
        assert run.n_shots >= len(done)
        assert run.end_state == "running" and not run.closed_cleanly
        table = run.table()
        assert list(table["index"]) == list(range(run.n_shots))
        for i in range(run.n_shots):
            failed = i % 5 == 4
            assert table["status"][i] == ("failed" if failed else "ok")
            if not failed:
                np.testing.assert_array_equal(run.frames(i), expected_frames(i, H, W))
            else:
                assert run.shot_text(i)["reason"] == f"injected failure {i}"
        assert run.calibration == {"record": "crash-test"}
    copy = tmp_path / f"clean{seed}.h5"
    assert repair(path, copy) == len(table["index"])
    with h5py.File(copy, "r") as f:  # a plain reader, no SWMR, no hdf5plugin needed
        assert f["frames"].shape[0] == len(table["index"])
        if len(done) > 0:
            np.testing.assert_array_equal(f["frames"][0], expected_frames(0, H, W))
    with open_run(copy) as clean:
        assert clean.end_state == "crashed" and clean.n_shots == len(table["index"])


@pytest.mark.parametrize("seed", range(3))
def test_kill_during_start_up_gives_a_clear_error_or_an_empty_run(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(2000 + seed)
    path = tmp_path / "early.h5"
    lines = _run_and_kill(path, float(rng.uniform(0.1, 0.35)), "none", after_ready=False)
    done = [line for line in lines if line.startswith("done ")]
    try:
        run = open_run(path)
    except RunFileError as exc:
        assert not done and str(path) in str(exc)
    else:
        with run:
            assert run.n_shots >= len(done)


def test_live_reader_follows_a_running_writer(tmp_path: Path) -> None:
    path = tmp_path / "live.h5"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(WRITER), str(path), "100000", str(H), str(W),
                             "blosc-lz4"], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                            start_new_session=True)
    try:
        def wait_done(k: int) -> None:
            for line in proc.stdout:
                if line.strip() == f"done {k}":
                    return
            raise AssertionError("writer stopped early")

        wait_done(5)
        with open_run(path) as run:
            assert run.swmr and run.n_shots >= 6 and run.end_state == "running"
            first = run.n_shots
            wait_done(first + 20)
            assert run.refresh() >= first + 21
            last = run.n_shots - 1
            if last % 5 != 4:
                np.testing.assert_array_equal(run.frames(last), expected_frames(last, H, W))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
