"""A small virtual lab for the sequencer tests: the SCPI and PrawnDO emulators on 127.0.0.1 with
the real drivers, and a virtual camera exposed on the card's camera edges.

Each exposed frame records what the instruments really did, so a wrong command, a stale frame or a
mislabelled shot shows up in the data: pixel [0, 0] = frame number k in the sequence, [0, 1] = the
generator's phase (deg, mod 360) at the end of the sequence, [0, 2] = the microwave gate length
(us) the card emitted, [0, 3] = 1 if the probe was on at that exposure, [0, 4] = the sequence
number (1, 2, ... over the lab's life).
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from drivers.prawndo import PrawnDO
from drivers.simulated.prawndo_emulator import PrawnDOEmulator
from drivers.simulated.sma100b_emulator import SMA100BEmulator
from drivers.simulated.virtual_camera import VirtualCamera
from drivers.sma100b import SMA100B
from sequences.instruments import Instruments, SequencerConfig
from sequences.plan import AxisPulse, MicrowaveCalibration, parse_plan

CHANNELS = {"mw_gate": 0, "probe": 1, "camera": 2, "tof_marker": 5}
H, W = 8, 10
CAL = MicrowaveCalibration(6.834682611e9, -10.0, AxisPulse(90.0, 120e-6), AxisPulse(0.0, 120e-6),
                           record="test-cal")
PLAN = """
[run]
shots = {shots}
[imaging]
frame_timeout_s = 0.4
reference_delay_s = 5e-3
dark_delay_s = 5e-3
[retry]
max_attempts = {max_attempts}
reconnect_attempts = {reconnect_attempts}
reconnect_delay_s = 0.02
on_exhausted = "{on_exhausted}"
"""


def plan(shots: int = 9, *, max_attempts: int = 3, reconnect_attempts: int = 2,
         on_exhausted: str = "pause"):
    """A test plan: interleaved x, y, z; short delays; fast retries."""
    return parse_plan(PLAN.format(shots=shots, max_attempts=max_attempts,
                                  reconnect_attempts=reconnect_attempts, on_exhausted=on_exhausted),
                      "test-plan.toml", CAL)


def config() -> SequencerConfig:
    return SequencerConfig(channels=CHANNELS, camera_width=W, camera_height=H, camera_offset_x=2,
                           camera_offset_y=1, card_margin_s=1.0, fetch_slice_s=0.05)


def _intervals(edges: list[tuple[float, int]], bit: int) -> list[tuple[float, float]]:
    out, start = [], None
    for t, word in edges:
        high = bool(word >> bit & 1)
        if high and start is None:
            start = t
        elif not high and start is not None:
            out.append((start, t))
            start = None
    return out


class MiniLab:
    """Context manager: emulators started, drivers constructed (not connected), camera wired."""

    def __init__(self, *, time_scale: float = 0.02) -> None:
        self.mw_emu = SMA100BEmulator()
        self.card_emu = PrawnDOEmulator(time_scale=time_scale)
        self.camera = VirtualCamera(sensor_width=W + 4, sensor_height=H + 2, serial_number="T1")
        self.sequences = 0
        self.before_render: Callable[[int], bool] | None = None  # False: deliver no frames
        self._lock = threading.Lock()

    def __enter__(self) -> MiniLab:
        self.mw_emu.start()
        self.card_emu.start()
        self._unhook = self.card_emu.on_sequence(self._render)
        self.mw = SMA100B(self.mw_emu.address, timeout_s=0.3)
        self.card = PrawnDO(self.card_emu.url, timeout_s=0.3)
        self.instruments = Instruments(self.mw, self.card, self.camera)
        return self

    def __exit__(self, *exc: object) -> None:
        self._unhook()
        self.mw.close()
        self.card.close()
        self.camera.close()
        self.card_emu.stop()
        self.mw_emu.stop()

    def _render(self, edges: list[tuple[float, int]]) -> None:
        with self._lock:
            self.sequences += 1
            seq = self.sequences
        if self.before_render is not None and not self.before_render(seq):
            return
        gate_s = sum(b - a for a, b in _intervals(edges, CHANNELS["mw_gate"]))
        probe = _intervals(edges, CHANNELS["probe"])
        phase = self.mw_emu.snapshot().phase_deg
        frames = []
        for k, (t0, t1) in enumerate(_intervals(edges, CHANNELS["camera"])):
            f = np.full((H + 2, W + 4), 1000, dtype=np.uint16)
            lit = any(a < t1 and b > t0 for a, b in probe)
            f[1, 2:7] = (k, round(phase) % 360, round(gate_s * 1e6), int(lit), seq)
            frames.append(f)
        self.camera.deliver(frames)
