"""Benchmark: shot throughput and CPU per shot of a virtual-lab run through the real drivers,
sockets, sequencer, run writer and live monitor (RunSession, configs/virtual-lab.toml), with
uncompressed and with Blosc-lz4 frames, the two configurations interleaved A B A B.

Per run: wall time, process CPU per shot (every thread: time.process_time), the simulation's CPU
(the virtual lab's simulation thread, VirtualLab.simulation_cpu_s) and the application's own CPU
(process - simulation: instruments, transport, sequencing, writing, monitoring), and CPU per thread
role (cpu_clock.py). Nothing is subtracted from wall time. Frame-size scaling (256^2..2048^2) is
measured by virtual_lab_shot.py: the virtual camera's 2 us rows cannot read 1024 rows within the
1.5 ms between the two atom exposures of a run plan, and the lab configuration sets no row time.
Usage: python benchmarks/run_throughput.py [--shots 300] [--rounds 2] [--frame 256]
Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from app.labconfig import parse_lab_config  # noqa: E402
from app.session import RunSession  # noqa: E402
from cpu_clock import CpuClock  # noqa: E402
from sequences.plan import parse_plan  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMPRESSIONS = ("none", "blosc-lz4")


def run_once(shots: int, frame: int, compression: str) -> dict[str, Any]:
    """One virtual-lab run; wall and CPU figures per shot, file size."""
    with tempfile.TemporaryDirectory() as tmp:
        text = (ROOT / "configs" / "virtual-lab.toml").read_text().replace('data_dir = "../../runs"',
                                                                            f'data_dir = "{tmp}"')
        text = text.replace("[virtual_lab]\n", f"[virtual_lab]\nframe_shape = [{frame}, {frame}]\n"
                            f"cloud_centre_px = [{frame / 2}, {min(70, frame / 4)}]\n", 1)
        text = re.sub(r'(?m)^compression = "[^"]*"', f'compression = "{compression}"', text, count=1)
        cfg = parse_lab_config(text, "bench.toml", base_dir=ROOT / "configs")
        assert cfg.compression == compression, "the shipped config no longer says compression"
        plan = parse_plan(f"[run]\nshots = {shots}\n[imaging]\nreference_delay_s = 5e-3\n"
                          f"dark_delay_s = 5e-3\n", "bench", cfg.microwave_calibration)
        with RunSession(cfg, plan, "bench.h5") as s:
            with CpuClock() as clock:
                s.start()
                s.wait()
            sim_cpu = s.lab.simulation_cpu_s
            size = s.path.stat().st_size
    span = clock.span
    return {"wall_s": span.wall_s, "process_cpu_ms_per_shot": 1e3 * span.process_s / shots,
            "simulation_cpu_ms_per_shot": 1e3 * sim_cpu / shots,
            "application_cpu_ms_per_shot": 1e3 * (span.process_s - sim_cpu) / shots,
            "shots_per_s": shots / span.wall_s, "file_MB": size / 2**20,
            "threads_cpu_ms_per_shot": {k: 1e3 * v / shots for k, v in span.threads_s.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2, help="A B rounds (default 2)")
    ap.add_argument("--frame", type=int, default=256, help="frame rows and columns (<= 512; 256: default lab)")
    args = ap.parse_args()
    if not 32 <= args.frame <= 512 or args.rounds < 1:
        ap.error("--frame must be 32..512 and --rounds >= 1")
    run_once(9, args.frame, "none")                    # warm-up: imports, twist, first eigen-systems
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in COMPRESSIONS}
    for r in range(args.rounds):
        for compression in COMPRESSIONS:               # A B A B ...
            x = run_once(args.shots, args.frame, compression)
            runs[compression].append(x)
            print(f"round {r + 1} [{compression:9s}] {args.shots} shots of 5 x {args.frame} x {args.frame} px: "
                  f"{x['shots_per_s']:.1f} shots/s, CPU/shot: process {x['process_cpu_ms_per_shot']:.1f} ms, "
                  f"simulation {x['simulation_cpu_ms_per_shot']:.1f} ms, application "
                  f"{x['application_cpu_ms_per_shot']:.1f} ms; file {x['file_MB']:.0f} MB", flush=True)
    figures: dict[str, Any] = {"shots": args.shots, "frame_px": args.frame, "rounds": args.rounds}
    for compression, xs in runs.items():
        tag = "" if compression == "none" else "_blosc"
        for key in ("shots_per_s", "process_cpu_ms_per_shot", "simulation_cpu_ms_per_shot",
                    "application_cpu_ms_per_shot", "file_MB"):
            figures[f"{key}{tag}"] = round(statistics.fmean(x[key] for x in xs), 2)
        threads: dict[str, float] = {}
        for x in xs:
            for name, v in x["threads_cpu_ms_per_shot"].items():
                threads[name] = threads.get(name, 0.0) + v / len(xs)
        figures[f"threads_cpu_ms_per_shot{tag}"] = {k: round(v, 2) for k, v in
                                                    sorted(threads.items(), key=lambda kv: -kv[1]) if v >= 0.05}
    figures["shot_rate_blosc_vs_none"] = round(figures["shots_per_s_blosc"] / figures["shots_per_s"], 3)
    figures["application_cpu_blosc_vs_none"] = round(figures["application_cpu_ms_per_shot_blosc"]
                                                      / figures["application_cpu_ms_per_shot"], 3)
    print(f"application's own CPU per shot: {figures['application_cpu_ms_per_shot']} ms (none), "
          f"{figures['application_cpu_ms_per_shot_blosc']} ms (blosc-lz4); simulation "
          f"{figures['simulation_cpu_ms_per_shot']} ms; shot rate blosc/none {figures['shot_rate_blosc_vs_none']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
