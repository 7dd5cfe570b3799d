"""Benchmark: run-file write throughput vs writing the same bytes raw to the same disk.

Per shot the run writer appends 5 frames (uint16, Poisson camera noise around 1000 counts), the
shot's JSON text and table row, and commits (flush, counter, flush). The raw baseline writes the
same frame and text bytes to a plain file and flushes it to the OS once per shot. Trials are
interleaved and their order reversed every other round (A B C, C B A, A B C, ...), so that disk and
page-cache drift and the second-runs-faster effect hit all alike; ratios are medians of the
per-round ratios. Kinds: raw, HDF5 uncompressed, Blosc-lz4+bitshuffle compressed by the writer
(python-blosc, direct chunk writes: the run's default) and the same through HDF5's filter
pipeline (the writer without python-blosc). CPU time per shot (process time, all threads) is
reported for each. Ratios > 1 for compressed files mean fewer bytes reached the disk.

A second part asks whether compression slows acquisition: a producer thread makes shots with a
fixed CPU cost (drawing the Poisson frames, as a simulated camera does) and hands them to the
writer through a bounded queue (blocking, as in a run); the shot rate is compared with the
writer off, uncompressed and compressed.

Usage: python benchmarks/runfile_write.py [--dir DIR] [--shots N] [--size PX] [--repeats R]
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.runfile import RunWriter  # noqa: E402
from sequences.shot import FRAME_NAMES, ShotClock, ShotRecord  # noqa: E402


def make_frames(rng: np.random.Generator, size: int) -> np.ndarray:
    """(5, size, size) uint16 camera frames: probe ~1000 counts with a cloud shadow, Poisson noise."""
    y, x = np.mgrid[0:size, 0:size]
    r2 = ((x - size / 2) ** 2 + (y - size / 2) ** 2) / (size / 10) ** 2
    probe = 1000.0 * np.ones((size, size))
    light = [probe * (1 - 0.6 * np.exp(-r2 / 2)), probe * (1 - 0.5 * np.exp(-r2 / 2)), probe,
             probe, np.full((size, size), 100.0)]
    return np.stack([rng.poisson(m) for m in light]).astype(np.uint16)


def make_shot(i: int, frames: np.ndarray) -> ShotRecord:
    return ShotRecord.ok(index=i, cycle=i // 3, sequence_index=i % 3, direction="xyz"[i % 3],
                         frames=frames, timing=ShotClock().finish(),
                         settings={"mw.frequency_hz": 6.834682611e9, "mw.power_dbm": -10.0,
                                   "mw.phase_deg": 90.0, "mw.output": True,
                                   "card.pulse_s": 1.2e-4, "camera.exposure_s": 1e-4})


def text_of(shot: ShotRecord) -> bytes:
    return json.dumps({"reason": "", "settings": dict(shot.settings), "extra": {}}).encode()


KINDS = ("raw", "none", "blosc-lz4", "blosc-lz4-filter")


def write_raw(path: Path, shots: list[ShotRecord], fsync: bool) -> float:
    t0 = time.perf_counter()
    with open(path, "wb") as fh:
        for s in shots:
            fh.write(s.frames.tobytes())
            fh.write(text_of(s))
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
    return time.perf_counter() - t0


def write_h5(path: Path, shots: list[ShotRecord], kind: str, fsync: bool) -> float:
    h, w = shots[0].frames.shape[1:]
    writer = RunWriter(path, frame_names=FRAME_NAMES, frame_shape=(h, w),
                       compression=kind.removesuffix("-filter"), fsync=fsync, plan_toml="[run]\n")
    if kind.endswith("-filter"):
        writer._compress = None          # through HDF5's filter pipeline (no python-blosc)
    t0 = time.perf_counter()
    for s in shots:
        writer.write_shot(s)
    writer.close()
    return time.perf_counter() - t0


def throughput_trials(tmp: Path, shots: list[ShotRecord], repeats: int, fsync: bool) -> dict:
    nbytes = sum(s.frames.nbytes + len(text_of(s)) for s in shots)
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    cpu: dict[str, list[float]] = {k: [] for k in KINDS}
    sizes: dict[str, int] = {}
    for r in range(repeats):
        for kind in (KINDS if r % 2 == 0 else KINDS[::-1]):       # A B C D, D C B A, ...
            path = tmp / f"{kind}-{r}.{'bin' if kind == 'raw' else 'h5'}"
            c0 = time.process_time()
            dt = write_raw(path, shots, fsync) if kind == "raw" else write_h5(path, shots, kind,
                                                                            fsync)
            cpu[kind].append((time.process_time() - c0) / len(shots))
            times[kind].append(dt)
            sizes[kind] = path.stat().st_size
            path.unlink()
    out = {"MBps": {k: nbytes / 1e6 / statistics.median(v) for k, v in times.items()},
           "ratio": {k: statistics.median(t_raw / t for t_raw, t in zip(times["raw"], v))
                     for k, v in times.items() if k != "raw"},
           "ratios": {k: [round(t_raw / t, 3) for t_raw, t in zip(times["raw"], v)]
                      for k, v in times.items() if k != "raw"},
           "cpu_ms": {k: 1e3 * statistics.median(v) for k, v in cpu.items()},
           "size_ratio": {k: sizes["raw"] / sizes[k] for k in sizes}}
    return out


def acquisition_rate(tmp: Path, rng: np.random.Generator, size: int, n: int,
                     compression: str | None) -> float:
    """Shots per second of a producer drawing frames, with a writer thread behind a bounded queue."""
    q: queue.Queue[ShotRecord | None] = queue.Queue(maxsize=8)
    writer = None if compression is None else RunWriter(
        tmp / f"acq-{compression}.h5", frame_names=FRAME_NAMES, frame_shape=(size, size),
        compression=compression)

    def consume() -> None:
        while (s := q.get()) is not None:
            if writer is not None:
                writer.write_shot(s)

    thread = threading.Thread(target=consume, name="bench-writer")
    thread.start()
    t0 = time.perf_counter()
    for i in range(n):
        q.put(make_shot(i, make_frames(rng, size)))
    q.put(None)
    thread.join()
    dt = time.perf_counter() - t0
    if writer is not None:
        writer.close()
        writer.path.unlink()
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None, help="directory on the disk to test (default: temp)")
    ap.add_argument("--shots", type=int, default=120)
    ap.add_argument("--size", type=int, default=512, help="frame height = width (px)")
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    distinct = [make_frames(rng, args.size) for _ in range(6)]
    shots = [make_shot(i, distinct[i % len(distinct)]) for i in range(args.shots)]
    mb_shot = shots[0].frames.nbytes / 1e6
    figures: dict[str, float] = {"shots": args.shots, "frame_px": args.size,
                                 "MB_per_shot": round(mb_shot, 3)}
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        tmp = Path(d)
        print(f"{args.shots} shots of 5 x {args.size} x {args.size} uint16 ({mb_shot:.2f} MB), "
              f"{args.repeats} alternating trials, in {tmp}")
        for fsync, n in ((False, args.shots), (True, max(args.shots // 4, 10))):
            res = throughput_trials(tmp, shots[:n], args.repeats, fsync)
            tag = "fsync" if fsync else "flush"
            print(f"[{tag} per shot, {n} shots] raw {res['MBps']['raw']:7.0f} MB/s "
                  f"({res['cpu_ms']['raw']:.2f} ms CPU/shot)")
            for kind in KINDS[1:]:
                print(f"    HDF5 {kind:17s} {res['MBps'][kind]:7.0f} MB/s = "
                      f"{res['ratio'][kind]:.2f}x raw (rounds {res['ratios'][kind]}), "
                      f"{res['cpu_ms'][kind]:.2f} ms CPU/shot, file "
                      f"{res['size_ratio'][kind]:.2f}x smaller")
            figures[f"raw_MBps_{tag}"] = round(res["MBps"]["raw"], 1)
            figures[f"raw_cpu_ms_per_shot_{tag}"] = round(res["cpu_ms"]["raw"], 3)
            for kind, label in (("none", "h5"), ("blosc-lz4", "blosc"),
                                ("blosc-lz4-filter", "blosc_filter")):
                figures[f"{label}_MBps_{tag}"] = round(res["MBps"][kind], 1)
                figures[f"ratio_{label}_vs_raw_{tag}"] = round(res["ratio"][kind], 3)
                figures[f"{label}_cpu_ms_per_shot_{tag}"] = round(res["cpu_ms"][kind], 3)
            figures["blosc_size_ratio"] = round(res["size_ratio"]["blosc-lz4"], 3)
        n_acq = max(args.shots // 2, 20)
        rates = {}
        for label, comp in (("no writer", None), ("uncompressed", "none"),
                            ("blosc-lz4", "blosc-lz4")):
            rates[label] = statistics.median(
                acquisition_rate(tmp, rng, args.size, n_acq, comp) for _ in range(args.repeats))
        print(f"acquisition with a shot-drawing producer ({n_acq} shots): "
              + ", ".join(f"{k} {v:.1f} shots/s" for k, v in rates.items()))
        slow = rates["blosc-lz4"] / rates["uncompressed"]
        print(f"compressed / uncompressed acquisition rate: {slow:.3f}")
        figures["acq_shots_per_s_no_writer"] = round(rates["no writer"], 2)
        figures["acq_shots_per_s_uncompressed"] = round(rates["uncompressed"], 2)
        figures["acq_shots_per_s_blosc"] = round(rates["blosc-lz4"], 2)
        figures["acq_rate_blosc_vs_uncompressed"] = round(slow, 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
