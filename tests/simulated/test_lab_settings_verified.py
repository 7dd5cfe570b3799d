"""The issue's scenario on the whole virtual lab, through the run file: another local process sends
``*RST`` to the emulated SMA100B mid-run over its own connection. Before issue 18, 128 of 152 shots
were stored ``ok`` with RF off, 1 GHz, -30 dBm; now not one ``ok`` row differs from the plan."""
from __future__ import annotations

import socket
from pathlib import Path

from app.runfile import open_run
from app.session import RunSession
from drivers.sma100b import SMA100B
from sequences.control import RunState
from sequences.verify import compare, microwave_expected
from tests.app.test_session import lab_config, plan


def other_host_rst(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
        s.sendall(b"*RST\n*OPC?\n")
        assert s.recv(16) == b"1\n"


def test_rst_from_another_process_mid_run_leaves_no_wrong_ok_row_in_the_file(tmp_path: Path) -> None:
    cfg = lab_config(tmp_path)
    shots = 60
    p = plan(cfg, shots, "squeezed")
    with RunSession(cfg, p, "rst.h5", seed=4) as s:
        s.add_progress_listener(
            lambda pr: pr.index in (10, 30) and other_host_rst(s.lab.microwave_emulator.port))
        s.start()
        assert s.wait(120) is RunState.COMPLETED
    with open_run(s.path) as run:
        table = run.table()
        status = list(table["status"])
        assert status.count("ok") == shots and status.count("failed") == 2
        for i, st in enumerate(status):
            text = run.shot_text(i)
            if st == "failed":
                assert "mw.output_enabled asked True, read False" in text["reason"]
                assert text["settings"]["mw.frequency_hz"] == 1e9          # what was read, stored
                nxt = run.shot_text(i + 1)
                assert table["attempt"][i + 1] == table["attempt"][i] + 1   # the slot retried
                assert nxt["settings"]["mw.output_enabled"] is True
                continue
            direction = table["direction"][i]
            pulse = p.microwave.pulse(direction)
            expected = microwave_expected(
                frequency_hz=p.microwave.frequency_hz, level_dbm=p.microwave.power_dbm,
                phase_deg=pulse.phase_deg if pulse.pulse_s > 0 else None, fixed=SMA100B.fixed_settings)
            assert compare(expected, text["settings"]) == [], (i, text["settings"])
