"""Run control: explicit run states, typed operator commands, observable transitions.

States and transitions (the operator's commands in capitals, the sequencer's moves in lower case):

    IDLE --START--> RUNNING --PAUSE--> PAUSING --(shot finished)--> PAUSED --RESUME--> RUNNING
    RUNNING, PAUSING, PAUSED --STOP--> STOPPING --(shot finished)--> STOPPED
    RUNNING, PAUSING, PAUSED, STOPPING --ABORT--> ABORTING --(shot cut short)--> ABORTED
    RUNNING, PAUSING --fault(reason)--> PAUSED (with ``error`` set; RESUME reconnects and retries)
    RUNNING, PAUSING --(plan done)--> COMPLETED;  any live state --fatal(reason)--> FAULTED

COMPLETED, STOPPED, ABORTED and FAULTED are final. The sequencer calls ``checkpoint()`` between
shots (it blocks while PAUSED) and polls ``abort_requested`` inside a shot. Listeners receive a
``StateEvent`` for every transition, in the thread that made it, after the lock is released.
"""
from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sequences.shot import utc_now_iso

log = logging.getLogger(__name__)


class RunState(enum.Enum):
    """Where a run is."""

    IDLE = "idle"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    STOPPING = "stopping"
    ABORTING = "aborting"
    COMPLETED = "completed"
    STOPPED = "stopped"
    ABORTED = "aborted"
    FAULTED = "faulted"

    @property
    def is_final(self) -> bool:
        """True once the run is over."""
        return self in _FINAL


_FINAL = frozenset({RunState.COMPLETED, RunState.STOPPED, RunState.ABORTED, RunState.FAULTED})
_LIVE = frozenset({RunState.RUNNING, RunState.PAUSING, RunState.PAUSED, RunState.STOPPING,
                   RunState.ABORTING})


@dataclass(frozen=True)
class Start:
    """Start the run."""


@dataclass(frozen=True)
class Pause:
    """Pause after the current shot."""


@dataclass(frozen=True)
class Resume:
    """Resume a paused run (after a fault: reconnect the instruments first, then retry)."""


@dataclass(frozen=True)
class Stop:
    """Finish the current shot, then end the run."""


@dataclass(frozen=True)
class Abort:
    """End the run now, cutting the current shot short (it is recorded as failed)."""


Command = Start | Pause | Resume | Stop | Abort

_ALLOWED: dict[type, dict[RunState, RunState]] = {
    Start: {RunState.IDLE: RunState.RUNNING},
    Pause: {RunState.RUNNING: RunState.PAUSING},
    Resume: {RunState.PAUSED: RunState.RUNNING, RunState.PAUSING: RunState.RUNNING},
    Stop: {s: RunState.STOPPING for s in (RunState.RUNNING, RunState.PAUSING, RunState.PAUSED)},
    Abort: {s: RunState.ABORTING for s in (RunState.RUNNING, RunState.PAUSING, RunState.PAUSED,
                                            RunState.STOPPING)},
}


class Directive(enum.Enum):
    """What the sequencer does after ``checkpoint()``."""

    CONTINUE = "continue"
    STOP = "stop"
    ABORT = "abort"


class TransitionError(RuntimeError):
    """A command or move not allowed in the current state; names both."""


@dataclass(frozen=True)
class StateEvent:
    """One transition: previous and new state, why (command, fault text), when."""

    previous: RunState
    state: RunState
    reason: str
    time_utc: str
    monotonic_s: float


Listener = Callable[[StateEvent], None]


class RunControl:
    """The state of one run, shared by the operator side (``submit``) and the sequencer thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._state = RunState.IDLE
        self._error = ""
        self._listeners: list[Listener] = []
        self._abort = threading.Event()

    # --- observation -----------------------------------------------------------------------------
    @property
    def state(self) -> RunState:
        """The current state."""
        return self._state

    @property
    def error(self) -> str:
        """The fault that paused (or faulted) the run; empty when there is none."""
        return self._error

    @property
    def abort_requested(self) -> bool:
        """True once ABORT was submitted (the sequencer polls this inside a shot)."""
        return self._abort.is_set()

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` on every transition; returns a function that removes it."""
        with self._cond:
            self._listeners.append(listener)

        def remove() -> None:
            with self._cond:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return remove

    def allowed(self, command: Command) -> bool:
        """True if ``command`` is accepted in the current state (e.g. to enable a button)."""
        return self._state in _ALLOWED[type(command)]

    def wait_for(self, predicate: Callable[[RunState], bool], timeout: float | None = None) -> bool:
        """Block until ``predicate(state)`` holds; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._state), timeout)

    # --- operator side ---------------------------------------------------------------------------
    def submit(self, command: Command) -> RunState:
        """Apply an operator command; returns the new state or raises TransitionError."""
        if type(command) not in _ALLOWED:
            raise TypeError(f"not a run command: {command!r}; expected Start, Pause, Resume, "
                            "Stop or Abort")
        with self._cond:
            table = _ALLOWED[type(command)]
            if self._state not in table:
                raise TransitionError(f"{type(command).__name__} is not allowed while the run is "
                                      f"{self._state.value}; allowed in: "
                                      + ", ".join(s.value for s in table))
            if isinstance(command, Abort):
                self._abort.set()
            event = self._move(table[self._state], type(command).__name__.lower())
        self._emit(event)
        return event.state

    # --- sequencer side --------------------------------------------------------------------------
    def checkpoint(self, timeout: float | None = None) -> Directive:
        """Between shots: settle PAUSING into PAUSED, block while PAUSED, then say what to do.

        Raises TimeoutError if the run is still paused after ``timeout`` seconds (None: no limit).
        """
        events = []
        with self._cond:
            if self._state is RunState.PAUSING:
                events.append(self._move(RunState.PAUSED, "paused between shots"))
        for e in events:
            self._emit(e)
        with self._cond:
            if not self._cond.wait_for(lambda: self._state is not RunState.PAUSED, timeout):
                raise TimeoutError("run still paused")
            return self._directive()

    def _directive(self) -> Directive:
        if self._state is RunState.ABORTING:
            return Directive.ABORT
        if self._state is RunState.STOPPING:
            return Directive.STOP
        if self._state in (RunState.RUNNING, RunState.PAUSING):
            return Directive.CONTINUE
        raise TransitionError(f"checkpoint while the run is {self._state.value}")

    def fault(self, reason: str) -> RunState:
        """An instrument fault the operator can fix: pause with ``reason`` shown.

        While STOPPING or ABORTING the run ends instead (STOPPED / ABORTED keep their meaning).
        """
        with self._cond:
            self._error = reason
            if self._state in (RunState.RUNNING, RunState.PAUSING):
                event = self._move(RunState.PAUSED, reason)
            elif self._state in (RunState.STOPPING, RunState.ABORTING, RunState.PAUSED):
                return self._state
            else:
                raise TransitionError(f"fault while the run is {self._state.value}: {reason}")
        self._emit(event)
        return event.state

    def clear_error(self) -> None:
        """Forget the last fault (after a successful reconnection)."""
        with self._cond:
            self._error = ""

    def finish(self, *, fatal: str = "") -> RunState:
        """End the run: FAULTED if ``fatal``, else the final state its current state leads to."""
        with self._cond:
            if self._state.is_final:
                return self._state
            if self._state is RunState.IDLE and not fatal:
                raise TransitionError("finish() before the run started")
            if fatal:
                self._error = fatal
                target, reason = RunState.FAULTED, fatal
            else:
                target = {RunState.STOPPING: RunState.STOPPED,
                          RunState.ABORTING: RunState.ABORTED,
                          RunState.PAUSED: RunState.STOPPED}.get(self._state, RunState.COMPLETED)
                reason = "plan done" if target is RunState.COMPLETED else target.value
            event = self._move(target, reason)
        self._emit(event)
        return event.state

    # --- internals -------------------------------------------------------------------------------
    def _move(self, state: RunState, reason: str) -> StateEvent:
        event = StateEvent(self._state, state, reason, utc_now_iso(), time.monotonic())
        self._state = state
        self._cond.notify_all()
        log.info("run %s -> %s (%s)", event.previous.value, state.value, reason)
        return event

    def _emit(self, event: StateEvent) -> None:
        with self._cond:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # a broken display must not break the run
                log.exception("run-state listener %r failed", listener)
