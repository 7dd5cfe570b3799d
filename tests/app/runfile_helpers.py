"""Small run files for the run-file tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from app.runfile import RunWriter
from sequences.shot import FRAME_NAMES, ShotClock, ShotRecord

H, W = 6, 7


def shot(index: int, *, failed: bool = False, seq: int | None = None) -> ShotRecord:
    """Shot ``index`` with frames full of ``index`` (or failed), direction x, y, z in turn."""
    seq = index % 3 if seq is None else seq
    common = dict(index=index, cycle=index // 3, sequence_index=seq, direction="xyz"[seq],
                  settings={"mw.phase_deg": 90.0 * seq, "card.version": "1.2.0", "ok": True},
                  timing=ShotClock().finish(), extra={"note": f"shot {index}"})
    if failed:
        return ShotRecord.failed(reason=f"camera: timeout on shot {index}", attempt=1, **common)
    frames = np.full((len(FRAME_NAMES), H, W), index, dtype=np.uint16)
    frames[:, 0, 0] = np.arange(len(FRAME_NAMES))
    return ShotRecord.ok(frames=frames, **common)


def write_run(path: Path, n: int = 5, *, compression: str = "blosc-lz4", failed: tuple[int, ...] = (),
              results: dict | None = None, close: str | None = "completed") -> RunWriter:
    """A run file with shots 0..n-1 (those in ``failed`` failed), optional results; closed unless close=None."""
    w = RunWriter(path, frame_names=FRAME_NAMES, frame_shape=(H, W), plan_toml="[run]\nshots = 5\n",
                  plan_json='{"n_shots": 5}', calibration={"record": "cal-1", "pulse_s": 1e-4},
                  instruments={"microwave": {"idn": "Rohde&Schwarz,SMA100B,1/2,5.0"}},
                  config={"channels": {"probe": 1}}, run_name="test", compression=compression)
    for i in range(n):
        w.write_shot(shot(i, failed=i in failed))
    if results is not None:
        w.write_results(results)
    if close:
        w.close(close)
    return w
