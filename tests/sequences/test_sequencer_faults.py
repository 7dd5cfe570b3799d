"""Instrument faults during a run (injected through the emulators): each ends in the documented
behaviour, with no lost, duplicated or mislabelled shot and a balanced direction cycle."""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from sequences.control import Abort, Resume, RunControl, RunState
from sequences.publish import ConsumerThread, Overflow, ShotPublisher
from sequences.sequencer import Sequencer
from tests.sequences.minilab import MiniLab, config, plan
from tests.sequences.test_sequencer import check_frames


@pytest.fixture
def lab() -> Iterator[MiniLab]:
    with MiniLab() as lab:
        yield lab


def check_run(shots: list, n_planned: int) -> None:
    """Every slot has exactly one ok shot with the right direction and frames; indices unique."""
    assert [s.index for s in shots] == list(range(len(shots)))
    ok = [s for s in shots if s.is_ok]
    slots = [(s.cycle, s.sequence_index) for s in ok]
    assert slots == [(n // 3, n % 3) for n in range(n_planned)]
    for s in shots:
        assert s.direction == "xyz"[s.sequence_index]
    for s in ok:
        check_frames(s, s.direction)
    assert Counter(s.direction for s in ok) == Counter("xyz" * (n_planned // 3))
    for s in shots:  # a retry follows its failed attempt, same slot, attempt + 1
        if not s.is_ok:
            nxt = shots[s.index + 1]
            assert (nxt.cycle, nxt.sequence_index, nxt.attempt) == (s.cycle, s.sequence_index,
                                                                    s.attempt + 1)


def run(lab: MiniLab, p, rc: RunControl | None = None, *,
        on_failed=None) -> tuple[Sequencer, list]:
    """Run in a thread; a run that does not end within 60 s is aborted and the test fails."""
    rc = rc or RunControl()
    seq = Sequencer(p, lab.instruments, config(), publisher=ShotPublisher(), control=rc)
    if on_failed is not None:
        seq.add_progress_listener(lambda pr: pr.status == "failed" and on_failed())
    sub = seq.publisher.subscribe("test", maxsize=1000, overflow=Overflow.BLOCK)
    thread = threading.Thread(target=seq.run, name="sequencer-test")
    thread.start()
    thread.join(timeout=60)
    if thread.is_alive():
        state = rc.state
        rc.submit(Abort())
        thread.join(timeout=30)
        pytest.fail(f"run did not end: {state.value}, {rc.error}")
    return seq, list(sub)


def test_microwave_connection_dropped_mid_run_is_retried(lab: MiniLab) -> None:
    lab.before_render = lambda n: (n != 3 or lab.mw_emu.drop_connections() is None)
    seq, shots = run(lab, plan(9))
    assert seq.control.state is RunState.COMPLETED
    failed = [s for s in shots if not s.is_ok]
    assert len(failed) == 1 and failed[0].reason.startswith("microwave:")
    check_run(shots, 9)


@pytest.mark.parametrize("fault", ["drop", "garbage", "slow", "wrong"])
def test_timing_card_faults_are_retried(lab: MiniLab, fault: str) -> None:
    faults = lab.card_emu.faults

    def inject(n: int) -> bool:
        if n == 2:
            if fault == "drop":
                lab.card_emu.drop_connections()
            elif fault == "garbage":
                faults.garbage = b"\x00\xffgarbage\r\n"
            elif fault == "slow":
                faults.reply_delay_s = 0.5
            else:
                faults.wrong_replies["sts"] = "run-status:9 clock-status:0"
        return True

    def heal() -> None:
        faults.reply_delay_s = 0.0
        faults.wrong_replies.clear()
    lab.before_render = inject
    seq, shots = run(lab, plan(6, max_attempts=4), on_failed=heal)
    assert seq.control.state is RunState.COMPLETED, seq.control.error
    failed = [s for s in shots if not s.is_ok]
    assert failed and all(s.reason.startswith("timing_card:") for s in failed)
    check_run(shots, 6)


def test_missing_frames_fail_the_shot_and_the_retry_has_its_own_frames(lab: MiniLab) -> None:
    lab.before_render = lambda n: (n != 2 or lab.camera.drop_next_frames(2) is None)
    seq, shots = run(lab, plan(6))
    assert seq.control.state is RunState.COMPLETED
    failed = [s for s in shots if not s.is_ok]
    assert len(failed) == 1 and "camera: collect frames" in failed[0].reason
    assert "3 of 5 frames" in failed[0].reason
    check_run(shots, 6)


def test_unreachable_instrument_pauses_with_the_error_and_resume_reconnects(lab: MiniLab) -> None:
    rc = RunControl()
    events = []
    rc.add_listener(events.append)

    def cut(n: int) -> bool:
        if n == 2:
            lab.mw_emu.refuse_connections = True
            lab.mw_emu.drop_connections()
        return True
    lab.before_render = cut
    seq = Sequencer(plan(6, max_attempts=2, reconnect_attempts=1), lab.instruments, config(),
                    publisher=ShotPublisher(), control=rc)
    sub = seq.publisher.subscribe("test", maxsize=1000, overflow=Overflow.BLOCK)
    thread = threading.Thread(target=seq.run, name="sequencer-test")
    thread.start()
    try:
        assert rc.wait_for(lambda s: s is RunState.PAUSED, timeout=30)
        assert rc.error.startswith("microwave:")
        paused = [e for e in events if e.state is RunState.PAUSED]
        assert paused[-1].reason == rc.error
        rc.submit(Resume())  # still unreachable: pauses again, saying why
        assert rc.wait_for(lambda s: s is RunState.PAUSED and "reconnecting failed" in rc.error,
                           timeout=30)
        lab.mw_emu.refuse_connections = False
        rc.submit(Resume())
    finally:
        lab.mw_emu.refuse_connections = False
        thread.join(timeout=60)
    assert rc.state is RunState.COMPLETED
    shots = list(sub)
    check_run(shots, 6)
    assert sum(not s.is_ok for s in shots) == 1  # reconnecting failed: paused before a retry


def test_exhausted_retries_can_end_the_run(lab: MiniLab) -> None:
    lab.before_render = lambda n: n < 2  # the camera never sees frames from shot 2 on
    seq, shots = run(lab, plan(6, max_attempts=2, reconnect_attempts=1, on_exhausted="abort"))
    assert seq.control.state is RunState.FAULTED
    assert "giving up after 2 attempt(s) of slot 1" in seq.control.error
    assert [s.status for s in shots] == ["ok", "failed", "failed"]


def test_a_failing_run_writer_faults_the_run(lab: MiniLab) -> None:
    pub = ShotPublisher()
    written = []

    def write(shot) -> None:
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        written.append(shot.index)
    consumer = ConsumerThread(pub.subscribe("writer", maxsize=1, overflow=Overflow.BLOCK),
                              write).start()
    seq = Sequencer(plan(9), lab.instruments, config(), publisher=pub)
    assert seq.run() is RunState.FAULTED
    assert consumer.join(timeout=10)
    assert "writer" in seq.control.error and "No space left" in seq.control.error
    assert written == [0, 1]
