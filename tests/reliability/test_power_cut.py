"""Power cut, CI size: `steerlab run` on the virtual lab killed with SIGKILL (whole process group) at
three moments; every file opens, holds every shot reported committed, and repairs to a plain file.
The 50-kill version is benchmarks/power_cut.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from tests.reliability.harness import check_crashed_file, kill_group, small_config, start_run, wait_for_lines


@pytest.mark.parametrize("after_shots", [1, 7, 23])
def test_kill_9_during_a_run_loses_no_committed_shot(tmp_path: Path, after_shots: int, capsys) -> None:
    cfg = small_config(tmp_path)
    log = tmp_path / "written.log"
    proc = start_run(cfg, "cut.h5", log)
    try:
        assert wait_for_lines(log, after_shots, 60), proc.stderr.read() if proc.poll() is not None else ""
    finally:
        kill_group(proc)
    check = check_crashed_file(tmp_path / "cut.h5", log, tmp_path / "clean.h5")
    assert check.missing == [] and check.reported >= after_shots
    assert check.in_file >= check.reported and check.repaired == check.in_file
    # the crashed file also opens in `steerlab analyze`-style readers and through `steerlab repair`
    assert main(["repair", str(tmp_path / "cut.h5"), str(tmp_path / "clean2.h5")]) == 0
    assert "not closed" in capsys.readouterr().out
