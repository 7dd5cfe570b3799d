"""The sequencer on the mini virtual lab (real drivers, emulators on 127.0.0.1): programming,
frames, read-back, run control."""
from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

from drivers.pulse_program import edges_to_pulses
from sequences.control import Abort, Pause, Resume, RunControl, RunState, Stop
from sequences.imaging_program import shot_program
from sequences.publish import Overflow, ShotPublisher
from sequences.sequencer import Sequencer
from tests.sequences.minilab import CHANNELS, H, W, MiniLab, config, plan


@pytest.fixture
def lab() -> Iterator[MiniLab]:
    with MiniLab() as lab:
        yield lab


def run_collect(seq: Sequencer) -> tuple[RunState, list]:
    sub = seq.publisher.subscribe("test", maxsize=1000, overflow=Overflow.BLOCK)
    final = seq.run()
    return final, list(sub)


def check_frames(shot, direction: str) -> None:
    """The frames show what the instruments did for this shot's direction."""
    info = shot.frames[:, 0, :5]   # ROI offset (1, 2) puts the lab's markers in row 0
    assert list(info[:, 0]) == [0, 1, 2, 3, 4]                       # frame order
    assert len(set(info[:, 4])) == 1                                  # one sequence: no stale frame
    assert list(info[:, 3]) == [1, 1, 1, 1, 0]                        # probe on except dark
    gate = {"x": 120, "y": 120, "z": 0}[direction]
    assert set(info[:, 2]) == {gate}
    if direction != "z":
        assert set(info[:, 1]) == {{"x": 90, "y": 0}[direction]}


def test_a_plan_runs_on_the_virtual_lab(lab: MiniLab) -> None:
    seq = Sequencer(plan(6), lab.instruments, config(), publisher=ShotPublisher())
    described = seq.prepare()
    assert described["microwave"]["identity"].startswith("Rohde&Schwarz,SMA100B")
    assert described["timing_card"]["board"] == "pico2"
    assert described["camera"]["identity"]["serial_number"] == "T1"
    final, shots = run_collect(seq)
    assert final is RunState.COMPLETED and seq.control.state is RunState.COMPLETED
    assert [s.direction for s in shots] == list("xyzxyz")
    assert [s.index for s in shots] == list(range(6)) and all(s.is_ok for s in shots)
    assert [(s.cycle, s.sequence_index) for s in shots] == [(c, i) for c in range(2) for i in range(3)]
    sequences = [int(s.frames[0, 0, 4]) for s in shots]
    assert sequences == sorted(set(sequences))
    for s in shots:
        assert s.frames.shape == (5, H, W) and s.frames.dtype == np.uint16
        check_frames(s, s.direction)
        assert s.settings["mw.frequency_hz"] == pytest.approx(6.834682611e9)
        assert s.settings["mw.output_enabled"] is True
        assert s.settings["card.status"] == "STOPPED"
        assert s.timing.duration_s > 0
    assert shots[0].settings["mw.phase_deg"] == 90.0 and shots[1].settings["mw.phase_deg"] == 0.0
    assert lab.mw_emu.snapshot().output_enabled is False  # RF off at the end


def test_the_card_emits_the_planned_pulses(lab: MiniLab) -> None:
    p = plan(3)
    seq = Sequencer(p, lab.instruments, config(), publisher=ShotPublisher())
    assert run_collect(seq)[0] is RunState.COMPLETED
    records = lab.card_emu.records
    assert len(records) == 3
    for rec, direction in zip(records, "xyz"):
        emitted = edges_to_pulses(rec.edges, CHANNELS)
        planned = shot_program(p, direction, CHANNELS)
        for name, pulses in planned.items():
            assert len(emitted.get(name, [])) == len(pulses), name
            for (t, d), (te, de) in zip(pulses, emitted[name]):
                assert te == pytest.approx(t, abs=1e-8) and de == pytest.approx(d, abs=1e-8)
    first = edges_to_pulses(records[0].edges, CHANNELS)
    assert first["probe"][1][0] - first["probe"][0][0] == pytest.approx(1.5e-3, abs=1e-8)


def _threaded(seq: Sequencer) -> tuple[threading.Thread, list]:
    sub = seq.publisher.subscribe("test", maxsize=1000, overflow=Overflow.BLOCK)
    out: list = []
    t = threading.Thread(target=lambda: (seq.run(), out.extend(sub)), name="sequencer-test")
    t.start()
    return t, out


def test_pause_between_shots_and_resume(lab: MiniLab) -> None:
    rc = RunControl()
    seq = Sequencer(plan(6), lab.instruments, config(), publisher=ShotPublisher(), control=rc)
    lab.before_render = lambda n: (n != 2 or rc.submit(Pause()) is not None)
    thread, shots = _threaded(seq)
    assert rc.wait_for(lambda s: s is RunState.PAUSED, timeout=20)
    paused_at = lab.sequences
    assert not rc.wait_for(lambda s: s is not RunState.PAUSED, timeout=0.3)
    assert lab.sequences == paused_at == 2  # the shot in progress finished, no new one
    rc.submit(Resume())
    thread.join(timeout=30)
    assert rc.state is RunState.COMPLETED and len(shots) == 6 and all(s.is_ok for s in shots)


def test_stop_finishes_the_current_shot(lab: MiniLab) -> None:
    rc = RunControl()
    seq = Sequencer(plan(9), lab.instruments, config(), publisher=ShotPublisher(), control=rc)
    lab.before_render = lambda n: (n != 3 or rc.submit(Stop()) is not None)
    thread, shots = _threaded(seq)
    thread.join(timeout=30)
    assert rc.state is RunState.STOPPED
    assert [s.index for s in shots] == [0, 1, 2] and all(s.is_ok for s in shots)
    check_frames(shots[2], "z")


def test_abort_cuts_the_current_shot_short(lab: MiniLab) -> None:
    rc = RunControl()
    seq = Sequencer(plan(9), lab.instruments, config(), publisher=ShotPublisher(), control=rc)
    lab.before_render = lambda n: (n != 2 or (rc.submit(Abort()) is None))  # no frames for shot 2
    thread, shots = _threaded(seq)
    thread.join(timeout=30)
    assert rc.state is RunState.ABORTED
    assert [(s.index, s.status) for s in shots] == [(0, "ok"), (1, "failed")]
    assert shots[1].reason == "aborted by the operator" and shots[1].direction == "y"
