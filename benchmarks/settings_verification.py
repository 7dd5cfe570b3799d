"""Per-shot cost of the settings verification (sequences/verify.py) on the virtual lab.

A = the sequencer as shipped: after every shot it reads back the microwave settings, drains the
generator's error queue (``SYST:ERR?``), reads the camera settings and the card's program length
(``len``), and compares all of it with the plan. B = the same sequencer with the verification
removed (a benchmark-only subclass: only the microwave settings are read back, as before issue 18,
and nothing is compared). Blocks of shots run interleaved A B A B ... on one virtual lab (small
frames, card time_scale 0), so drifts of the machine hit both alike.

Figures: per-shot wall time and process CPU time (the emulators run in this process, so CPU includes
their work), median and p99, for A and B; and the verification step alone in A (read-back + error
queue + compare), wall and thread CPU, beside B's read-back step (microwave settings only): their
difference is the verification's own cost, the whole-shot difference being within the noise of a
shared machine. Run: python benchmarks/settings_verification.py
[--shots N] [--rounds R]. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

from drivers.prawndo import PrawnDO
from drivers.simulated.lab import VirtualLab, VirtualLabConfig
from drivers.sma100b import SMA100B
from sequences.control import RunState
from sequences.instruments import Instruments, SequencerConfig, flat_settings
from sequences.plan import AxisPulse, MicrowaveCalibration, parse_plan
from sequences.publish import Overflow, ShotPublisher
from sequences.sequencer import Progress, Sequencer

DEFAULT_PLAN = Path(__file__).resolve().parent.parent / "configs" / "plans" / "default.toml"
SMALL = {"frame_shape": [224, 64], "cloud_centre_px": [32.0, 60.0], "time_scale": 0.0}


class Timed(Sequencer):
    """A: as shipped, with the verification step (read-back + compare) timed."""

    step_wall_s: list[float]
    step_cpu_s: list[float]

    def _read_back(self) -> Any:
        self._t0 = (time.perf_counter(), time.thread_time())
        return super()._read_back()

    def _verify(self, *args: Any) -> None:
        super()._verify(*args)
        wall0, cpu0 = self._t0
        self.step_wall_s.append(time.perf_counter() - wall0)
        self.step_cpu_s.append(time.thread_time() - cpu0)


class Unverified(Sequencer):
    """B: read back the microwave settings only and compare nothing (benchmark only); the read-back
    is timed like A's step."""

    step_wall_s: list[float]
    step_cpu_s: list[float]

    def _read_back(self) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        mw = self.inst.microwave
        out = flat_settings("mw", self._step("microwave", "read back", mw.settings)), [], {}, 0
        self.step_wall_s.append(time.perf_counter() - t0)
        self.step_cpu_s.append(time.thread_time() - c0)
        return out

    def _verify(self, *args: Any) -> None:
        return None


def run_block(lab: VirtualLab, cls: type[Sequencer], n_shots: int,
              step: tuple[list[float], list[float]]) -> tuple[list[float], list[float]]:
    """Run ``n_shots`` of the default plan with sequencer class ``cls``; per shot (wall s, CPU s)."""
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
        marks.append((time.perf_counter(), time.process_time()))

    try:
        seq = cls(plan, Instruments(mw, card, lab.camera),
                  SequencerConfig(channels=cfg.channels, camera_width=w, camera_height=h), publisher=pub)
        if isinstance(seq, (Timed, Unverified)):
            seq.step_wall_s, seq.step_cpu_s = step
        seq.add_progress_listener(mark)
        seq.prepare()
        marks.append((time.perf_counter(), time.process_time()))
        final = seq.run()
    finally:
        mw.close()
        card.close()
    shots = list(sub)
    if final is not RunState.COMPLETED or not all(s.is_ok for s in shots) or len(shots) != n_shots:
        raise RuntimeError(f"benchmark block ended {final.value} with {len(shots)} shots")
    return ([b[0] - a[0] for a, b in zip(marks, marks[1:])],
            [b[1] - a[1] for a, b in zip(marks, marks[1:])])


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def ms(values: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(values) * 1e3, 3), "p99_ms": round(p99(values) * 1e3, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=30, help="shots per block (default 30)")
    parser.add_argument("--rounds", type=int, default=4, help="A B rounds (default 4)")
    args = parser.parse_args()
    cfg = VirtualLabConfig.from_mapping(SMALL, "benchmark:small")
    walls: dict[str, list[float]] = {"A": [], "B": []}
    cpus: dict[str, list[float]] = {"A": [], "B": []}
    steps: dict[str, tuple[list[float], list[float]]] = {"A": ([], []), "B": ([], [])}
    with VirtualLab(cfg, seed=1) as lab:
        run_block(lab, Timed, 6, ([], []))          # warm-up (caches, first connections)
        run_block(lab, Unverified, 6, ([], []))
        for _ in range(args.rounds):
            for name, cls in (("A", Timed), ("B", Unverified)):
                wall, cpu = run_block(lab, cls, args.shots, steps[name])
                walls[name] += wall
                cpus[name] += cpu
    result: dict[str, Any] = {"shots_per_variant": len(walls["A"]), "rounds": args.rounds,
                              "frame_shape": list(cfg.frame_shape)}
    for name, label in (("A", "with verification"), ("B", "without verification")):
        result[name] = {"wall": ms(walls[name]), "process_cpu": ms(cpus[name])}
        print(f"{name} {label}: per shot wall median {result[name]['wall']['median_ms']} ms "
              f"(p99 {result[name]['wall']['p99_ms']} ms), process CPU median "
              f"{result[name]['process_cpu']['median_ms']} ms (p99 {result[name]['process_cpu']['p99_ms']} ms)")
    result["verification_step"] = {"wall": ms(steps["A"][0]), "thread_cpu": ms(steps["A"][1])}
    result["readback_step_without"] = {"wall": ms(steps["B"][0]), "thread_cpu": ms(steps["B"][1])}
    result["step_difference_median_ms"] = {
        "wall": round(result["verification_step"]["wall"]["median_ms"]
                      - result["readback_step_without"]["wall"]["median_ms"], 3),
        "thread_cpu": round(result["verification_step"]["thread_cpu"]["median_ms"]
                            - result["readback_step_without"]["thread_cpu"]["median_ms"], 3)}
    result["difference_wall_median_ms"] = round(result["A"]["wall"]["median_ms"]
                                                - result["B"]["wall"]["median_ms"], 3)
    result["difference_cpu_median_ms"] = round(result["A"]["process_cpu"]["median_ms"]
                                               - result["B"]["process_cpu"]["median_ms"], 3)
    print(f"verification step alone (read-back + error queue + compare): wall median "
          f"{result['verification_step']['wall']['median_ms']} ms (p99 "
          f"{result['verification_step']['wall']['p99_ms']} ms), thread CPU median "
          f"{result['verification_step']['thread_cpu']['median_ms']} ms")
    print(f"B's read-back step (microwave settings only): wall median "
          f"{result['readback_step_without']['wall']['median_ms']} ms, thread CPU median "
          f"{result['readback_step_without']['thread_cpu']['median_ms']} ms; the verification adds "
          f"{result['step_difference_median_ms']['wall']} ms wall, "
          f"{result['step_difference_median_ms']['thread_cpu']} ms CPU per shot (medians)")
    print(f"A - B per shot: wall {result['difference_wall_median_ms']} ms, "
          f"process CPU {result['difference_cpu_median_ms']} ms (medians)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
