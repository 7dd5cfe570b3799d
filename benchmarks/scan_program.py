"""Benchmark: a scan plan's cost per point with 1, 10 and 100 user steps.

Per configuration (user steps on a user channel, one scan axis over a step's duration, 20 points):
- parse: validating the plan, every point's plan included (``sequences.plan.parse_plan``), per point;
- compile: every program of a point (x, y, z: imaging + steps, ``sequences.steps.check_programs``);
- upload: one shot's program to the emulated PrawnDO over 127.0.0.1 (``PrawnDO.program`` + ``verify``),
  the driver's per-shot work; a real card adds USB latency per exchange.
Configurations are interleaved round by round (the machine is shared); the median of the rounds
is reported, wall and CPU time (this process: driver and emulator share it) side by side.
Run: python benchmarks/scan_program.py [--rounds 5] [--points 20]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.prawndo import PrawnDO  # noqa: E402
from drivers.simulated.prawndo_emulator import PrawnDOEmulator  # noqa: E402
from sequences.plan import AxisPulse, MicrowaveCalibration, parse_plan  # noqa: E402
from sequences.steps import check_programs  # noqa: E402

CAL = MicrowaveCalibration(6.834682611e9, -10.0, AxisPulse(90.0, 125e-6), AxisPulse(0.0, 125e-6))
CHANNELS = {"mw_gate": 0, "probe": 1, "camera": 2, "tof_marker": 5, "coil": 6}
STEPS = (1, 10, 100)


def plan_text(steps: int, points: int) -> str:
    """A plan with ``steps`` 1 us pulses on ``coil`` after the end, the first one's duration scanned."""
    body = ["[run]\ncycles = 1\n"]
    for k in range(steps):
        body.append(f'[[steps]]\nname = "s{k}"\nchannel = "coil"\nat = "end"\n'
                    f'offset_s = {k * 10e-6:.9g}\nduration_s = 1e-6\n')
    body.append('[scan]\n[[scan.axes]]\nfield = "steps.s0.duration_s"\n'
                f'linspace = {{ start = 1e-6, stop = 5e-6, num = {points} }}\n')
    return "".join(body)


def measure(card: PrawnDO, steps: int, points: int) -> dict[str, float]:
    text = plan_text(steps, points)
    w0, c0 = time.perf_counter(), time.process_time()
    plan = parse_plan(text, "bench.toml", CAL)
    w1, c1 = time.perf_counter(), time.process_time()
    programs = check_programs(plan, CHANNELS, clock_hz=card.clock_hz,
                              max_instructions=card.max_instructions)
    w2, c2 = time.perf_counter(), time.process_time()
    for p in range(points):
        ins = programs[(p, "x")].instructions
        card.program(ins)
        card.verify(ins)
    w3, c3 = time.perf_counter(), time.process_time()
    return {"parse_ms": (w1 - w0) * 1e3 / points, "parse_cpu_ms": (c1 - c0) * 1e3 / points,
            "compile_ms": (w2 - w1) * 1e3 / points, "compile_cpu_ms": (c2 - c1) * 1e3 / points,
            "upload_ms": (w3 - w2) * 1e3 / points, "upload_cpu_ms": (c3 - c2) * 1e3 / points,
            "instructions": float(len(programs[(0, "x")].instructions))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--points", type=int, default=20)
    args = ap.parse_args()
    samples: dict[int, list[dict[str, float]]] = {s: [] for s in STEPS}
    with PrawnDOEmulator(time_scale=0.0) as emu, PrawnDO(emu.url, timeout_s=5.0) as card:
        measure(card, 1, 2)                                   # warm-up (imports, connection)
        for r in range(args.rounds):
            for s in (STEPS if r % 2 == 0 else STEPS[::-1]):   # interleaved, alternating order
                samples[s].append(measure(card, s, args.points))
    figures: dict[str, float] = {"points": args.points, "rounds": args.rounds}
    print(f"per scan point, median of {args.rounds} interleaved rounds of {args.points} points "
          f"(x/y/z programs compiled, one shot's program uploaded + verified):")
    for s in STEPS:
        med = {k: statistics.median(m[k] for m in samples[s]) for k in samples[s][0]}
        print(f"{s:4d} user steps ({med['instructions']:4.0f} instructions): parse {med['parse_ms']:6.2f} ms "
              f"(cpu {med['parse_cpu_ms']:6.2f}), compile {med['compile_ms']:6.2f} ms "
              f"(cpu {med['compile_cpu_ms']:6.2f}), upload+verify {med['upload_ms']:6.2f} ms "
              f"(cpu {med['upload_cpu_ms']:6.2f})")
        for k, v in med.items():
            figures[f"steps_{s}_{k}"] = round(v, 3)
        figures[f"steps_{s}_total_ms_per_point"] = round(
            med["parse_ms"] + med["compile_ms"] + med["upload_ms"], 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
