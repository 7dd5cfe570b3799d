"""Every shot's settings verified: another host touches the emulated generator mid-run (``*RST``, a
frequency change) over its own TCP connection; no ``ok`` row carries settings that differ from the
plan, the affected slots are retried after the settings are re-applied, and a run whose settings
keep being changed pauses with a fault naming them."""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from drivers.sma100b import SMA100B
from sequences.control import Abort, RunControl, RunState
from sequences.publish import Overflow, ShotPublisher
from sequences.sequencer import Sequencer
from sequences.verify import (Expected, Mismatch, SettingsMismatch, camera_expected, compare,
                              microwave_expected)
from tests.sequences.minilab import H, W, MiniLab, config, plan
from tests.sequences.test_sequencer_faults import check_run, run


@pytest.fixture
def lab() -> Iterator[MiniLab]:
    with MiniLab() as lab:
        yield lab


def other_host(lab: MiniLab, command: bytes) -> None:
    """Another local process: its own connection to the generator, one command, then gone."""
    with socket.create_connection(("127.0.0.1", lab.mw_emu.port), timeout=2.0) as s:
        s.sendall(command + b"\n*OPC?\n")
        assert s.recv(16) == b"1\n"


def plan_settings_hold(shot, p) -> None:
    """The ok row's settings are those the plan asked for (within the stated tolerances)."""
    pulse = p.microwave.pulse(shot.direction)
    expected = microwave_expected(frequency_hz=p.microwave.frequency_hz,
                                  level_dbm=p.microwave.power_dbm,
                                  phase_deg=pulse.phase_deg if pulse.pulse_s > 0 else None,
                                  fixed=SMA100B.fixed_settings)
    read = dict(shot.settings)
    assert all(e.name in read for e in expected), sorted(read)
    assert compare(expected, read) == [], (shot.index, shot.settings)
    assert read["card.status"] == "STOPPED"


def test_rst_from_another_host_mid_run_fails_that_shot_and_the_slot_is_retried(lab: MiniLab) -> None:
    lab.before_render = lambda n: n != 3 or other_host(lab, b"*RST") is None
    p = plan(9)
    seq, shots = run(lab, p)
    assert seq.control.state is RunState.COMPLETED, seq.control.error
    failed = [s for s in shots if not s.is_ok]
    assert len(failed) == 1
    reason = failed[0].reason
    assert reason.startswith("microwave: settings differ from the plan: ")
    assert "mw.frequency_hz asked 6834682611 Hz, read 1000000000 Hz, tolerance 0.001 Hz" in reason
    assert "mw.level_dbm asked -10 dBm, read -30 dBm, tolerance 0.01 dBm" in reason
    assert "mw.output_enabled asked True, read False" in reason
    assert failed[0].settings["mw.output_enabled"] is False        # what was read, stored
    for shot in shots:
        if shot.is_ok:
            plan_settings_hold(shot, p)
    check_run(shots, 9)                                            # the slot retried, attempt 2


def test_a_frequency_change_from_another_host_is_caught(lab: MiniLab) -> None:
    lab.before_render = lambda n: n != 2 or other_host(lab, b"SOUR:FREQ 6.9 GHz") is None
    p = plan(6)
    seq, shots = run(lab, p)
    assert seq.control.state is RunState.COMPLETED
    failed = [s for s in shots if not s.is_ok]
    assert [f.reason for f in failed] == [
        "microwave: settings differ from the plan: "
        "mw.frequency_hz asked 6834682611 Hz, read 6900000000 Hz, tolerance 0.001 Hz"]
    for shot in shots:
        if shot.is_ok:
            plan_settings_hold(shot, p)
    assert lab.mw_emu.snapshot().frequency_hz == 6_834_682_611.0   # re-applied (RF off at the end)
    check_run(shots, 6)


def test_an_error_queued_by_another_host_fails_the_shot(lab: MiniLab) -> None:
    lab.before_render = lambda n: n != 2 or other_host(lab, b"FROB 1") is None
    seq, shots = run(lab, plan(3))
    assert seq.control.state is RunState.COMPLETED
    failed = [s for s in shots if not s.is_ok]
    assert len(failed) == 1
    assert 'mw.error_queue asked empty, read -113,"Undefined header;FROB"' in failed[0].reason
    check_run(shots, 3)


def test_settings_changed_on_every_attempt_pause_the_run_with_the_fault(lab: MiniLab) -> None:
    lab.before_render = lambda n: n < 2 or other_host(lab, b"*RST") is None
    rc = RunControl()
    seq = Sequencer(plan(6, max_attempts=3), lab.instruments, config(), publisher=ShotPublisher(),
                    control=rc)
    sub = seq.publisher.subscribe("test", maxsize=1000, overflow=Overflow.BLOCK)
    thread = threading.Thread(target=seq.run, name="sequencer-test")
    thread.start()
    try:
        assert rc.wait_for(lambda s: s is RunState.PAUSED, timeout=30)
        assert rc.error.startswith("microwave: settings differ from the plan: ")
        assert "mw.output_enabled asked True, read False" in rc.error
    finally:
        rc.submit(Abort())
        thread.join(timeout=30)
    shots = list(sub)
    assert [s.status for s in shots] == ["ok", "failed", "failed", "failed"]   # N = 3 attempts
    assert {(s.cycle, s.sequence_index) for s in shots[1:]} == {(0, 1)}
    assert [s.attempt for s in shots[1:]] == [1, 2, 3]


def test_camera_roi_changed_behind_the_sequencers_back_is_caught(lab: MiniLab) -> None:
    p = plan(3)
    seq = Sequencer(p, lab.instruments, config(), publisher=ShotPublisher())
    sub = seq.publisher.subscribe("test", maxsize=1000, overflow=Overflow.BLOCK)

    def change_roi(progress) -> None:     # between shots, while the camera is disarmed
        if progress.index == 0:
            lab.camera.configure(width=W - 2, height=H, offset_x=2, offset_y=1,
                                 exposure_s=p.imaging.camera_exposure_s, frames_per_shot=5)
    seq.add_progress_listener(change_roi)
    assert seq.run() is RunState.COMPLETED
    shots = list(sub)
    failed = [s for s in shots if not s.is_ok]
    assert len(failed) == 1 and failed[0].reason.startswith("camera: settings differ")
    assert f"camera.width asked {W}, read {W - 2}" in failed[0].reason
    check_run(shots, 3)


def test_tolerances_and_messages() -> None:
    freq = Expected("mw.frequency_hz", 6.834682611e9, "microwave", 1e-3, "Hz")
    assert freq.matches(6.834682611e9 + 0.0009) and not freq.matches(6.834682611e9 + 0.002)
    assert not freq.matches(True) and not freq.matches("6834682611")
    exposure = camera_expected(width=4, height=4, offset_x=0, offset_y=0, exposure_s=1e-3,
                               trigger="hardware", trigger_line="Line0")[-1]
    assert exposure.allowed() == pytest.approx(1e-5)               # 1 % beats 2 us here
    assert exposure.matches(1.009e-3) and not exposure.matches(1.02e-3)
    assert Expected("mw.output_enabled", True, "microwave").matches(1) is False   # bool is not int
    assert compare([freq], {}) == [] and compare([freq], {"mw.frequency_hz": None}) == []
    m = Mismatch(Expected("mw.level_dbm", -10.0, "microwave", 0.01, "dBm"), -30.0)
    assert str(m) == "mw.level_dbm asked -10 dBm, read -30 dBm, tolerance 0.01 dBm"
    assert str(SettingsMismatch([m])) == \
        "microwave: settings differ from the plan: mw.level_dbm asked -10 dBm, read -30 dBm, tolerance 0.01 dBm"


def test_card_status_and_program_length_are_compared() -> None:
    from sequences.verify import card_expected
    found = compare(card_expected(instructions=12), {"card.status": "ABORTED", "card.instructions": 11})
    assert [str(m) for m in found] == ["card.status asked STOPPED, read ABORTED",
                                       "card.instructions asked 12, read 11"]
    assert compare(card_expected(instructions=12), {"card.status": "STOPPED", "card.instructions": 12}) == []
