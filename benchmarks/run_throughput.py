"""Benchmark: sustained shot throughput of a virtual-lab run through the real drivers, sockets,
sequencer, run writer and live monitor, with the simulation's own time (atoms + rendering of the
frames, measured inside the virtual lab) excluded. The run is made twice, with uncompressed and
with Blosc-lz4 frames, to see whether compression slows acquisition.
Usage: python benchmarks/run_throughput.py [--shots 600] [--frame 256]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.labconfig import parse_lab_config  # noqa: E402
from app.session import RunSession  # noqa: E402
from sequences.plan import parse_plan  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run_once(shots: int, frame: int, compression: str) -> tuple[float, float, int]:
    """One virtual-lab run; returns (wall s, simulation s, file bytes)."""
    with tempfile.TemporaryDirectory() as tmp:
        text = (ROOT / "configs" / "virtual-lab.toml").read_text().replace('data_dir = "../runs"',
                                                                            f'data_dir = "{tmp}"')
        text = text.replace("[virtual_lab]\n", f"[virtual_lab]\nframe_shape = [{frame}, {frame}]\n"
                            f"cloud_centre_px = [{frame / 2}, {min(70, frame / 4)}]\n", 1)
        text = re.sub(r'(?m)^compression = "[^"]*"', f'compression = "{compression}"', text, count=1)
        cfg = parse_lab_config(text, "bench.toml", base_dir=ROOT / "configs")
        assert cfg.compression == compression, "the shipped config no longer says compression"
        plan = parse_plan(f"[run]\nshots = {shots}\n[imaging]\nreference_delay_s = 5e-3\n"
                          f"dark_delay_s = 5e-3\n", "bench", cfg.microwave_calibration)
        with RunSession(cfg, plan, "bench.h5") as s:
            s.start()
            t0 = time.perf_counter()
            s.wait()
            wall = time.perf_counter() - t0
            sim = s.lab.render_seconds
            size = s.path.stat().st_size
    return wall, sim, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=600)
    ap.add_argument("--frame", type=int, default=256, help="frame rows and columns (256: default lab)")
    args = ap.parse_args()
    figures: dict[str, float] = {"shots": args.shots, "frame_px": args.frame}
    rates = {}
    for compression in ("none", "blosc-lz4"):
        wall, sim, size = run_once(args.shots, args.frame, compression)
        rate = args.shots / wall
        rate_ex = args.shots / max(wall - sim, 1e-9)
        rates[compression] = rate
        print(f"[{compression}] {args.shots} shots of 5 x {args.frame} x {args.frame} px in "
              f"{wall:.1f} s: {rate:.1f} shots/s ({1e3 / rate:.1f} ms/shot); simulation {sim:.1f} s "
              f"({1e3 * sim / args.shots:.1f} ms/shot)")
        print(f"[{compression}] without the simulation: {rate_ex:.1f} shots/s ({1e3 / rate_ex:.1f} "
              f"ms/shot of instrument programming, transport, sequencing, writing and monitoring); "
              f"file {size / 2**20:.0f} MB")
        tag = "" if compression == "none" else "_blosc"
        figures.update({f"wall_s{tag}": round(wall, 2), f"simulation_s{tag}": round(sim, 2),
                        f"shots_per_s{tag}": round(rate, 2),
                        f"shots_per_s_excluding_simulation{tag}": round(rate_ex, 2),
                        f"ms_per_shot_excluding_simulation{tag}": round(1e3 / rate_ex, 2),
                        f"file_MB{tag}": round(size / 2**20, 1)})
    figures["shot_rate_blosc_vs_none"] = round(rates["blosc-lz4"] / rates["none"], 3)
    print(f"shot rate with Blosc-lz4 compression / without: {figures['shot_rate_blosc_vs_none']:.3f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
