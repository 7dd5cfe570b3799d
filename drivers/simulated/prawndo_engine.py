"""Program execution of the emulated PrawnDO: the firmware's second core and PIO state machine.

Holds the run status, the outputs and the trigger input; runs a program on a thread in simulated
time and records the edges it emits: ``(time_s, word)`` per change of the outputs, time from the start
(the trigger after ``run``, the command for ``swr``), ``cycles / clock_hz`` per instruction. A 0-cycle
instruction followed by another ends the program; otherwise it holds its word until a trigger. A
program that runs out of instructions holds its last word until aborted, as the PIO does.

Real time runs ``time_scale`` x simulated time (0: instantly). Listeners get the edges when the
program stops or is aborted, before the status leaves RUNNING.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_log = logging.getLogger(__name__)

STOPPED, TRANSITION_TO_RUNNING, RUNNING, ABORT_REQUESTED, ABORTING, ABORTED, TRANSITION_TO_STOP = range(7)
_HWSTART = 2 << 16                   # the firmware's HWSTART flag, printed by `hwstart: %d`

Edges = list[tuple[float, int]]


@dataclass(frozen=True)
class SequenceRecord:
    """One execution: its edges, how it started and ended (times in s of simulated time)."""

    edges: Edges
    hardware_start: bool
    aborted: bool
    clock_hz: float
    end_s: float


RECORDS_KEPT = 1000


class SequenceEngine:
    """Run status, outputs, trigger input and the program runner thread."""

    def __init__(self, *, time_scale: float = 1.0) -> None:
        self.time_scale = time_scale
        self.outputs = 0
        # the last RECORDS_KEPT executions (bounded: a card runs for days)
        self.records: collections.deque[SequenceRecord] = collections.deque(maxlen=RECORDS_KEPT)
        self._status = STOPPED
        self._cv = threading.Condition()
        self._triggers: collections.deque[tuple[float | None, float]] = collections.deque()
        self._runner: threading.Thread | None = None
        self._shutdown = False
        self._listeners: list[Callable[[Edges], None]] = []
        self._say: Callable[[str], None] = lambda text: None

    @property
    def status(self) -> int:
        with self._cv:
            return self._status

    def on_sequence(self, callback: Callable[[Edges], None]) -> Callable[[], None]:
        """Call ``callback(edges)`` after every execution; returns a function that unregisters it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def trigger(self, at_s: float | None = None) -> bool:
        """Pulse the trigger input (pin 16); False (ignored) unless a program is running.

        ``at_s``: simulated time of the pulse from the sequence start (None: now). A pulse that
        arrives while the card is not waiting for one is ignored, as by the hardware.
        """
        with self._cv:
            if self._status not in (TRANSITION_TO_RUNNING, RUNNING):
                return False
            self._triggers.append((at_s, time.monotonic()))
            self._cv.notify_all()
            return True

    def request_abort(self) -> bool:
        """``abt``: True if a program was running or armed (it will stop), False otherwise."""
        with self._cv:
            if self._status not in (RUNNING, TRANSITION_TO_RUNNING):
                return False
            self._status = ABORT_REQUESTED
            self._cv.notify_all()
            return True

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until STOPPED or ABORTED; False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: self._status in (STOPPED, ABORTED), timeout_s)

    def shutdown(self) -> None:
        """Stop and join the runner thread (no record is delivered for an interrupted run)."""
        with self._cv:
            self._shutdown = True
            self._cv.notify_all()
        if self._runner is not None:
            self._runner.join()
            self._runner = None
        with self._cv:
            self._shutdown = False                 # the card can run again after a restart

    def start(self, program: list[tuple[int, int]], *, clock_hz: float, hardware_start: bool,
              say: Callable[[str], None], debug: bool, hwstart_flag: int | None = None) -> None:
        """Run ``program`` at ``clock_hz``, from a trigger (``hardware_start``) or at once.

        ``hwstart_flag``: the value the firmware's debug output prints as ``hwstart: %d``
        (default: its HWSTART flag or 0)."""
        if self._runner is not None:
            self._runner.join()                  # finished: the status is already idle
        with self._cv:
            self._status = RUNNING
            self._triggers.clear()
        self._say = say if debug else (lambda text: None)
        flag = (_HWSTART if hardware_start else 0) if hwstart_flag is None else hwstart_flag
        self._say(f"hwstart: {flag}")
        self._runner = threading.Thread(target=self._execute, args=(program, clock_hz, hardware_start),
                                        name="prawndo-emulator-run", daemon=True)
        self._runner.start()

    def _aborting(self) -> bool:
        return self._status == ABORT_REQUESTED or self._shutdown

    def _sleep_until(self, real_t: float) -> bool:
        """Sleep until monotonic time ``real_t``; False if an abort came first."""
        with self._cv:
            while not self._aborting():
                left = real_t - time.monotonic()
                if left <= 0:
                    return True
                self._cv.wait(None if left == float("inf") else left)
            return False

    def _await_trigger(self, t_wait: float, real_wait: float, *, start: bool) -> float | None:
        """Simulated time of the trigger that ends a wait begun at ``t_wait`` (None: aborted)."""
        scale = self.time_scale
        with self._cv:
            while True:
                if self._aborting():
                    return None
                while self._triggers:
                    at_s, real_q = self._triggers.popleft()
                    if start:
                        return 0.0
                    if at_s is not None:
                        if at_s >= t_wait:
                            return float(at_s)
                    elif real_q >= real_wait or scale == 0:
                        return t_wait + (max(0.0, real_q - real_wait) / scale if scale > 0 else 0.0)
                self._cv.wait()

    def _execute(self, program: list[tuple[int, int]], clock: float, hardware_start: bool) -> None:
        scale = self.time_scale
        edges: Edges = []
        seg_start, seg_cycles, real_seg = 0.0, 0, time.monotonic()
        aborted, i, t = True, 0, 0.0
        if not hardware_start or self._await_trigger(0.0, real_seg, start=True) is not None:
            real_seg = time.monotonic()
            while True:
                t = seg_start + seg_cycles / clock
                if i >= len(program):
                    self._sleep_until(float("inf"))          # out of instructions: hold until aborted
                    break
                word, cycles = program[i]
                if not self._sleep_until(real_seg + scale * seg_cycles / clock):
                    break
                if not edges or edges[-1][1] != word:
                    edges.append((t, word))
                self.outputs = word
                if cycles:
                    seg_cycles += cycles
                    i += 1
                    continue
                if i + 1 >= len(program):
                    self._sleep_until(float("inf"))          # a wait with nothing after it stalls
                    break
                if program[i + 1][1] == 0:
                    aborted = False                          # the stop
                    break
                real_wait = time.monotonic()
                t_trig = self._await_trigger(t, real_wait, start=False)
                if t_trig is None:
                    break
                seg_start, seg_cycles = t_trig, 0
                real_seg = real_wait + scale * (t_trig - t)
                i += 1
        if aborted and scale > 0 and edges:      # simulated time of the abort
            t = seg_start + (time.monotonic() - real_seg) / scale
        self._finish(SequenceRecord(edges, hardware_start, aborted, clock, t))

    def _finish(self, record: SequenceRecord) -> None:
        with self._cv:
            if self._shutdown:
                self._status = ABORTED
                return
            self._status = ABORTING if record.aborted else TRANSITION_TO_STOP
        self._say("Tight execution loop ended")
        self._say(f"Program ended at instr {6 if record.aborted else 16}")
        self.records.append(record)
        for callback in list(self._listeners):
            try:
                callback(list(record.edges))
            except Exception:                        # a listener's bug must not kill the card
                _log.exception("PrawnDO emulator: sequence listener %r failed", callback)
        with self._cv:
            self._status = ABORTED if record.aborted else STOPPED
            self._cv.notify_all()
        self._say("Aborted execution" if record.aborted else "Execution stopped")
        self._say("Core1 loop ended")
