"""A run-file writer process for the crash tests: writes shots as fast as it can and reports each
one on stdout ("done <index>") only after ``write_shot`` has returned (shot committed).

Usage: python runfile_crash_writer.py PATH N_SHOTS H W COMPRESSION
Shot i (every 5th fails) has frames ``expected_frames(i, H, W)``.
"""
from __future__ import annotations

import sys

import numpy as np

from app.runfile import RunWriter
from sequences.shot import FRAME_NAMES, ShotClock, ShotRecord


def expected_frames(index: int, h: int, w: int) -> np.ndarray:
    """The deterministic frames of shot ``index``."""
    n = len(FRAME_NAMES) * h * w
    return ((np.arange(n, dtype=np.int64) * 3 + index * 7919) % 65536).astype(np.uint16).reshape(
        len(FRAME_NAMES), h, w)


def make_shot(index: int, h: int, w: int) -> ShotRecord:
    """Shot ``index``: direction cycles x, y, z; every 5th shot failed."""
    common = dict(index=index, cycle=index // 3, sequence_index=index % 3,
                  direction="xyz"[index % 3], settings={"mw.phase_deg": float(index)},
                  timing=ShotClock().finish())
    if index % 5 == 4:
        return ShotRecord.failed(reason=f"injected failure {index}", **common)
    return ShotRecord.ok(frames=expected_frames(index, h, w), **common)


def main(argv: list[str]) -> int:
    path, n_shots, h, w, compression = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), argv[4]
    writer = RunWriter(path, frame_names=FRAME_NAMES, frame_shape=(h, w), plan_toml="[run]\n",
                       calibration={"record": "crash-test"}, compression=compression)
    print("ready", flush=True)
    for i in range(n_shots):
        writer.write_shot(make_shot(i, h, w))
        print(f"done {i}", flush=True)
    writer.write_results({"regions": {"A": "x < 10"}, "n": n_shots})
    print("results", flush=True)
    writer.close()
    print("closed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
