"""`steerlab run`: the headless main job on the virtual lab (in-process and as a real process)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.cli import main
from app.runfile import open_run
from tests.app.test_session import CONFIG, SMALL_LAB

ROOT = Path(__file__).resolve().parents[2]


def small_config(tmp_path: Path) -> Path:
    text = CONFIG.read_text().replace('data_dir = "../../runs"', f'data_dir = "{tmp_path / "runs"}"')
    text = text.replace("[virtual_lab]\n", SMALL_LAB.strip() + "\n", 1)
    path = tmp_path / "lab.toml"
    path.write_text(text)
    return path


def test_run_prints_the_summary_and_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = small_config(tmp_path)
    assert main(["run", "--config", str(cfg), "--shots", "45", "--out", "a.h5", "--json",
                 "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["final_state"] == "completed" and out["failed_shots"] == 0
    assert Path(out["file"]) == (tmp_path / "runs" / "a.h5").resolve()
    crit = out["results"]["criteria"][0]
    assert crit["n_shots"] == {"x": 15, "y": 15, "z": 15}
    with open_run(out["file"]) as run:
        assert run.n_shots == 45 and run.closed_cleanly
    assert main(["run", "--config", str(cfg), "--shots", "30", "--state", "coherent", "--out", "b.h5",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    for label in ("xi_R^2 of A and B (dB)", "xi_R^2 whole cloud (dB)", "E_Ent", "E_EPR A->B", "E_EPR B->A",
                  "run completed"):
        assert label in text
    with open_run(tmp_path / "runs" / "b.h5") as run:      # each verdict with its p-value
        c = run.results["criteria"][0]
    lines = {line.split("  ")[0]: line for line in text.splitlines()}
    for key, label in (("E_Ent", "E_Ent"), ("E_EPR_AB", "E_EPR A->B"), ("E_EPR_BA", "E_EPR B->A")):
        shown = [f"p = {e[key]['p_value']:.2g}" for e in (c["corrected"], c) if e]
        assert all(p in lines[label] for p in shown), (lines[label], shown)


@pytest.mark.parametrize("argv, message", [
    (["--shots", "0"], "--shots 0"),
    (["--plan", "missing.toml"], "missing.toml: file not found"),
    (["--out", "../escape.h5"], "outside the data directory"),
    (["--config", "nope.toml"], "nope.toml: file not found"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          argv: list[str], message: str) -> None:
    cfg = small_config(tmp_path)
    args = ["run", "--config", str(cfg), "--no-progress", *argv]
    if "--config" in argv:
        args = ["run", "--no-progress", *argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_ctrl_c_stops_after_the_current_shot_with_the_file_intact(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "run", "--config", str(cfg), "--shots",
                             "100000", "--out", "long.h5"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = tmp_path / "runs" / "long.h5"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists():
            try:
                with open_run(path) as run:
                    if run.n_shots >= 25:
                        break
            except Exception:
                pass
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "stopping after the current shot" in err and "run stopped" in out
    with open_run(path) as run:
        assert run.end_state == "stopped" and run.closed_cleanly and run.n_shots >= 25
