"""`steerlab analyze` on a scan plan's run: the criteria per scan point (CSV, JSON, PNG), each
point analysed on its own shots (its own cloud and masks)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from app.cli import main
from app.commands.run import scan_point_lines
from app.runfile import open_run
from app.session import RunSession
from sequences.control import RunState
from sequences.plan import parse_plan
from tests.app.test_session import lab_config

PLAN = """
[run]
cycles = 10
[state]
kind = "{kind}"
atom_number_sd = 0.0
[imaging]
reference_delay_s = 5e-3
dark_delay_s = 5e-3
[scan]
order = "interleaved"
repeats = 2
[[scan.axes]]
field = "imaging.tof_s"
values = [2.2e-3, 2.4e-3]
"""


def test_analyze_writes_the_criteria_per_scan_point(tmp_path: Path) -> None:
    cfg = lab_config(tmp_path)
    plan = parse_plan(PLAN.format(kind="squeezed"), "tof.toml", cfg.microwave_calibration)
    with RunSession(cfg, plan, "tof.h5", seed=4) as s:
        s.start()
        assert s.wait(120) is RunState.COMPLETED
    # live: the monitor grouped the criteria by scan point (each point its own warm-up and masks)
    live = s.scan_snapshot()
    assert [p.point for p in live] == [0, 1] and all(p.shots_seen == 60 for p in live)
    assert [p.values for p in live] == [{"imaging.tof_s": 2.2e-3}, {"imaging.tof_s": 2.4e-3}]
    with open_run(s.path) as run:
        stored = run.results["scan_points"]["points"]
        run_warmup = run.results["scan_points"]["warmup_shots"]
        lines = scan_point_lines(run.results["scan_points"])
    assert run_warmup == 20
    assert lines[1].startswith("  point 0 (imaging.tof_s = 0.0022 s; ") and "E_EPR B->A" in lines[2]
    for p in stored:
        c = p["criteria"]
        assert c is not None and sum(c["n_shots"].values()) == p["shots_counted"]
        assert p["shots_counted"] >= 60 - run_warmup
        for key in ("E_Ent", "E_EPR_AB", "E_EPR_BA", "xi_R2"):
            assert c[key]["error"] > 0 and c["corrected"][key]["value"] is not None
        assert c["E_Ent"]["certified"] in (True, False)
    out = tmp_path / "out"
    assert main(["analyze", str(s.path), "--out", str(out), "--workers", "1", "--no-progress",
                 "--widths", "1", "--gap", "1"]) == 0
    stem = out / f"{s.path.stem}-scan-points"
    doc = json.loads(stem.with_suffix(".json").read_text())
    points = doc["points"]
    assert [p["point"] for p in points] == [0, 1]
    assert [p["imaging.tof_s"] for p in points] == [2.2e-3, 2.4e-3]
    assert all(p["shots"] == 2 * 10 * 3 for p in points)
    for p in points:
        # each point's own cloud: a split at ratio 0.5 of that point's mean images
        assert abs(p["splitting_ratios"]["half"] - 0.5) < 0.05
        # -3.2 dB prepared: squeezed at every time of flight, the value consistent with it (20 shots
        # per direction: a relative error of ~0.4, so "below 1 by 2 errors" held only for a lucky draw)
        assert p["xi_R2_corrected"] < 1.0
        assert abs(p["xi_R2_corrected"] - 10 ** (-3.2 / 10)) < 3 * p["xi_R2_corrected_error"]
        assert p["E_Ent_corrected_verdict"] in ("certified", "unresolved", "not certified")
    with stem.with_suffix(".csv").open() as fh:
        rows = list(csv.reader(fh))
    assert "imaging.tof_s [s]" in rows[0] and len(rows) == 3
    assert stem.with_suffix(".png").stat().st_size > 5000
