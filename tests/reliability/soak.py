"""A virtual-lab run sampled along the way: resident memory, open files, threads, time per shot."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.labconfig import load_lab_config
from app.session import RunSession
from drivers.simulated import spin
from sequences.control import RunState
from sequences.plan import parse_plan
from tests.reliability.harness import small_config

PLAN = """[run]
shots = {shots}
[imaging]
reference_delay_s = 5e-3
dark_delay_s = 5e-3
"""


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass
class Samples:
    shots: list[int] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    # the simulator's S_x eigen-system cache (bounded, EIGEN_CACHE_BYTES): it fills while new atom
    # numbers come up, which is the virtual lab's memory, not the application's
    sim_cache_mb: list[float] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    ms_per_shot: list[float] = field(default_factory=list)

    @property
    def app_mb(self) -> list[float]:
        """Resident memory without the simulator's eigen-system cache (MB)."""
        return [r - c for r, c in zip(self.rss_mb, self.sim_cache_mb)]

    def slope(self, name: str, per: int = 1000) -> float:
        """Least-squares slope of a sampled quantity per ``per`` shots (after the first sample)."""
        x, y = np.array(self.shots[1:], float), np.array(getattr(self, name)[1:], float)
        return float(np.polyfit(x, y, 1)[0] * per) if len(x) >= 2 else float("nan")


def soak(directory: Path, shots: int, every: int) -> tuple[Samples, RunState, Path]:
    """Run ``shots`` shots on the small virtual lab, sampling every ``every`` shots."""
    cfg = load_lab_config(small_config(directory))
    plan = parse_plan(PLAN.format(shots=shots), "soak", cfg.microwave_calibration)
    samples = Samples()
    last = [time.monotonic(), 0]

    def on_progress(p) -> None:
        if p.ok_shots and p.ok_shots % every == 0 and p.ok_shots != last[1]:
            now = time.monotonic()
            samples.shots.append(p.ok_shots)
            samples.rss_mb.append(rss_mb())
            samples.sim_cache_mb.append(spin._EIGEN.nbytes / 2**20)
            samples.fds.append(open_fds())
            samples.threads.append(threading.active_count())
            samples.ms_per_shot.append((now - last[0]) / (p.ok_shots - last[1]) * 1e3)
            last[0], last[1] = now, p.ok_shots

    with RunSession(cfg, plan, "soak.h5") as s:
        s.add_progress_listener(on_progress)
        s.start()
        final = s.wait()
    return samples, final, s.path
