"""CPU time of the whole process and of each of its threads over a span of a benchmark.

``time.process_time()`` sums every thread of the process (seconds of CPU, not wall time: waits for
the GIL, the cores or the sockets are not counted). Per thread, Linux exposes a CPU clock for each
live thread (``time.pthread_getcpuclockid``); a sampler thread reads all of them every
``period_s`` and keeps each thread's last reading, so a thread that ends inside the span is counted
up to its last sample: a thread that lives shorter than ``period_s`` (e.g. one started per card
program) is counted in part or not at all. What no live Python thread accounts for (such threads,
BLAS worker threads) is reported as ``unattributed`` = process - sum of the threads. The sampler's
own CPU is reported under its name. Used by virtual_lab_shot.py and run_throughput.py.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

SAMPLER_NAME = "cpu-clock-sampler"


def _thread_cpu_s(ident: int) -> float | None:
    """CPU seconds of the live thread ``ident`` so far (None: it has ended or has no clock)."""
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, AttributeError, OverflowError):
        return None


@dataclass
class CpuSpan:
    """CPU of one span: wall and process seconds, seconds per thread role (name without -digits, summed)."""

    wall_s: float = 0.0
    process_s: float = 0.0
    threads_s: dict[str, float] = field(default_factory=dict)


class CpuClock:
    """Context manager measuring a span: ``with CpuClock() as clock: ...; clock.span``."""

    def __init__(self, period_s: float = 0.02) -> None:
        self.period_s = period_s
        self.span = CpuSpan()
        # keyed by the Thread object (held, so never reused; pthread idents are reused)
        self._start: dict[threading.Thread, float] = {}
        self._last: dict[threading.Thread, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = self._p0 = 0.0

    def _sample(self) -> None:
        for t in threading.enumerate():
            if t.ident is None or not t.is_alive():
                continue
            cpu = _thread_cpu_s(t.ident)
            if cpu is None:
                continue
            if t not in self._start:
                # a thread alive at the start counts from there, a new one from its beginning
                self._start[t] = cpu if self._thread is None else 0.0
            self._last[t] = cpu

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def __enter__(self) -> CpuClock:
        self._sample()
        self._t0, self._p0 = time.perf_counter(), time.process_time()
        self._thread = threading.Thread(target=self._loop, name=SAMPLER_NAME, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sample()
        self.span.wall_s = time.perf_counter() - self._t0
        self.span.process_s = time.process_time() - self._p0
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        per_name: dict[str, float] = {}
        for t, cpu in self._last.items():
            name = re.sub(r"-\d+", "", t.name)          # ports and counters: one entry per role
            per_name[name] = per_name.get(name, 0.0) + cpu - self._start[t]
        per_name["unattributed"] = self.span.process_s - sum(per_name.values())
        self.span.threads_s = dict(sorted(per_name.items(), key=lambda kv: -kv[1]))
