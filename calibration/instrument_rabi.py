"""The Rabi scan through the instruments: for each pulse length, a one-direction plan run by the
sequencer (microwave phase, TTL program with the gate of that length, camera frames), on the
virtual lab or on the real instruments alike."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibration.procedures import state_totals
from calibration.record import CalibrationRecord
from sequences.control import RunState
from sequences.instruments import Instruments, SequencerConfig
from sequences.plan import AxisPulse, MicrowaveCalibration, build_plan
from sequences.publish import Overflow, ShotPublisher
from sequences.sequencer import Sequencer

def _plan(shots: int) -> dict[str, Any]:
    """One point of the scan: ``shots`` x shots, coherent state, short reference delays."""
    return {"name": "rabi-scan", "run": {"shots": shots}, "state": {"kind": "coherent"},
            "directions": {"sequence": ["x"]}, "imaging": {"reference_delay_s": 5e-3, "dark_delay_s": 5e-3}}


def rabi_scan(instruments: Instruments, config: SequencerConfig, record: CalibrationRecord,
              pulse_lengths_s: Sequence[float], shots_per_point: int = 3,
              progress: Callable[[int, int], None] | None = None
              ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(pulse lengths s, P(|1>) per length): pulses about the x-axis pulse's phase (reads S_x)."""
    mw = record.microwave_calibration()
    frames = []
    for k, t in enumerate(pulse_lengths_s):
        cal = MicrowaveCalibration(mw.frequency_hz, mw.power_dbm, AxisPulse(mw.x.phase_deg, float(t)),
                                   mw.y, record=f"{record.id} (Rabi scan)")
        plan = build_plan(_plan(shots_per_point), "rabi-scan", cal)
        pub = ShotPublisher()
        sub = pub.subscribe("rabi", maxsize=shots_per_point + 4, overflow=Overflow.BLOCK)
        seq = Sequencer(plan, instruments, config, publisher=pub)
        seq.prepare()
        final = seq.run()
        if final is not RunState.COMPLETED:
            raise RuntimeError(f"Rabi scan point {t:.3g} s: run ended {final.value}: {seq.control.error}")
        frames += [s.frames for s in sub if s.is_ok and s.frames is not None]
        if progress:
            progress(k + 1, len(pulse_lengths_s))
    stack = np.stack(frames)
    n1, n2, _ = state_totals(stack, record.imaging_calibration())
    p1 = (n1 / (n1 + n2)).reshape(len(pulse_lengths_s), shots_per_point).mean(axis=1)
    return np.asarray(pulse_lengths_s, float), p1
