"""Virtual-lab run files written directly from simulated shots (fast: no instruments), for tests
and benchmarks of the offline analysis."""
from __future__ import annotations

import json
from pathlib import Path

from app.runfile import RunWriter
from drivers.simulated.atoms import (FRAME_NAMES, SimulatedAtoms, SimulationConfig, SpinConfig,
                                     paper_measurement_pulses)
from drivers.simulated.cloud import CloudConfig
from drivers.simulated.imaging import ImagingConfig
from sequences.shot import ShotClock, ShotRecord
from tests.analysis.virtual_lab_data import lab_calibration


def sim_config(state: str) -> SimulationConfig:
    return SimulationConfig(spin=SpinConfig(state=state),  # type: ignore[arg-type]
                            cloud=CloudConfig(centre_px=(40.0, 60.0)),
                            imaging=ImagingConfig(frame_shape=(224, 128), probe_centre_px=(64.0, 112.0)))


def write_virtual_run(path: Path, state: str, shots: int, seed: int, *, failed_every: int = 0) -> Path:
    """A closed run file of ``shots`` interleaved x, y, z shots of the virtual lab's atoms."""
    cfg = sim_config(state)
    sim = SimulatedAtoms(cfg, seed=seed)
    cal = lab_calibration(cfg)
    plan = {"name": "test", "state": {"kind": state}}
    with RunWriter(path, frame_names=FRAME_NAMES, frame_shape=cfg.imaging.frame_shape,
                   plan_json=json.dumps(plan), calibration={"id": "truth", "imaging": cal.to_dict()},
                   run_name=path.stem) as w:
        index = 0
        for k in range(shots):
            d = "xyz"[k % 3]
            if failed_every and k % failed_every == failed_every - 1:
                clock = ShotClock()
                w.write_shot(ShotRecord.failed(index=index, cycle=k // 3, sequence_index=k % 3,
                                               direction=d, reason="camera: test fault", settings={},
                                               timing=clock.finish()))
                index += 1
            clock = ShotClock()
            frames = sim.shot(k, pulses=paper_measurement_pulses(d)).frames
            w.write_shot(ShotRecord.ok(index=index, cycle=k // 3, sequence_index=k % 3, direction=d,
                                       frames=frames, settings={}, timing=clock.finish()))
            index += 1
    return path
