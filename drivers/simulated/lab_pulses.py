"""The Rabi pulses the atoms undergo, from the timing card's emitted edges and the microwave
generator's settings over time.

Times: ``t`` in s of the card's program (0 = program start = trap switch-off); ``r`` in s of
``time.monotonic()``. RF reaches the atoms while ``MicrowaveState.rf_on(gate)`` holds for the state
in force at that moment. Each stretch of RF with unchanged frequency, level and phase is one
``RabiPulse``: area ``2 pi Omega(level) dt``, phase = generator phase (rad), detuning area
``2 pi (f - resonance) dt``.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from drivers.simulated.sma100b_emulator import MicrowaveState
from drivers.simulated.spin import RabiPulse

Edges = list[tuple[float, int]]
Timeline = Sequence[tuple[float, MicrowaveState]]
"""``(t_from_s, state)`` sorted by time: ``state`` holds from ``t_from_s`` (the first one: from the start)."""


def high_intervals(edges: Edges, bit: int, end_s: float | None = None) -> list[tuple[float, float]]:
    """(start, stop) in s of the intervals during which output ``bit`` is high; a level still high
    at the last edge ends at ``end_s`` (default: that edge)."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    for t, word in edges:
        high = bool(word >> bit & 1)
        if high and start is None:
            start = t
        elif not high and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        last = edges[-1][0] if end_s is None else end_s
        if last > start:
            out.append((start, last))
    return out


def overlapping(a: tuple[float, float], intervals: list[tuple[float, float]]) -> tuple[float, float] | None:
    """The first of ``intervals`` that overlaps ``a`` (None if none does)."""
    for b in intervals:
        lo, hi = max(a[0], b[0]), min(a[1], b[1])
        if hi > lo:
            return b
    return None


def state_in_force(timeline: Timeline, t: float) -> MicrowaveState:
    """The state of ``timeline`` that holds at time ``t``."""
    state = timeline[0][1]
    for t_from, s in timeline:
        if t_from > t:
            break
        state = s
    return state


def _same_carrier(a: MicrowaveState, b: MicrowaveState) -> bool:
    return (a.frequency_hz, a.level_dbm, a.phase_deg) == (b.frequency_hz, b.level_dbm, b.phase_deg)


def pulses_from_timeline(edges: Edges, timeline: Timeline, measure_at_s: float, *, gate_bit: int,
                         rabi_hz_at: Callable[[float], float], resonance_hz: float
                         ) -> tuple[RabiPulse, ...]:
    """The Rabi pulses before ``measure_at_s`` (s): gate on output ``gate_bit``, generator states
    ``timeline``, Rabi frequency ``rabi_hz_at(level_dbm)`` (Hz) on resonance ``resonance_hz`` (Hz).

    Raises ValueError for a pulse-modulation source that is not emulated (``rf_on``).
    """
    if not timeline:
        raise ValueError("pulses_from_timeline: empty generator timeline")
    cuts = sorted({0.0, measure_at_s, *(t for t, _ in edges if 0.0 < t < measure_at_s),
                   *(t for t, _ in timeline[1:] if 0.0 < t < measure_at_s)})
    stretches: list[tuple[float, float, MicrowaveState]] = []
    for a, b in zip(cuts, cuts[1:]):
        word = 0
        for t_edge, w in edges:
            if t_edge > a:
                break
            word = w
        state = state_in_force(timeline, a)
        if not state.rf_on(bool(word >> gate_bit & 1)):
            continue
        if stretches and stretches[-1][1] == a and _same_carrier(stretches[-1][2], state):
            stretches[-1] = (stretches[-1][0], b, stretches[-1][2])
        else:
            stretches.append((a, b, state))
    pulses = []
    for a, b, s in stretches:
        dt = b - a
        pulses.append(RabiPulse(2 * math.pi * rabi_hz_at(s.level_dbm) * dt, math.radians(s.phase_deg),
                                2 * math.pi * (s.frequency_hz - resonance_hz) * dt))
    return tuple(pulses)


class MicrowaveEmulator(Protocol):
    """An emulated source the timeline can follow (SMA100B, SynthHD): its settings as a
    MicrowaveState, and a change callback ``on_change(name, value)``."""

    on_change: Callable[[str, object], None] | None

    def snapshot(self) -> MicrowaveState: ...


class MicrowaveTimeline:
    """The emulated generator's settings over monotonic time, from its change notifications.

    ``attach()`` hooks the emulator's ``on_change`` (a callback already there is still called);
    ``program_timeline()`` maps the history onto a card program's time axis.
    """

    def __init__(self, emulator: MicrowaveEmulator, keep: int = 256) -> None:
        self.emulator = emulator
        self._history: deque[tuple[float, MicrowaveState]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._previous: Callable[[str, object], None] | None = None
        self._attached = False

    def attach(self) -> None:
        """Start recording (the current state holds from now)."""
        self._previous = self.emulator.on_change
        with self._lock:
            self._history.clear()
            self._history.append((time.monotonic(), self.emulator.snapshot()))
        self.emulator.on_change = self._changed
        self._attached = True

    def detach(self) -> None:
        """Stop recording and restore the emulator's previous callback."""
        if self._attached:
            self.emulator.on_change = self._previous
            self._attached = False

    def _changed(self, name: str, value: object) -> None:
        state = self.emulator.snapshot()
        with self._lock:
            self._history.append((time.monotonic(), state))
        if self._previous is not None:
            self._previous(name, value)

    def state_at(self, r: float) -> MicrowaveState:
        """The settings held at monotonic time ``r`` (s)."""
        with self._lock:
            history = list(self._history)
        if not history:
            return self.emulator.snapshot()
        return state_in_force(history, r)

    def program_timeline(self, end_r: float, end_t: float, time_scale: float) -> list[tuple[float, MicrowaveState]]:
        """States on the time axis of a program that ended at program time ``end_t`` (s) and
        monotonic time ``end_r``: ``t = end_t - (end_r - r) / time_scale``. With ``time_scale``
        0 the program took no real time: the state at ``end_r`` held throughout."""
        with self._lock:
            history = [(r, s) for r, s in self._history if r <= end_r]
        if not history:
            return [(0.0, self.emulator.snapshot())]
        if time_scale <= 0:
            return [(0.0, history[-1][1])]
        mapped = [(end_t - (end_r - r) / time_scale, s) for r, s in history]
        # the state in force at the start, then the changes during the program
        first = max((i for i, (t, _) in enumerate(mapped) if t <= 0.0), default=0)
        return [(0.0, mapped[first][1])] + [(t, s) for t, s in mapped[first + 1:]]
