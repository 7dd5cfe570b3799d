"""The virtual lab's own lateness: how far behind the host (CPU, the GIL) and the simulation were.

Two measures, summed over any interval: a heartbeat thread that sleeps ``period_s`` again and again
and records how late each wake-up is (the host was busy), and the intervals during which the lab
simulated a shot (the emulated card holds its status and the camera its frames until the atoms are
rendered, which a real card and camera would not). :meth:`HostLateness.patience` is the
:data:`drivers.patience.Patience` the virtual lab's drivers get; every use is counted and logged.
"""
from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import deque

log = logging.getLogger(__name__)
KEPT_S = 120.0            # history kept (s): longer than any timeout plus margin


class HostLateness:
    """Heartbeat lateness and simulation intervals, with ``late_s(t0, t1)`` over any recent interval."""

    def __init__(self, period_s: float = 0.01, max_extension_s: float = 120.0) -> None:
        self.period_s = period_s
        self.max_extension_s = max_extension_s
        self._lock = threading.Lock()
        self._beats: deque[tuple[float, float]] = deque()     # (monotonic wake time, lateness s)
        self._busy: deque[tuple[float, float]] = deque()      # (start, end) of simulation work
        self._busy_since: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.extensions = 0            # waits that were allowed to run past their timeout
        self.extended_s = 0.0          # the largest extension granted (s)

    # --- measuring -------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="virtual-lab-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _beat(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.period_s):
            now = time.monotonic()
            late = now - last - self.period_s
            last = now
            if late > 0.002:
                with self._lock:
                    self._beats.append((now, late))
                    self._trim(now)

    def simulating(self) -> _Busy:
        """``with lateness.simulating():`` around the simulation's work for one shot."""
        return _Busy(self)

    def _trim(self, now: float) -> None:
        while self._beats and self._beats[0][0] < now - KEPT_S:
            self._beats.popleft()
        while self._busy and self._busy[0][1] < now - KEPT_S:
            self._busy.popleft()

    # --- asking ----------------------------------------------------------------------------------
    def late_s(self, t0: float, t1: float) -> float:
        """Seconds of [t0, t1] the host was late or the lab was simulating (an upper bound)."""
        with self._lock:
            beats = list(self._beats)
            busy = list(self._busy) + ([(self._busy_since, t1)] if self._busy_since is not None else [])
        times = [b[0] for b in beats]
        late = sum(b[1] for b in beats[bisect.bisect_left(times, t0):bisect.bisect_right(times, t1)])
        late += sum(max(0.0, min(e, t1) - max(s, t0)) for s, e in busy)
        return late

    def patience(self, t_start: float, t_now: float) -> float:
        """The extra time a wait begun at ``t_start`` may take (capped at ``max_extension_s``)."""
        extra = min(self.max_extension_s, self.late_s(t_start, t_now))
        if extra < 0.005:             # scheduler jitter: no extension, nothing to report
            return 0.0
        if t_now - t_start > 0:
            with self._lock:
                self.extensions += 1
                first = self.extensions == 1
                self.extended_s = max(self.extended_s, extra)
            (log.warning if first else log.info)(
                "virtual lab: the host (or the simulation) was late by %.2f s during a %.2f s wait; "
                "waiting for it (not an instrument fault)", extra, t_now - t_start)
        return extra


class _Busy:
    def __init__(self, owner: HostLateness) -> None:
        self.owner = owner

    def __enter__(self) -> None:
        with self.owner._lock:
            self.owner._busy_since = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        o = self.owner
        with o._lock:
            start, o._busy_since = o._busy_since, None
            if start is not None:
                now = time.monotonic()
                o._busy.append((start, now))
                o._trim(now)
