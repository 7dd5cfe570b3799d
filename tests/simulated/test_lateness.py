"""A slow host or a slow simulation is not an instrument fault (drivers/patience.py,
drivers/simulated/lateness.py); a real timeout still is."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from app.labconfig import parse_lab_config
from app.runfile import open_run
from app.session import RunSession
from drivers.patience import deadline_passed, no_patience
from drivers.simulated.atoms import SimulatedAtoms
from drivers.simulated.lateness import HostLateness
from sequences.control import RunState
from sequences.plan import parse_plan

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "virtual-lab.toml"


def test_the_meter_counts_simulation_time_and_late_wakeups() -> None:
    m = HostLateness(period_s=0.005)
    m.start()
    try:
        t0 = time.monotonic()
        with m.simulating():
            time.sleep(0.2)
        # a busy main thread holding the GIL makes the heartbeat late
        end = time.monotonic() + 0.3
        x = 0
        while time.monotonic() < end:
            x += 1
        t1 = time.monotonic()
        late = m.late_s(t0, t1)
        assert 0.2 <= late <= (t1 - t0) + 0.05
        assert m.late_s(t1 + 1, t1 + 2) == 0.0
        assert m.patience(t0, t1) == pytest.approx(late, abs=0.05) and m.extensions == 1
    finally:
        m.stop()


def test_without_lateness_the_timeout_holds() -> None:
    assert not deadline_passed(0.0, 2.0, 1.9, no_patience)
    assert deadline_passed(0.0, 2.0, 2.0, no_patience)
    assert not deadline_passed(0.0, 2.0, 2.5, lambda a, b: 1.0)
    assert deadline_passed(0.0, 2.0, 3.0, lambda a, b: 1.0)


def lab(tmp_path: Path, timeout_s: float) -> object:
    text = CONFIG.read_text().replace('data_dir = "../../runs"', f'data_dir = "{tmp_path / "runs"}"')
    text = text.replace("timeout_s = 2.0", f"timeout_s = {timeout_s}")
    text = text.replace("card_margin_s = 2.0", "card_margin_s = 0.2")
    text = text.replace("[virtual_lab]\n", "[virtual_lab]\nframe_shape = [224, 128]\ncloud_centre_px = [40.0, 60.0]\n")
    return parse_lab_config(text, "lab.toml", base_dir=CONFIG.parent)


PLAN = """
[run]
shots = 6
[state]
kind = "coherent"
[imaging]
reference_delay_s = 5e-3
dark_delay_s = 5e-3
frame_timeout_s = 0.3
[retry]
max_attempts = 1
on_exhausted = "abort"
"""


def test_a_simulation_slower_than_every_timeout_fails_no_shot(tmp_path: Path, monkeypatch) -> None:
    """Each shot's atoms take 0.8 s to simulate, beyond the 0.3 s card, generator and frame timeouts
    and the 0.2 s card margin: every shot is ok, and the waits are reported."""
    real_shot = SimulatedAtoms.shot

    def slow_shot(self, *a, **kw):
        time.sleep(0.8)
        return real_shot(self, *a, **kw)

    monkeypatch.setattr(SimulatedAtoms, "shot", slow_shot)
    cfg = lab(tmp_path, 0.3)
    plan = parse_plan(PLAN, "plan.toml", cfg.microwave_calibration)
    with RunSession(cfg, plan, "slow.h5", seed=3) as s:
        s.start()
        assert s.wait(120) is RunState.COMPLETED, s.error
        extensions = s.lab.lateness.extensions
    assert s.failed_shots == []
    assert extensions > 0
    with open_run(s.path) as run:
        assert run.n_shots == 6 and run.end_state == "completed"


def test_an_emulator_that_really_hangs_still_times_out(tmp_path: Path) -> None:
    """The emulated generator stops answering (its fault switch): a fault, as on a real lab."""
    cfg = lab(tmp_path, 0.3)
    plan = parse_plan(PLAN.replace("shots = 6", "shots = 40"), "plan.toml", cfg.microwave_calibration)
    with RunSession(cfg, plan, "hang.h5", seed=3) as s:
        done = threading.Event()

        def hang_after_a_few(p) -> None:
            if p.ok_shots == 3 and not done.is_set():
                done.set()
                s.lab.microwave_emulator.reply_delay_s = 5.0

        s.add_progress_listener(hang_after_a_few)
        s.start()
        final = s.wait(120)
    assert final in (RunState.ABORTED, RunState.FAULTED)
    assert s.failed_shots and "microwave" in s.failed_shots[0][1]
