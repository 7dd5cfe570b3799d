"""CPU and wall time per shot of the virtual lab through the real drivers, sockets and the sequencer:
the simulated atoms (spin state, pulses, positions, five rendered frames) beside the rest
(instrument/transport overhead: SMA100B and PrawnDO drivers over TCP on 127.0.0.1, the emulators,
the virtual camera's digitisation and queue, the sequencer and shot assembly).

Measured as CPU, not wall time: the simulation's CPU is the thread CPU of the card thread inside
``VirtualLab`` around the atoms' shot (no GIL or core waits), the process CPU covers every thread,
and the rest is process CPU minus simulation CPU. Per-thread CPU (cpu_clock.py) is reported too.

Two implementations of the spin rotations are compared, interleaved A B A B in one run on the same
seeded shots (the shipped virtual lab's N = 530 +- 40 per shot): ``before``, the full (N + 1)
eigen-problem of S_x with 12 atom numbers cached (kept here as the reference), and ``current``
(drivers/simulated/spin.py: parity-split eigen-systems kept per atom number). Each block starts a
fresh lab with empty caches (a new run), after one common warm-up that solves the twist. The true
(N1, N2) of both implementations are compared shot by shot (must be identical). Then the current
implementation at frame sizes 256^2, 1024^2, 2048^2 (``--scaling``; fewer shots at the large ones).

Process CPU is the headline: the simulation thread's CPU leaves out BLAS worker threads (LAPACK's
divide-and-conquer eigen-solver of ``before`` uses them; they appear as ``unattributed``).
The card's program runs instantly (time_scale 0). Run: python benchmarks/virtual_lab_shot.py
[--shots 30] [--rounds 3] [--scaling 256,1024,2048]. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import functools
import json
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.linalg import eigh_tridiagonal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_clock import CpuClock  # noqa: E402
from drivers.prawndo import PrawnDO  # noqa: E402
from drivers.simulated import atoms, spin  # noqa: E402
from drivers.simulated.lab import VirtualLab, VirtualLabConfig  # noqa: E402
from drivers.sma100b import SMA100B  # noqa: E402
from sequences.control import RunState  # noqa: E402
from sequences.instruments import Instruments, SequencerConfig  # noqa: E402
from sequences.plan import AxisPulse, MicrowaveCalibration, parse_plan  # noqa: E402
from sequences.publish import Overflow, ShotPublisher  # noqa: E402
from sequences.sequencer import Progress, Sequencer  # noqa: E402

DEFAULT_PLAN = Path(__file__).resolve().parent.parent / "configs" / "plans" / "default.toml"
ATOM_NUMBER_RMS = 40.0                  # configs/virtual-lab.toml
FAST_ROW_TIME_S = 0.5e-6                # frames of > 512 rows: an sCMOS-like readout, so that the
                                        # two atom exposures 1.5 ms apart still fit (2048 rows: 1 ms)


@functools.lru_cache(maxsize=12)
def _before_eigensystem(n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """The S_x eigen-system as spin.py computed it before (full problem, 12 atom numbers cached)."""
    w, v = eigh_tridiagonal(np.zeros(n_atoms + 1), 0.5 * spin._ladder(n_atoms))
    return np.round(w * 2.0) / 2.0, v


def _before_exp_sx(psi: np.ndarray, angle: float) -> np.ndarray:
    w, v = _before_eigensystem(psi.size - 1)
    coeff = v.T @ psi.real + 1j * (v.T @ psi.imag)
    coeff *= np.exp(-1j * angle * w)
    return v @ coeff.real + 1j * (v @ coeff.imag)


_CURRENT_EXP_SX = spin._exp_sx
IMPLEMENTATIONS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "before": _before_exp_sx, "current": _CURRENT_EXP_SX}


def _use(implementation: str) -> None:
    """Switch the spin rotations to ``implementation``, every cache empty (as in a new process)."""
    spin._exp_sx = IMPLEMENTATIONS[implementation]  # type: ignore[assignment]
    _before_eigensystem.cache_clear()
    spin._EIGEN.clear()
    atoms._cached_state.cache_clear()


def lab_config(frame: int) -> VirtualLabConfig:
    extra: dict[str, object] = {}
    if frame != 256:
        extra = {"frame_shape": [frame, frame], "cloud_centre_px": [frame / 2, 70.0]}
    return VirtualLabConfig.from_mapping({"time_scale": 0.0, "atom_number_rms": ATOM_NUMBER_RMS, **extra},
                                         f"benchmark:{frame}")


def run_block(frame: int, n_shots: int) -> dict[str, object]:
    """A fresh lab (seed 1) running ``n_shots`` of the default plan; CPU and wall per shot."""
    cfg = lab_config(frame)
    text = re.sub(r"(?m)^cycles = .*$", f"shots = {n_shots}", DEFAULT_PLAN.read_text())
    t = cfg.pi2_pulse_s()
    cal = MicrowaveCalibration(cfg.resonance_hz, cfg.reference_level_dbm, AxisPulse(90.0, t),
                               AxisPulse(0.0, t), record="benchmark")
    plan = parse_plan(text, str(DEFAULT_PLAN), cal)
    h, w = cfg.frame_shape
    marks: list[float] = []
    with VirtualLab(cfg, seed=1) as lab:
        if h > 512:
            lab.camera.row_time_s = FAST_ROW_TIME_S
        mw, card = SMA100B(lab.microwave_address, timeout_s=5.0), PrawnDO(lab.card_address, timeout_s=5.0)
        pub = ShotPublisher()
        sub = pub.subscribe("benchmark", maxsize=n_shots + 10, overflow=Overflow.BLOCK)
        try:
            seq = Sequencer(plan, Instruments(mw, card, lab.camera),
                            SequencerConfig(channels=cfg.channels, camera_width=w, camera_height=h),
                            publisher=pub)

            def mark(progress: Progress) -> None:
                marks.append(time.perf_counter())

            seq.add_progress_listener(mark)
            seq.prepare()
            sim0 = lab.simulation_cpu_s
            marks.append(time.perf_counter())
            with CpuClock() as clock:
                final = seq.run()
            sim_cpu = lab.simulation_cpu_s - sim0
        finally:
            mw.close()
            card.close()
        shots = list(sub)
        counts = lab.true_counts()
    if final is not RunState.COMPLETED or not all(s.is_ok for s in shots) or len(shots) != n_shots:
        raise RuntimeError(f"benchmark run ended {final.value} with {len(shots)} shots")
    span = clock.span
    wall = [b - a for a, b in zip(marks, marks[1:])]
    return {"wall_ms_per_shot": 1e3 * span.wall_s / n_shots,
            "wall_ms_median": 1e3 * statistics.median(wall),
            "process_cpu_ms_per_shot": 1e3 * span.process_s / n_shots,
            "simulation_cpu_ms_per_shot": 1e3 * sim_cpu / n_shots,
            "rest_cpu_ms_per_shot": 1e3 * (span.process_s - sim_cpu) / n_shots,
            "threads_cpu_ms_per_shot": {k: 1e3 * v / n_shots for k, v in span.threads_s.items()},
            "true_counts": counts}


def _mean_block(blocks: list[dict[str, object]]) -> dict[str, object]:
    keys = ("wall_ms_per_shot", "wall_ms_median", "process_cpu_ms_per_shot", "simulation_cpu_ms_per_shot",
            "rest_cpu_ms_per_shot")
    out: dict[str, object] = {k: round(statistics.fmean(float(b[k]) for b in blocks), 2) for k in keys}  # type: ignore[arg-type]
    threads: dict[str, float] = {}
    for b in blocks:
        for name, v in b["threads_cpu_ms_per_shot"].items():  # type: ignore[attr-defined]
            threads[name] = threads.get(name, 0.0) + v / len(blocks)
    out["threads_cpu_ms_per_shot"] = {k: round(v, 2) for k, v in sorted(threads.items(), key=lambda kv: -kv[1])
                                      if v >= 0.05}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=30, help="shots per block (multiple of 3; default 30)")
    parser.add_argument("--rounds", type=int, default=3, help="A B rounds (>= 1, default 3)")
    parser.add_argument("--scaling", default="256,1024,2048", help="frame sides of the scaling run ('' for none)")
    parser.add_argument("--scaling-shots", type=int, default=6, help="shots per frame size (default 6)")
    args = parser.parse_args()
    if args.rounds < 1 or args.shots < 3:
        parser.error("--rounds must be >= 1 and --shots >= 3")
    _use("current")
    run_block(256, 3)                         # common warm-up: twist solved, imports, sockets
    blocks: dict[str, list[dict[str, object]]] = {name: [] for name in IMPLEMENTATIONS}
    for r in range(args.rounds):
        for name in IMPLEMENTATIONS:          # A B A B ...
            _use(name)
            b = run_block(256, args.shots)
            blocks[name].append(b)
            print(f"round {r + 1} {name:8s}: simulation {b['simulation_cpu_ms_per_shot']:6.1f} ms CPU/shot, "
                  f"rest {b['rest_cpu_ms_per_shot']:5.1f} ms CPU/shot, process {b['process_cpu_ms_per_shot']:6.1f} "
                  f"ms CPU/shot, wall {b['wall_ms_per_shot']:6.1f} ms/shot", flush=True)
    _use("current")
    identical = all(np.array_equal(a["true_counts"], b["true_counts"])  # type: ignore[arg-type]
                    for a, b in zip(blocks["before"], blocks["current"]))
    result: dict[str, object] = {"shots_per_block": args.shots, "rounds": args.rounds,
                                 "atom_number_rms": ATOM_NUMBER_RMS, "true_counts_identical": identical}
    for name, bs in blocks.items():
        result[name] = _mean_block(bs)
    before, current = result["before"], result["current"]
    for key in ("simulation_cpu_ms_per_shot", "process_cpu_ms_per_shot", "wall_ms_per_shot"):
        result[f"{key.removesuffix('_ms_per_shot')}_before_over_current"] = round(
            before[key] / current[key], 2)  # type: ignore[index]
    print(f"process CPU per simulated shot: before {before['process_cpu_ms_per_shot']} ms, current "  # type: ignore[index]
          f"{current['process_cpu_ms_per_shot']} ms: {result['process_cpu_before_over_current']}x fewer "
          f"(target >= 2); simulation thread alone {result['simulation_cpu_before_over_current']}x; the rest "
          f"(drivers, emulators, sequencer): {current['rest_cpu_ms_per_shot']} ms CPU/shot; "  # type: ignore[index]
          f"true counts identical: {identical}")
    scaling = {}
    for side in [int(s) for s in args.scaling.split(",") if s.strip()]:
        b = run_block(side, args.scaling_shots)
        b.pop("true_counts")
        scaling[f"{side}x{side}"] = _mean_block([b])
        print(f"{side} x {side} px: simulation {b['simulation_cpu_ms_per_shot']:.1f} ms CPU/shot, rest "
              f"{b['rest_cpu_ms_per_shot']:.1f} ms CPU/shot, wall {b['wall_ms_per_shot']:.1f} ms/shot", flush=True)
    result["frame_scaling_current"] = scaling
    print(json.dumps(result))


if __name__ == "__main__":
    main()
