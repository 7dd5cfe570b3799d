"""The simulated atoms as a calibration source (calibration.procedures.AtomSource): shots with one
parameter set directly (probe intensity, atom number, pulse, cloud size, no atoms), seeded shot by
shot. Frames in camera counts (uint16), (n, 5, H, W) in analysis.imaging.FRAME_ORDER.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers.simulated.atoms import SimulationConfig, simulate_shot
from drivers.simulated.spin import RabiPulse


class VirtualAtoms:
    """Shots of the simulated atoms with one parameter set per call (the virtual lab's truth inside)."""

    def __init__(self, config: SimulationConfig, seed: int = 0) -> None:
        self.config = config
        self.seed = seed
        self._next = 0

    def shots(self, n: int, *, pulses: Sequence[Any] = (), config: Any = None,
              atoms_loaded: bool = True, exposures: Any = None) -> NDArray[np.uint16]:
        cfg = config or self.config
        out: list[NDArray[np.uint16]] = []
        for _ in range(n):
            seq = np.random.SeedSequence(self.seed, spawn_key=(self._next,))
            self._next += 1
            frames = simulate_shot(cfg, seed=seq, pulses=pulses, atoms_loaded=atoms_loaded,
                                   exposures=exposures).frames
            assert frames is not None      # rendered: simulate_shot renders by default
            out.append(frames)
        return np.stack(out)

    def with_spin(self, **kw: Any) -> Any:
        return dataclasses.replace(self.config, spin=dataclasses.replace(self.config.spin, **kw))

    def with_imaging(self, **kw: Any) -> Any:
        return dataclasses.replace(self.config, imaging=dataclasses.replace(self.config.imaging, **kw))

    def with_cloud(self, **kw: Any) -> Any:
        return dataclasses.replace(self.config, cloud=dataclasses.replace(self.config.cloud, **kw))

    def rabi_pulse(self, area_rad: float) -> RabiPulse:
        """A pulse of ``area_rad`` about y: rotates the x-polarised spin into z."""
        return RabiPulse(area_rad, math.pi / 2)
