"""PrawnDO driver: upload (binary `adm` vs text `add`) and verify times against the emulator.

Driver and emulator share this process (and its GIL) over a 127.0.0.1 socket, so the figures bound
the driver's own cost; a real card adds USB latency per exchange. Run: python benchmarks/prawndo_upload.py
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable

from drivers.prawndo import PrawnDO
from drivers.pulse_program import STOP, Instruction
from drivers.simulated.prawndo_emulator import PrawnDOEmulator


def _program(n: int) -> list[Instruction]:
    return [Instruction(k & 0xFFFF, 5 + k % 1000) for k in range(n - 2)] + list(STOP)


def _best_s(action: Callable[[], object], repeats: int) -> float:
    """Shortest wall time of ``repeats`` runs (the machine is shared: the minimum is the cost)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    figures: dict[str, float] = {}
    with PrawnDOEmulator(time_scale=0.0) as emu, PrawnDO(emu.url, timeout_s=5.0) as card:
        for n, repeats in ((1_000, 7), (30_000, 3)):
            prog = _program(n)
            for upload in ("binary", "text"):
                dt = _best_s(lambda: card.program(prog, upload=upload), repeats)  # type: ignore[arg-type]
                figures[f"{upload}_{n}_s"] = round(dt, 4)
                print(f"{upload:6s} upload of {n:6d} instructions: {dt * 1e3:8.1f} ms "
                      f"({n / dt:,.0f} instructions/s, best of {repeats})")
            dt = _best_s(lambda: card.verify(prog), repeats)
            figures[f"verify_{n}_s"] = round(dt, 4)
            print(f"verify of {n:6d} instructions (len + pipelined get): {dt * 1e3:8.1f} ms")
            figures[f"text_over_binary_{n}"] = round(figures[f"text_{n}_s"] / figures[f"binary_{n}_s"], 2)
            print(f"text / binary upload time at {n}: {figures[f'text_over_binary_{n}']:.2f}x")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
