"""The Rabi scan through the instruments: one scan plan over the x pulse length (docs/run-plans.md),
run by the sequencer (microwave phase, TTL program with the gate of each length, camera frames),
on the virtual lab or on the real instruments alike (calibration/plan_shots.py runs it)."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from calibration.plan_shots import PlanShots
from calibration.procedures import state_totals
from calibration.record import CalibrationRecord
from sequences.instruments import Instruments, SequencerConfig


def rabi_scan(instruments: Instruments, config: SequencerConfig, record: CalibrationRecord,
              pulse_lengths_s: Sequence[float], shots_per_point: int = 3,
              progress: Callable[[int, int], None] | None = None
              ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(pulse lengths s, P(|1>) per length): pulses about the x-axis pulse's phase (reads S_x).

    A length of 0 is measured as a z shot (no pulse) of the same coherent state."""
    lengths = [float(t) for t in pulse_lengths_s]
    if any(t <= 0 for t in lengths[1:]) or lengths != sorted(lengths):
        raise ValueError(f"Rabi scan lengths {lengths}: expected increasing lengths, > 0 after the first")
    src = PlanShots(instruments, config, record)
    frames: list[NDArray[np.uint16]] = []
    if lengths and lengths[0] <= 0:
        frames += list(src.run("rabi-zero", shots_per_point, direction="z")[0])
    positive = [t for t in lengths if t > 0]
    if positive:
        for group in src.run("rabi", shots_per_point, direction="x",
                             scan=("microwave.x.pulse_s", positive)):
            frames += list(group)
    if progress:
        progress(len(lengths), len(lengths))
    stack = np.stack(frames)
    n1, n2, _ = state_totals(stack, record.imaging_calibration())
    p1 = (n1 / (n1 + n2)).reshape(len(lengths), shots_per_point).mean(axis=1)
    return np.asarray(lengths, float), p1
