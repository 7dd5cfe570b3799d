"""SIGTERM and SIGINT through the real command lines (subprocesses): every command ends in order.

run: the first signal stops after the current shot (file closed 'stopped'), a second aborts, one
during start-up ends quietly with nothing left; calibrate: ends without a record and without a
virtual lab left running; analyze --workers 2: no worker process survives.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.runfile import open_run

ROOT = Path(__file__).resolve().parents[2]


def lab(tmp_path: Path) -> Path:
    cfg = tmp_path / "lab.toml"
    cfg.write_text((ROOT / "configs" / "virtual-lab.toml").read_text()
                   .replace('data_dir = "../../runs"', f'data_dir = "{tmp_path / "runs"}"'))
    return cfg


def start(tmp_path: Path, *argv: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), STEERLAB_LOG=str(tmp_path / "steerlab.log"))
    return subprocess.Popen([sys.executable, "-m", "app.cli", *argv], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for c, pp in parents.items():
            if pp == p and c not in out:
                out.add(c)
                todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def running_file(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "runs").glob("*.h5")) if (tmp_path / "runs").exists() else []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_after_the_current_shot(tmp_path: Path, sig: signal.Signals) -> None:
    proc = start(tmp_path, "run", "--config", str(lab(tmp_path)), "--shots", "100000", "--out", "r.h5",
                 "--written-log", "written.txt")
    wait_for(lambda: (tmp_path / "written.txt").exists() and len((tmp_path / "written.txt").read_text()
                                                                   .splitlines()) >= 10)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "stopping after the current shot" in err
    assert "run stopped" in out
    written = [int(ln.split()[0]) for ln in (tmp_path / "written.txt").read_text().splitlines()]
    with open_run(tmp_path / "runs" / "r.h5") as run:
        assert run.end_state == "stopped"
        assert run.n_shots == len(written) == max(written) + 1      # every reported shot is in the file


def test_a_second_signal_aborts(tmp_path: Path) -> None:
    proc = start(tmp_path, "run", "--config", str(lab(tmp_path)), "--shots", "100000", "--out", "r.h5",
                 "--written-log", "written.txt")
    wait_for(lambda: (tmp_path / "written.txt").exists() and (tmp_path / "written.txt").read_text())
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Traceback" not in err, err
    with open_run(tmp_path / "runs" / "r.h5") as run:
        assert run.end_state in ("aborted", "stopped")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_importing_ends_quietly(tmp_path: Path, sig: signal.Signals) -> None:
    proc = start(tmp_path, "run", "--config", str(lab(tmp_path)), "--shots", "100000", "--out", "r.h5")
    time.sleep(0.3)                        # the interpreter is still importing steerlab
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (130, -sig), err
    assert "Traceback" not in err
    assert not running_file(tmp_path)


def test_a_signal_while_connecting_ends_quietly(tmp_path: Path) -> None:
    """Ctrl-C while the driver waits for an instrument that accepted the connection but never answers."""
    import genicam
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    text = (ROOT / "configs" / "real-lab.template.toml").read_text()
    text = text.replace('"TCPIP0::192.168.1.20::inst0::INSTR"', f'"TCPIP0::127.0.0.1::{port}::SOCKET"')
    text = text.replace('data_dir = "/data/steerlab"', f'data_dir = "{tmp_path / "runs"}"')
    text = text.replace('"/opt/vendor/lib/producer.cti"', f'"{Path(genicam.__file__).parent / "viky.cti"}"')
    text = text.replace("timeout_s = 2.0", "timeout_s = 60.0", 1)
    text = text.replace('record = "calibration.example.toml"',
                        f'record = "{ROOT / "configs" / "calibration.example.toml"}"')
    (tmp_path / "real.toml").write_text(text)
    try:
        proc = start(tmp_path, "run", "--config", str(tmp_path / "real.toml"), "--out", "r.h5")
        silent.settimeout(60)
        conn, _ = silent.accept()          # the driver connected and now waits for its answer
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        conn.close()
    finally:
        silent.close()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted during start-up" in err
    assert not running_file(tmp_path)


def test_calibrate_ends_cleanly_on_sigterm(tmp_path: Path) -> None:
    proc = start(tmp_path, "calibrate", "rabi", "--config", str(lab(tmp_path)), "--out", "rec.toml",
                 "--plot-dir", "plots")
    time.sleep(4.0)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert not (tmp_path / "rec.toml").exists()


@pytest.fixture(scope="module")
def run_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("analyze")
    proc = start(tmp, "run", "--config", str(lab(tmp)), "--shots", "150", "--out", "a.h5", "--no-progress")
    proc.communicate(timeout=300)
    assert proc.returncode == 0
    return tmp / "runs" / "a.h5"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_analyze_with_workers_leaves_no_process(tmp_path: Path, run_file: Path, sig: signal.Signals) -> None:
    proc = start(tmp_path, "analyze", *[str(run_file)] * 6, "--out", "out", "--workers", "2", "--chunk", "5")
    wait_for(lambda: len(children(proc.pid)) >= 2, 60)
    time.sleep(1.0)
    kids = children(proc.pid)
    assert proc.poll() is None
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    wait_for(lambda: not any(alive(k) for k in kids), 10)


def test_an_interrupt_inside_h5py_is_an_interrupt_not_a_damaged_file(tmp_path: Path) -> None:
    """h5py turns an exception raised while it is inside a call into SystemError; a Ctrl-C there
    (found with analyze interrupted at random moments) had been reported as a damaged file."""
    import h5py
    import numpy as np

    from app.runfile.schema import reraise_interrupt

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["a"] = np.zeros(3)
    with h5py.File(tmp_path / "x.h5", "r") as f:
        def visit(name: str, link: object) -> None:
            raise KeyboardInterrupt("SIGTERM")
        with pytest.raises(SystemError) as info:
            f.visititems_links(visit)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        reraise_interrupt(info.value)
    reraise_interrupt(OSError("truncated file"))          # a real HDF5 error passes through
