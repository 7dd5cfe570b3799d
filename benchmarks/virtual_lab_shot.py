"""Per-shot wall time of the virtual lab through the real drivers, sockets and the sequencer, split into
the simulation (the simulated atoms: spin state, pulses, positions, five rendered frames) and the rest
(instrument/transport overhead: SMA100B and PrawnDO drivers over TCP on 127.0.0.1, the emulators, the
virtual camera's digitisation and queue, the sequencer and shot assembly).

The card's program runs instantly (time_scale 0) so that its ~0.1 s of programmed time (default
plan: 50 ms reference and dark delays) does not count. The lab renders inside the card's run, so a
shot's wall time is simulation + overhead. Per shot, both are sampled when the sequencer publishes it.
Run: python benchmarks/virtual_lab_shot.py [--shots N]. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

from drivers.prawndo import PrawnDO
from drivers.simulated.lab import VirtualLab, VirtualLabConfig
from drivers.sma100b import SMA100B
from sequences.control import RunState
from sequences.instruments import Instruments, SequencerConfig
from sequences.plan import AxisPulse, MicrowaveCalibration, parse_plan
from sequences.publish import Overflow, ShotPublisher
from sequences.sequencer import Progress, Sequencer

DEFAULT_PLAN = Path(__file__).resolve().parent.parent / "configs" / "plans" / "default.toml"
SIZES = {"small": {"frame_shape": [224, 64], "cloud_centre_px": [32.0, 60.0]},
         "default": {}}       # the simulation's default sensor (256 x 256 px)


def run_shots(lab: VirtualLab, n_shots: int) -> tuple[list[float], list[float]]:
    """Run ``n_shots`` of the default plan; per published shot (wall s, simulation s)."""
    cfg = lab.config
    text = re.sub(r"(?m)^cycles = .*$", f"shots = {n_shots}", DEFAULT_PLAN.read_text())
    t = cfg.pi2_pulse_s()
    cal = MicrowaveCalibration(cfg.resonance_hz, cfg.reference_level_dbm, AxisPulse(90.0, t),
                               AxisPulse(0.0, t), record="benchmark")
    plan = parse_plan(text, str(DEFAULT_PLAN), cal)
    h, w = cfg.frame_shape
    mw, card = SMA100B(lab.microwave_address, timeout_s=2.0), PrawnDO(lab.card_address, timeout_s=2.0)
    pub = ShotPublisher()
    sub = pub.subscribe("benchmark", maxsize=n_shots + 10, overflow=Overflow.BLOCK)
    marks: list[tuple[float, float]] = []

    def mark(progress: Progress) -> None:
        marks.append((time.perf_counter(), lab.simulation_time_s))

    try:
        seq = Sequencer(plan, Instruments(mw, card, lab.camera),
                        SequencerConfig(channels=cfg.channels, camera_width=w, camera_height=h),
                        publisher=pub)
        seq.add_progress_listener(mark)
        seq.prepare()
        marks.append((time.perf_counter(), lab.simulation_time_s))
        final = seq.run()
    finally:
        mw.close()
        card.close()
    shots = list(sub)
    if final is not RunState.COMPLETED or not all(s.is_ok for s in shots) or len(shots) != n_shots:
        raise RuntimeError(f"benchmark run ended {final.value} with {len(shots)} shots")
    wall = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    sim = [b[1] - a[1] for a, b in zip(marks, marks[1:])]
    return wall, sim


def measure(size: str, n_shots: int) -> dict[str, float]:
    cfg = VirtualLabConfig.from_mapping({**SIZES[size], "time_scale": 0.0}, f"benchmark:{size}")
    with VirtualLab(cfg, seed=1) as lab:
        run_shots(lab, 6)                   # warm-up: twist solved, S_x eigensystems cached
        wall, sim = run_shots(lab, n_shots)
    over = [a - b for a, b in zip(wall, sim)]
    h, w = cfg.frame_shape
    return {"frame_shape": [h, w], "shots": n_shots,
            "shot_ms_median": round(statistics.median(wall) * 1e3, 2),
            "shot_ms_mean": round(statistics.fmean(wall) * 1e3, 2),
            "simulation_ms_median": round(statistics.median(sim) * 1e3, 2),
            "simulation_ms_mean": round(statistics.fmean(sim) * 1e3, 2),
            "overhead_ms_median": round(statistics.median(over) * 1e3, 2),
            "overhead_ms_mean": round(statistics.fmean(over) * 1e3, 2),
            "simulation_fraction": round(sum(sim) / sum(wall), 3),
            "shots_per_s": round(len(wall) / sum(wall), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=90, help="shots per frame size (default 90)")
    args = parser.parse_args()
    result: dict[str, object] = {}
    for size in SIZES:
        r = measure(size, args.shots)
        result[size] = r
        h, w = r["frame_shape"]  # type: ignore[misc]
        print(f"{h} x {w} px, {r['shots']} shots of the default plan (x/y/z, 5 frames each):")
        print(f"  per shot: median {r['shot_ms_median']} ms (mean {r['shot_ms_mean']} ms), "
              f"{r['shots_per_s']} shots/s")
        print(f"  simulation (atoms + rendering): median {r['simulation_ms_median']} ms "
              f"(mean {r['simulation_ms_mean']} ms, {r['simulation_fraction']:.0%} of the time)")
        print(f"  instruments/transport/sequencer: median {r['overhead_ms_median']} ms "
              f"(mean {r['overhead_ms_mean']} ms)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
