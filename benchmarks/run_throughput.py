"""Benchmark: sustained shot throughput of a virtual-lab run through the real drivers, sockets,
sequencer, run writer and live monitor, with the simulation's own time (atoms + rendering of the
frames, measured inside the virtual lab) excluded. Usage: python benchmarks/run_throughput.py
[--shots 600] [--frame 256]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.labconfig import parse_lab_config  # noqa: E402
from app.session import RunSession  # noqa: E402
from sequences.plan import parse_plan  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=600)
    ap.add_argument("--frame", type=int, default=256, help="frame rows and columns (256: default lab)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        text = (ROOT / "configs" / "virtual-lab.toml").read_text().replace('data_dir = "../runs"',
                                                                            f'data_dir = "{tmp}"')
        text = text.replace("[virtual_lab]\n", f"[virtual_lab]\nframe_shape = [{args.frame}, {args.frame}]\n"
                            f"cloud_centre_px = [{args.frame / 2}, {min(70, args.frame / 4)}]\n", 1)
        cfg = parse_lab_config(text, "bench.toml", base_dir=ROOT / "configs")
        plan = parse_plan(f"[run]\nshots = {args.shots}\n[imaging]\nreference_delay_s = 5e-3\n"
                          f"dark_delay_s = 5e-3\n", "bench", cfg.microwave_calibration)
        with RunSession(cfg, plan, "bench.h5") as s:
            s.start()
            t0 = time.perf_counter()
            s.wait()
            wall = time.perf_counter() - t0
            sim = s.lab.render_seconds
            size = s.path.stat().st_size
    rate = args.shots / wall
    rate_ex = args.shots / max(wall - sim, 1e-9)
    print(f"{args.shots} shots of 5 x {args.frame} x {args.frame} px in {wall:.1f} s: {rate:.1f} shots/s "
          f"({1e3 / rate:.1f} ms/shot); simulation {sim:.1f} s ({1e3 * sim / args.shots:.1f} ms/shot)")
    print(f"without the simulation: {rate_ex:.1f} shots/s ({1e3 / rate_ex:.1f} ms/shot of instrument "
          f"programming, transport, sequencing, writing and monitoring); file {size / 2**20:.0f} MB")
    print(json.dumps({"shots": args.shots, "frame_px": args.frame, "wall_s": round(wall, 2),
                      "simulation_s": round(sim, 2), "shots_per_s": round(rate, 2),
                      "shots_per_s_excluding_simulation": round(rate_ex, 2),
                      "ms_per_shot_excluding_simulation": round(1e3 / rate_ex, 2)}))


if __name__ == "__main__":
    main()
