"""The virtual lab: emulated instruments on 127.0.0.1 joined to the simulated atoms.

What the instruments really did decides what the atoms undergo. After every program the emulated
PrawnDO card runs, the lab reads the card's emitted edges (times in s from the trap switch-off:
the program start, or the first rising edge of ``tof_marker`` when the program starts earlier for
steps before the switch-off) and the settings the emulated SMA100B really held while it ran (its change
notifications mapped onto the program's time axis; with ``time_scale`` 0 the program takes no
real time and the settings at its end held throughout):

* microwave: on the ``mw_gate`` output bit, the intervals during which RF really leaves the
  generator (``MicrowaveState.rf_on``: output on, pulse modulation from the external gate; with
  pulse modulation off the RF is on for the whole time of flight). Each such interval, cut at the
  first probe pulse (the atoms are measured then), is a Rabi pulse of area
  ``2 pi Omega(level) dt`` and phase = the generator's phase (a setting changed during the
  interval splits it into two pulses); a carrier detuned from the atomic
  resonance by ``delta`` adds the detuning area ``2 pi delta dt``. Omega scales with the field
  amplitude: ``Omega = rabi_frequency_hz * 10**((level - reference_level_dbm) / 20)``.
* imaging: the ``camera`` bit's high intervals are the exposures (in order); an exposure during
  which the ``probe`` bit is high is lit. The first two lit exposures image the atoms (|2>, then
  |1>), further lit ones are the references, unlit ones dark frames. Probe pulse lengths and
  times come from the edges.
* a push beam (``blast_channel``, optional): high before the first probe pulse, it removes every
  atom (an atom-free shot, for the detection noise).

The simulated atoms render the shot (:mod:`drivers.simulated.atoms`) and every exposure's frame is
exposed on the virtual camera in edge order (a camera not armed for hardware triggers misses them,
as a real one would). ``truths`` keeps, per program run, what the atoms underwent (the last 2000).
"""
from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from conventions.frames import LIT_FRAMES
from drivers.simulated.atoms import FRAME_NAMES, Exposures, ShotTruth, SimulatedAtoms
from drivers.simulated.lateness import HostLateness
from drivers.simulated.lab_config import DEFAULT_CHANNELS, VirtualLabConfig, VirtualLabConfigError
from drivers.simulated.lab_pulses import (Edges, MicrowaveTimeline, high_intervals, overlapping,
                                          pulses_from_timeline, state_in_force)
from drivers.simulated.prawndo_emulator import PrawnDOEmulator
from drivers.simulated.sma100b_emulator import MicrowaveState, SMA100BEmulator
from drivers.simulated.synthhd_emulator import SynthHDEmulator

MICROWAVE_EMULATORS: dict[str, type[SMA100BEmulator] | type[SynthHDEmulator]] = {
    "sma100b": SMA100BEmulator, "synthhd": SynthHDEmulator}
"""The emulated microwave source of each kind the virtual lab can stand in for."""
from drivers.simulated.spin import RabiPulse
from drivers.simulated.virtual_camera import VirtualCamera

__all__ = ["DEFAULT_CHANNELS", "LabShot", "TRUTHS_KEPT", "VirtualLab", "VirtualLabConfig",
           "VirtualLabConfigError", "high_intervals", "pulses_from_instruments"]

log = logging.getLogger(__name__)

TRUTHS_KEPT = 2000


@dataclass(frozen=True)
class LabShot:
    """What one program run did to the atoms: the pulses from the instruments and the simulation's
    truth; ``microwave``: the generator's settings at the first image."""

    sequence: int
    microwave: MicrowaveState
    pulses: tuple[RabiPulse, ...]
    exposure_kinds: tuple[str, ...]
    truth: ShotTruth


def pulses_from_instruments(config: VirtualLabConfig, edges: Edges, mw: MicrowaveState,
                            measure_at_s: float) -> tuple[RabiPulse, ...]:
    """The Rabi pulses the atoms undergo before ``measure_at_s`` (s from the program start) with
    the generator holding ``mw`` throughout."""
    return pulses_from_timeline(edges, [(0.0, mw)], measure_at_s, gate_bit=config.channels["mw_gate"],
                                rabi_hz_at=config.rabi_frequency_at, resonance_hz=config.resonance_hz)


#: Nice increment of the thread that simulates the atoms (Linux: per thread). The simulation stands
#: in for the physical world, which costs a real lab's host no CPU: on a busy host it yields to the
#: acquisition, the monitor and the operator's window instead of competing with them.
PHYSICS_NICE = 10


def _lower_priority() -> None:
    """Raise this thread's nice value by PHYSICS_NICE (Linux only: elsewhere the nice value is
    the process's, and the acquisition must not be slowed)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + PHYSICS_NICE, 19))
    except OSError as exc:
        log.debug("virtual lab: physics thread keeps its priority: %s", exc)


class VirtualLab:
    """Emulated microwave source (``microwave``: SMA100B or SynthHD) and PrawnDO on ``config.host``
    (``microwave_port``/``card_port``; 0: chosen by the OS), a virtual camera (or another
    ``sensor`` the frames are delivered to), and the simulated atoms, joined. Use as a context
    manager or start()/stop()."""

    def __init__(self, config: VirtualLabConfig | None = None, *, seed: int | None = None,
                 microwave: str = "sma100b", microwave_port: int = 0, card_port: int = 0,
                 sensor: Any = None) -> None:
        if microwave not in MICROWAVE_EMULATORS:
            raise ValueError(f"virtual lab: no emulator for microwave kind {microwave!r}; emulated "
                             f"kinds: {', '.join(MICROWAVE_EMULATORS)}")
        self.config = config if config is not None else VirtualLabConfig()
        self.seed = 0 if seed is None else int(seed)
        self.atoms = SimulatedAtoms(self.config.simulation, seed=self.seed)
        self.microwave_kind = microwave
        self.microwave_emulator: Any = MICROWAVE_EMULATORS[microwave](host=self.config.host,
                                                                      port=microwave_port)
        self.card_emulator = PrawnDOEmulator(host=self.config.host, port=card_port,
                                             time_scale=self.config.time_scale)
        h, w = self.config.frame_shape
        self.camera = VirtualCamera(sensor_width=w, sensor_height=h, adc_bits=self.config.adc_bits,
                                    serial_number=self.config.camera_serial, name="virtual lab camera")
        # where the shots' frames go: the virtual camera, or another sensor with its deliver()
        # (drivers/simulated/image_files.py: files for a camera emulator that reads them)
        self.sensor: Any = sensor if sensor is not None else self.camera
        # the generator's settings over time (from its change notifications)
        self.microwave_timeline = MicrowaveTimeline(self.microwave_emulator)
        # what the atoms underwent, for checks; bounded so that a soak of many shots stays flat
        self.truths: deque[LabShot] = deque(maxlen=TRUTHS_KEPT)
        self.errors: list[str] = []
        self._sequences = 0
        self._simulation_s = 0.0
        self._simulation_cpu_s = 0.0
        # wall time (s) of the lab's whole work per program run (edges -> pulses, atoms, frames
        # handed to the camera), summed since start; the simulated atoms alone: simulation_time_s
        self.render_seconds = 0.0
        self._lock = threading.Lock()
        self._unhook: Any = None
        self._stop = threading.Event()
        self._trigger_thread: threading.Thread | None = None
        self._physics: ThreadPoolExecutor | None = None
        self._running = False
        # how late the host and the simulation are: the drivers' timeouts wait for it
        self.lateness = HostLateness()
        self.camera.patience = self.lateness.patience

    @property
    def microwave_address(self) -> str:
        """Address of the emulated generator for its driver (a VISA resource string for the
        SMA100B, a pyserial URL for the SynthHD)."""
        return self.microwave_emulator.address

    @property
    def card_address(self) -> str:
        """pyserial URL of the emulated timing card (for drivers.prawndo.PrawnDO)."""
        return self.card_emulator.url

    def start(self) -> None:
        """Start the emulators (and the trigger source, if configured)."""
        if self._running:
            raise RuntimeError("virtual lab already started")
        self.lateness.start()
        self.microwave_emulator.start()
        self.microwave_timeline.attach()
        try:
            self.card_emulator.start()
        except BaseException:
            self.microwave_timeline.detach()
            self.microwave_emulator.stop()
            self.lateness.stop()
            raise
        self._physics = ThreadPoolExecutor(1, thread_name_prefix="virtual-lab-physics",
                                           initializer=_lower_priority)
        self._unhook = self.card_emulator.on_sequence(self._on_sequence)
        self._stop.clear()
        if self.config.trigger_period_s > 0:
            self._trigger_thread = threading.Thread(target=self._trigger_loop, name="virtual-lab-trigger",
                                                    daemon=True)
            self._trigger_thread.start()
        self._running = True
        log.info("virtual lab: microwave %s, card %s", self.microwave_address, self.card_address)

    def stop(self) -> None:
        """Stop everything and join every thread (idempotent)."""
        if not self._running:
            return
        self._running = False
        self._stop.set()
        if self._trigger_thread is not None:
            self._trigger_thread.join()
            self._trigger_thread = None
        if self._unhook is not None:
            self._unhook()
            self._unhook = None
        self.camera.close()
        self.card_emulator.stop()
        if self._physics is not None:
            self._physics.shutdown(wait=True)
            self._physics = None
        self.microwave_timeline.detach()
        self.microwave_emulator.stop()
        self.lateness.stop()

    def __enter__(self) -> VirtualLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _trigger_loop(self) -> None:
        from drivers.simulated.prawndo_engine import RUNNING
        while not self._stop.wait(self.config.trigger_period_s):
            if self.card_emulator.status == RUNNING:
                self.card_emulator.trigger()

    def _on_sequence(self, edges: Edges) -> None:
        """The card's program has ended: the shot is simulated on the physics thread (lower
        priority, PHYSICS_NICE) while the card's thread waits, as before."""
        try:
            physics = self._physics
            if physics is None:
                self._render(edges)
            else:
                physics.submit(self._render, edges).result()
        except Exception as exc:         # a simulation bug must surface, not kill the card thread
            log.exception("virtual lab: rendering the shot failed")
            with self._lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def _render(self, edges: Edges) -> None:
        t0 = time.perf_counter()
        try:
            with self.lateness.simulating():
                self._render_shot(edges)
        finally:
            with self._lock:
                self.render_seconds += time.perf_counter() - t0

    def _render_shot(self, card_edges: Edges) -> None:
        end_r = time.monotonic()        # the card calls back as soon as its program has ended
        with self._lock:
            self._sequences += 1
            seq = self._sequences
        ch = self.config.channels
        # the release: tof_marker's first rising edge where a program starts before it (steps
        # before the switch-off, sequences/steps.py), else the program's start; times from it
        release = 0.0
        if "tof_marker" in ch:
            marks = high_intervals(card_edges, ch["tof_marker"])
            release = marks[0][0] if marks else 0.0
        edges = [(t - release, w) for t, w in card_edges]
        end = edges[-1][0] if edges else 0.0
        cams = high_intervals(edges, ch["camera"], end_s=end)
        probes = high_intervals(edges, ch["probe"], end_s=end)
        lit = [overlapping(c, probes) for c in cams]
        kinds: list[str] = []
        lit_pulses: list[tuple[float, float]] = []
        for p in lit:
            if p is None:
                kinds.append("dark")
                continue
            kinds.append(LIT_FRAMES[min(len(lit_pulses), 3)])
            lit_pulses.append(p)
        default = Exposures()
        times = [p[0] for p in lit_pulses] + [default.atoms2_time_s, default.atoms1_time_s][len(lit_pulses):]
        lengths = [p[1] - p[0] for p in lit_pulses]
        lengths += [default.atoms2_pulse_s] * (4 - len(lengths))
        exposures = Exposures(times[0], max(times[1], times[0] + lengths[0]), *lengths[:4])
        records = self.card_emulator.records
        end_t = records[-1].end_s if records and records[-1].edges == card_edges else end + release
        timeline = [(t - release, st) for t, st in
                    self.microwave_timeline.program_timeline(end_r, end_t, self.card_emulator.time_scale)]
        mw = state_in_force(timeline, exposures.atoms2_time_s)
        try:
            pulses = pulses_from_timeline(edges, timeline, exposures.atoms2_time_s,
                                          gate_bit=ch["mw_gate"], rabi_hz_at=self.config.rabi_frequency_at,
                                          resonance_hz=self.config.resonance_hz)
        except ValueError as exc:       # e.g. the internal pulse generator, which is not emulated
            log.warning("virtual lab: no microwave pulse: %s", exc)
            with self._lock:
                self.errors.append(str(exc))
            pulses = ()
        blast = self.config.blast_channel
        loaded = not (blast and any(a < exposures.atoms2_time_s for a, _ in
                                    high_intervals(edges, ch[blast], end_s=end)))
        atoms = self.atoms
        load = self.config.load_channel
        if load:
            loading = [(a, min(b, 0.0)) for a, b in high_intervals(edges, ch[load], end_s=end) if a < 0.0]
            held = sum(b - a for a, b in loading)
            if loading:
                atoms = atoms.with_atom_number(atoms.config.spin.atom_number_mean
                                               * -math.expm1(-held / self.config.load_time_s))
        if lit_pulses and self.config.probe_levels:
            first = lit_pulses[0]
            for name, level in self.config.probe_levels.items():
                if overlapping(first, high_intervals(edges, ch[name], end_s=end)) is not None:
                    atoms = atoms.with_probe_saturation(level)
                    break
        t0, c0 = time.perf_counter(), time.thread_time()
        shot = atoms.shot(seq - 1, pulses=pulses, exposures=exposures, atoms_loaded=loaded,
                          render=bool(cams))
        spent, cpu = time.perf_counter() - t0, time.thread_time() - c0
        with self._lock:
            self._simulation_s += spent
            self._simulation_cpu_s += cpu
            self.truths.append(LabShot(seq, mw, pulses, tuple(kinds), shot.truth))
        if shot.frames is not None:
            frames = shot.frames
            start_r = end_r - end_t * self.card_emulator.time_scale     # the program's start
            self.sensor.deliver([frames[FRAME_NAMES.index(kind)] for kind in kinds],
                                [start_r + release + c[0] for c in cams])   # stamped at their edges

    def set_simulation(self, simulation: Any) -> None:
        """The simulated atoms from the next program run on: ``simulation`` (a SimulationConfig,
        e.g. another prepared state or atom number); shot k stays seeded by (seed, k)."""
        atoms = SimulatedAtoms(simulation, seed=self.seed)
        with self._lock:
            self.atoms = atoms

    @property
    def sequences_run(self) -> int:
        """Programs the card has run since start."""
        with self._lock:
            return self._sequences

    @property
    def simulation_time_s(self) -> float:
        """Wall time (s) spent in the simulated atoms (spin state, positions, rendering) since start."""
        with self._lock:
            return self._simulation_s

    @property
    def simulation_cpu_s(self) -> float:
        """CPU time (s) of the thread simulating the atoms, spent in them since start (unlike
        simulation_time_s, no waits for the GIL or the cores)."""
        with self._lock:
            return self._simulation_cpu_s

    def true_counts(self) -> np.ndarray:
        """(n1, n2) of every program run so far, shape (S, 2)."""
        with self._lock:
            return np.array([(t.truth.n1, t.truth.n2) for t in self.truths], dtype=int).reshape(-1, 2)
