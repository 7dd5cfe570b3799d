"""Soak, CI size: 400 shots on the virtual lab; open files and threads do not grow, memory stays
flat after the warm-up (apart from the simulator's bounded eigen-system cache). The 10 000-shot version is benchmarks/soak.py."""
from __future__ import annotations

import threading
from pathlib import Path

from sequences.control import RunState
from tests.reliability.soak import open_fds, soak


def test_no_growth_over_400_shots(tmp_path: Path) -> None:
    fds0, threads0 = open_fds(), threading.active_count()
    samples, final, path = soak(tmp_path, 400, 100)
    assert final is RunState.COMPLETED
    # after the first sample (which may still hold a transient descriptor of the start-up)
    assert max(samples.fds[1:]) - min(samples.fds[1:]) <= 1 and samples.fds[-1] <= samples.fds[0] + 1
    assert max(samples.threads) == min(samples.threads)
    assert samples.app_mb[-1] - samples.app_mb[1] < 40          # MB, after the masks are centred
    assert open_fds() <= fds0 + 1 and threading.active_count() == threads0
