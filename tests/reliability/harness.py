"""Shared by the reliability tests and benchmarks: a small virtual-lab configuration, `steerlab run`
in its own process group, kill -9 of the whole group, and the check of a file against the shots
the run reported committed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py

from app.runfile import open_run, repair

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "virtual-lab.toml"
SMALL = """[virtual_lab]
frame_shape = [224, 64]
cloud_centre_px = [32.0, 60.0]
"""


def small_config(directory: Path) -> Path:
    """The shipped virtual-lab configuration with 224 x 64 frames and data_dir = ``directory``."""
    text = CONFIG.read_text().replace('data_dir = "../../runs"', f'data_dir = "{directory}"')
    text = text.replace("[virtual_lab]\n", SMALL, 1)
    path = directory / "lab.toml"
    path.write_text(text)
    return path


def start_run(config: Path, out: str, log: Path, shots: int = 1_000_000) -> subprocess.Popen[str]:
    """`steerlab run` in a new process group (its children die with it)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "app.cli", "run", "--config", str(config), "--shots",
                             str(shots), "--out", out, "--written-log", str(log), "--no-progress"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


def wait_for_lines(log: Path, n: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= n:
            return True
        time.sleep(0.02)
    return False


@dataclass
class CrashCheck:
    reported: int          # shots the run reported committed before the kill
    in_file: int           # shots the reader finds
    missing: list[int]     # reported but not in the file
    repaired: int          # shots in the repaired copy (plain h5py)


def check_crashed_file(path: Path, log: Path, repaired: Path) -> CrashCheck:
    """Open through steerlab's reader, compare with the log, repair, open the copy with plain h5py."""
    reported = [int(line.split()[0]) for line in log.read_text().splitlines() if line.strip()] \
        if log.exists() else []
    with open_run(path) as run:
        indices = set(run.table()["index"].tolist())
        n = run.n_shots
        if n:
            run.frames(n - 1)                      # the last committed shot's frames pass their CRC
    missing = [i for i in reported if i not in indices]
    repair(path, repaired)
    with h5py.File(repaired, "r") as f:            # a plain reader, no SWMR
        copied = int(f["shots/table"].shape[0])
    return CrashCheck(len(reported), n, missing, copied)
