"""Run control: every transition, refused commands, listeners, pausing and aborting a worker."""
from __future__ import annotations

import threading

import pytest

from sequences.control import (Abort, Directive, Pause, Resume, RunControl, RunState, Start, Stop,
                               TransitionError)

S = RunState


def test_operator_transitions_and_events() -> None:
    rc = RunControl()
    events = []
    remove = rc.add_listener(events.append)
    assert rc.state is S.IDLE and rc.allowed(Start()) and not rc.allowed(Pause())
    assert rc.submit(Start()) is S.RUNNING
    assert rc.submit(Pause()) is S.PAUSING
    assert rc.submit(Resume()) is S.RUNNING  # cancel a pending pause
    rc.submit(Pause())
    with pytest.raises(TimeoutError):
        rc.checkpoint(timeout=0.05)  # settles PAUSING -> PAUSED, then stays paused
    assert rc.state is S.PAUSED
    rc.submit(Resume())
    assert rc.checkpoint() is Directive.CONTINUE
    rc.submit(Stop())
    assert rc.checkpoint() is Directive.STOP
    assert rc.finish() is S.STOPPED and rc.state.is_final
    assert [(e.previous, e.state) for e in events] == [
        (S.IDLE, S.RUNNING), (S.RUNNING, S.PAUSING), (S.PAUSING, S.RUNNING),
        (S.RUNNING, S.PAUSING), (S.PAUSING, S.PAUSED), (S.PAUSED, S.RUNNING),
        (S.RUNNING, S.STOPPING), (S.STOPPING, S.STOPPED)]
    assert events[-1].time_utc.endswith("+00:00")
    remove()
    with pytest.raises(TransitionError, match="Start is not allowed while the run is stopped"):
        rc.submit(Start())
    assert len(events) == 8


@pytest.mark.parametrize("command, state", [
    (Pause(), S.IDLE), (Resume(), S.RUNNING), (Stop(), S.IDLE), (Abort(), S.IDLE),
    (Start(), S.RUNNING)])
def test_refused_commands_name_command_and_state(command, state) -> None:
    rc = RunControl()
    if state is S.RUNNING:
        rc.submit(Start())
    with pytest.raises(TransitionError, match=f"{type(command).__name__} is not allowed while the "
                                              f"run is {state.value}; allowed in"):
        rc.submit(command)
    assert rc.state is state


def test_commands_must_be_typed() -> None:
    with pytest.raises(TypeError, match="not a run command: 'stop'"):
        RunControl().submit("stop")  # type: ignore[arg-type]


def test_fault_pauses_with_error_and_resume_continues() -> None:
    rc = RunControl()
    rc.submit(Start())
    assert rc.fault("microwave: no reply to ':PHAS 90' within 1 s") is S.PAUSED
    assert "no reply" in rc.error
    rc.submit(Resume())
    assert rc.checkpoint() is Directive.CONTINUE
    rc.clear_error()
    assert rc.error == ""
    rc.submit(Stop())
    assert rc.fault("late fault") is S.STOPPING  # stopping stays stopping
    assert rc.finish() is S.STOPPED


def test_abort_and_fatal_and_completion() -> None:
    rc = RunControl()
    rc.submit(Start())
    rc.submit(Stop())
    rc.submit(Abort())  # abort overrides a pending stop
    assert rc.abort_requested and rc.checkpoint() is Directive.ABORT
    assert rc.finish() is S.ABORTED
    rc2 = RunControl()
    rc2.submit(Start())
    assert rc2.finish() is S.COMPLETED
    rc3 = RunControl()
    rc3.submit(Start())
    assert rc3.finish(fatal="run file: disk full") is S.FAULTED and rc3.error == "run file: disk full"
    assert rc3.finish() is S.FAULTED  # final states stay
    with pytest.raises(TransitionError, match="before the run started"):
        RunControl().finish()


def test_worker_blocks_while_paused_until_resume_or_abort() -> None:
    rc = RunControl()
    rc.submit(Start())
    rc.submit(Pause())
    result = []
    worker = threading.Thread(target=lambda: result.append(rc.checkpoint(timeout=10)))
    worker.start()
    assert rc.wait_for(lambda s: s is S.PAUSED, timeout=5)
    assert worker.is_alive()
    rc.submit(Abort())
    worker.join(timeout=5)
    assert result == [Directive.ABORT]


def test_a_failing_listener_does_not_break_the_run() -> None:
    rc = RunControl()
    seen = []

    def broken(event) -> None:
        raise RuntimeError("display gone")
    rc.add_listener(broken)
    rc.add_listener(seen.append)
    rc.submit(Start())
    assert rc.state is S.RUNNING and len(seen) == 1
