"""SMA100B driver against its emulator over pyvisa-py: time per query, per checked setting, per shot's
re-phasing, and the effect of TCP_NODELAY on "command + SYST:ERR?" (measured in one run).

Run: ``python benchmarks/sma100b_settings.py``; the last line is a JSON object of the figures.
"""
from __future__ import annotations

import json
import socket
import statistics
import time
from collections.abc import Callable

from drivers.simulated.sma100b_emulator import SMA100BEmulator
from drivers.sma100b import SMA100B


def _median_s(action: Callable[[int], None], n: int) -> float:
    times = []
    for k in range(n):
        t0 = time.perf_counter()
        action(k)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    figures: dict[str, float] = {}
    with SMA100BEmulator() as emu, SMA100B(emu.address, timeout_s=2.0) as mw:
        def query(_: int) -> None:
            mw.phase_deg

        def set_phase(k: int) -> None:
            mw.phase_deg = float(k % 4) * 90.0

        figures["query_ms"] = round(_median_s(query, 300) * 1e3, 3)
        figures["set_checked_ms"] = round(_median_s(set_phase, 300) * 1e3, 3)
        figures["settings_readback_ms"] = round(_median_s(lambda _: mw.settings(), 50) * 1e3, 3)
        print(f"query (SOUR:PHAS?):                    {figures['query_ms']:8.3f} ms (median of 300)")
        print(f"checked setting (PHAS + SYST:ERR?):    {figures['set_checked_ms']:8.3f} ms (median of 300)")
        print(f"settings() read-back of 7 controls:    {figures['settings_readback_ms']:8.3f} ms (median of 50)")

        sock = mw._raw_socket()
        assert sock is not None, "pyvisa-py SOCKET session expected"
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        figures["set_checked_nagle_ms"] = round(_median_s(set_phase, 20) * 1e3, 3)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        figures["nagle_over_nodelay"] = round(figures["set_checked_nagle_ms"] / figures["set_checked_ms"], 1)
        print(f"checked setting with Nagle (no NODELAY): {figures['set_checked_nagle_ms']:6.3f} ms (median of 20)"
              f" = {figures['nagle_over_nodelay']}x")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
