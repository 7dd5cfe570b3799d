"""How long a driver keeps waiting past its timeout because the host, not the instrument, was late.

A driver bounds every reply by its ``timeout_s``. On a real lab that is the whole story. On the
virtual lab the "instrument" is a simulation in the same process: when the machine is busy, or
the simulated atoms take long to render, the emulator answers late through no fault of the
instrument it stands for. The virtual lab measures that lateness and hands the drivers a
:data:`Patience`: ``patience(t_start, t_now)`` is the extra time (s) the wait begun at
``t_start`` (``time.monotonic()``) may take. Drivers call it only when their deadline has passed.
"""
from __future__ import annotations

from collections.abc import Callable

Patience = Callable[[float, float], float]


def no_patience(t_start: float, t_now: float) -> float:
    """Real instruments: the configured timeout is the timeout."""
    return 0.0


def deadline_passed(t_start: float, timeout_s: float, now: float, patience: Patience) -> bool:
    """True once ``now`` is past ``t_start + timeout_s`` plus the host's lateness meanwhile."""
    if now < t_start + timeout_s:
        return False
    return now >= t_start + timeout_s + max(0.0, patience(t_start, now))
