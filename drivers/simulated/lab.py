"""The virtual lab: emulated instruments on 127.0.0.1 joined to the simulated atoms.

What the instruments really did decides what the atoms undergo. After every program the emulated
PrawnDO card runs, the lab reads the card's emitted edges (times in s from the program start =
trap switch-off) and the state the emulated SMA100B really holds:

* microwave: on the ``mw_gate`` output bit, the intervals during which RF really leaves the
  generator (``MicrowaveState.rf_on``: output on, pulse modulation from the external gate; with
  pulse modulation off the RF is on for the whole time of flight). Each such interval, cut at the
  first probe pulse (the atoms are measured then), is a Rabi pulse of area
  ``2 pi Omega(level) dt`` and phase = the generator's phase; a carrier detuned from the atomic
  resonance by ``delta`` adds the detuning area ``2 pi delta dt``. Omega scales with the field
  amplitude: ``Omega = rabi_frequency_hz * 10**((level - reference_level_dbm) / 20)``.
* imaging: the ``camera`` bit's high intervals are the exposures (in order); an exposure during
  which the ``probe`` bit is high is lit. The first two lit exposures image the atoms (|2>, then
  |1>), further lit ones are the references, unlit ones dark frames. Probe pulse lengths and
  times come from the edges.

The simulated atoms render the shot (:mod:`drivers.simulated.atoms`) and every exposure's frame is
exposed on the virtual camera in edge order (a camera not armed for hardware triggers misses them,
as a real one would). ``truths`` keeps, per program run, what the atoms underwent (the last 2000).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drivers.simulated.atoms import (FRAME_NAMES, Exposures, ShotTruth, SimulatedAtoms,
                                     SimulationConfig, SpinConfig)
from drivers.simulated.cloud import CloudConfig
from drivers.simulated.imaging import ImagingConfig
from drivers.simulated.prawndo_emulator import PrawnDOEmulator
from drivers.simulated.sma100b_emulator import MicrowaveState, SMA100BEmulator
from drivers.simulated.spin import RabiPulse
from drivers.simulated.virtual_camera import VirtualCamera

log = logging.getLogger(__name__)

Edges = list[tuple[float, int]]
TRUTHS_KEPT = 2000
DEFAULT_CHANNELS: dict[str, int] = {"mw_gate": 0, "probe": 1, "camera": 2, "tof_marker": 5}
_STATE_KEYS = {"state": "state", "squeezing_db": "wineland_squeezing_db",
               "atom_number": "atom_number_mean", "atom_number_rms": "atom_number_rms",
               "dephasing_rms_rad": "dephasing_rms_rad", "phase_noise_rms_rad": "phase_noise_rms_rad",
               "rabi_area_rel_rms": "rabi_area_rel_rms"}


class VirtualLabConfigError(ValueError):
    """A virtual-lab configuration value is missing, of the wrong type or out of range."""


@dataclass(frozen=True)
class VirtualLabConfig:
    """Everything the virtual lab needs (units in the names: Hz, dBm, s, px).

    ``simulation``: the simulated atoms (state, cloud, imaging; paper defaults). ``channels``: card
    output bit of each TTL signal (must match the sequencer's channel map). The microwave drives the
    atoms at ``rabi_frequency_hz`` when the generator is at ``reference_level_dbm`` and exactly on
    ``resonance_hz``. ``time_scale``: real seconds per programmed second on the card (0: instant).
    ``trigger_period_s``: with > 0, the experiment's cycle pulses the card's trigger input this
    often while it waits (hardware-start mode); 0: no trigger source. ``adc_bits``/``serial``: the
    virtual camera (its sensor is the simulated frame).
    """

    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    channels: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_CHANNELS))
    rabi_frequency_hz: float = 2000.0
    reference_level_dbm: float = -10.0
    resonance_hz: float = 6.834682611e9
    time_scale: float = 0.0
    trigger_period_s: float = 0.0
    adc_bits: int = 16
    camera_serial: str = "VLAB0001"
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        for name in ("mw_gate", "probe", "camera"):
            if name not in self.channels:
                raise VirtualLabConfigError(f"virtual lab channels {dict(self.channels)}: missing {name!r}")
        for name, bit in self.channels.items():
            if isinstance(bit, bool) or not isinstance(bit, int) or not 0 <= bit < 16:
                raise VirtualLabConfigError(f"virtual lab channel {name!r} = {bit!r}: expected an output "
                                            f"bit 0..15")
        for name in ("rabi_frequency_hz", "resonance_hz"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise VirtualLabConfigError(f"virtual lab {name} = {v!r}: expected a frequency > 0 Hz")
        for name in ("time_scale", "trigger_period_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise VirtualLabConfigError(f"virtual lab {name} = {v!r}: expected a number >= 0")
        if not (isinstance(self.reference_level_dbm, (int, float))
                and math.isfinite(self.reference_level_dbm)):
            raise VirtualLabConfigError(f"virtual lab reference_level_dbm = {self.reference_level_dbm!r}: "
                                        f"expected a level in dBm")
        if isinstance(self.adc_bits, bool) or not isinstance(self.adc_bits, int) or not 8 <= self.adc_bits <= 16:
            raise VirtualLabConfigError(f"virtual lab adc_bits = {self.adc_bits!r}: expected 8..16")

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(rows, columns) of the simulated frames = the virtual camera's sensor."""
        h, w = self.simulation.imaging.frame_shape
        return int(h), int(w)

    def pi2_pulse_s(self, level_dbm: float | None = None) -> float:
        """Gate length (s) of a pi/2 pulse at ``level_dbm`` (default: the reference level)."""
        return 0.25 / self.rabi_frequency_at(self.reference_level_dbm if level_dbm is None else level_dbm)

    def rabi_frequency_at(self, level_dbm: float) -> float:
        """Rabi frequency (Hz) at generator level ``level_dbm`` (amplitude ~ 10**(dBm/20))."""
        return self.rabi_frequency_hz * 10.0 ** ((level_dbm - self.reference_level_dbm) / 20.0)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "<config>") -> VirtualLabConfig:
        """From a TOML table; errors name ``source``, the field, the value and what was expected.

        Keys: state ("squeezed"|"coherent"), squeezing_db, atom_number, atom_number_rms,
        dephasing_rms_rad, phase_noise_rms_rad, rabi_area_rel_rms; frame_shape [rows, cols],
        cloud_centre_px [x, y] (|2> cloud at its exposure); rabi_frequency_hz,
        reference_level_dbm, resonance_hz, time_scale, trigger_period_s, adc_bits, camera_serial,
        host; sub-tables ``channels``, ``cloud`` and ``imaging`` (any CloudConfig/ImagingConfig
        field, for experts).
        """
        if not isinstance(data, Mapping):
            raise VirtualLabConfigError(f"{source}: [virtual_lab] must be a table, got {type(data).__name__}")
        data = dict(data)
        where = f"{source}: [virtual_lab]"
        spin_kw: dict[str, Any] = {}
        for key, target in _STATE_KEYS.items():
            if key in data:
                spin_kw[target] = data.pop(key)
        cloud_kw = _table(data.pop("cloud", {}), f"{where}.cloud")
        imaging_kw = _table(data.pop("imaging", {}), f"{where}.imaging")
        if "frame_shape" in data:
            imaging_kw["frame_shape"] = _pair(data.pop("frame_shape"), f"{where} frame_shape", int)
        if "cloud_centre_px" in data:
            centre = _pair(data.pop("cloud_centre_px"), f"{where} cloud_centre_px", float)
            cloud_kw["centre_px"] = centre
        if "frame_shape" in imaging_kw and "probe_centre_px" not in imaging_kw:
            h, w = imaging_kw["frame_shape"]
            imaging_kw["probe_centre_px"] = (w / 2.0, h / 2.0)
        try:
            spin = SpinConfig(**spin_kw)
        except (TypeError, ValueError) as exc:
            raise VirtualLabConfigError(f"{where}: {exc}") from None
        simulation = _build(SimulationConfig, where, spin=spin,
                            cloud=_build(CloudConfig, f"{where}.cloud", **cloud_kw),
                            imaging=_build(ImagingConfig, f"{where}.imaging", **imaging_kw))
        kw: dict[str, Any] = {"simulation": simulation}
        if "channels" in data:
            kw["channels"] = dict(_table(data.pop("channels"), f"{where}.channels"))
        names = {f.name for f in dataclasses.fields(cls)} - {"simulation", "channels"}
        unknown = sorted(set(data) - names)
        if unknown:
            raise VirtualLabConfigError(f"{where}: unknown key(s) {unknown}; expected "
                                        f"{sorted(names | set(_STATE_KEYS) | {'frame_shape', 'cloud_centre_px', 'channels', 'cloud', 'imaging'})}")
        for key in ("rabi_frequency_hz", "reference_level_dbm", "resonance_hz", "time_scale",
                    "trigger_period_s"):
            if key in data:
                value = data[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise VirtualLabConfigError(f"{where} {key} = {value!r}: expected a number")
                kw[key] = float(value)
        for key in ("adc_bits",):
            if key in data:
                kw[key] = data[key]
        for key in ("camera_serial", "host"):
            if key in data:
                if not isinstance(data[key], str) or not data[key]:
                    raise VirtualLabConfigError(f"{where} {key} = {data[key]!r}: expected a non-empty string")
                kw[key] = data[key]
        try:
            return cls(**kw)
        except VirtualLabConfigError as exc:
            raise VirtualLabConfigError(f"{source}: {exc}") from None


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise VirtualLabConfigError(f"{where}: expected a table, got {value!r}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}


def _pair(value: Any, where: str, kind: type) -> tuple[Any, Any]:
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
    if not ok or (kind is int and not all(float(v).is_integer() for v in value)):
        raise VirtualLabConfigError(f"{where} = {value!r}: expected two {'integers' if kind is int else 'numbers'}")
    return kind(value[0]), kind(value[1])


def _build(cls: type, where: str, **kw: Any) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kw) - names)
    if unknown:
        raise VirtualLabConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(names)}")
    try:
        return cls(**kw)
    except (TypeError, ValueError) as exc:
        raise VirtualLabConfigError(f"{where}: {exc}") from None


def high_intervals(edges: Edges, bit: int, end_s: float | None = None) -> list[tuple[float, float]]:
    """(start, stop) in s of the intervals during which output ``bit`` is high; a level still high
    at the last edge ends at ``end_s`` (default: that edge)."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    for t, word in edges:
        high = bool(word >> bit & 1)
        if high and start is None:
            start = t
        elif not high and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        last = edges[-1][0] if end_s is None else end_s
        if last > start:
            out.append((start, last))
    return out


def _overlap(a: tuple[float, float], intervals: list[tuple[float, float]]) -> tuple[float, float] | None:
    for b in intervals:
        lo, hi = max(a[0], b[0]), min(a[1], b[1])
        if hi > lo:
            return b
    return None


@dataclass(frozen=True)
class LabShot:
    """What one program run did to the atoms: the pulses from the instruments and the simulation's truth."""

    sequence: int
    microwave: MicrowaveState
    pulses: tuple[RabiPulse, ...]
    exposure_kinds: tuple[str, ...]
    truth: ShotTruth


def pulses_from_instruments(config: VirtualLabConfig, edges: Edges, mw: MicrowaveState,
                            measure_at_s: float) -> tuple[RabiPulse, ...]:
    """The Rabi pulses the atoms undergo before ``measure_at_s`` (s from the program start)."""
    gate = config.channels["mw_gate"]
    rf: list[tuple[float, float]] = []
    t, high = 0.0, False
    for t_edge, word in [*edges, (measure_at_s, -1)]:
        t_edge = min(t_edge, measure_at_s)
        if t_edge > t and mw.rf_on(high):
            if rf and rf[-1][1] == t:
                rf[-1] = (rf[-1][0], t_edge)
            else:
                rf.append((t, t_edge))
        t = max(t, t_edge)
        if word >= 0:
            high = bool(word >> gate & 1)
    omega = config.rabi_frequency_at(mw.level_dbm)
    detuning = mw.frequency_hz - config.resonance_hz
    phase = math.radians(mw.phase_deg)
    pulses = []
    for a, b in rf:
        dt = min(b, measure_at_s) - a
        if dt > 0:
            pulses.append(RabiPulse(2 * math.pi * omega * dt, phase, 2 * math.pi * detuning * dt))
    return tuple(pulses)


class VirtualLab:
    """Emulated SMA100B and PrawnDO on ``config.host`` (ports chosen by the OS), a virtual camera,
    and the simulated atoms, joined. Use as a context manager or start()/stop()."""

    def __init__(self, config: VirtualLabConfig | None = None, *, seed: int | None = None) -> None:
        self.config = config if config is not None else VirtualLabConfig()
        self.seed = 0 if seed is None else int(seed)
        self.atoms = SimulatedAtoms(self.config.simulation, seed=self.seed)
        self.microwave_emulator = SMA100BEmulator(host=self.config.host)
        self.card_emulator = PrawnDOEmulator(host=self.config.host, time_scale=self.config.time_scale)
        h, w = self.config.frame_shape
        self.camera = VirtualCamera(sensor_width=w, sensor_height=h, adc_bits=self.config.adc_bits,
                                    serial_number=self.config.camera_serial, name="virtual lab camera")
        # what the atoms underwent, for checks; bounded so that a soak of many shots stays flat
        self.truths: deque[LabShot] = deque(maxlen=TRUTHS_KEPT)
        self.errors: list[str] = []
        self._sequences = 0
        self._simulation_s = 0.0
        # wall time (s) of the lab's whole work per program run (edges -> pulses, atoms, frames
        # handed to the camera), summed since start; the simulated atoms alone: simulation_time_s
        self.render_seconds = 0.0
        self._lock = threading.Lock()
        self._unhook: Any = None
        self._stop = threading.Event()
        self._trigger_thread: threading.Thread | None = None
        self._running = False

    @property
    def microwave_address(self) -> str:
        """VISA resource string of the emulated generator (for drivers.sma100b.SMA100B)."""
        return self.microwave_emulator.address

    @property
    def card_address(self) -> str:
        """pyserial URL of the emulated timing card (for drivers.prawndo.PrawnDO)."""
        return self.card_emulator.url

    def start(self) -> None:
        """Start the emulators (and the trigger source, if configured)."""
        if self._running:
            raise RuntimeError("virtual lab already started")
        self.microwave_emulator.start()
        try:
            self.card_emulator.start()
        except BaseException:
            self.microwave_emulator.stop()
            raise
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
        self.microwave_emulator.stop()

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
        try:
            self._render(edges)
        except Exception as exc:         # a simulation bug must surface, not kill the card thread
            log.exception("virtual lab: rendering the shot failed")
            with self._lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def _render(self, edges: Edges) -> None:
        t0 = time.perf_counter()
        try:
            self._render_shot(edges)
        finally:
            with self._lock:
                self.render_seconds += time.perf_counter() - t0

    def _render_shot(self, edges: Edges) -> None:
        with self._lock:
            self._sequences += 1
            seq = self._sequences
        ch = self.config.channels
        end = edges[-1][0] if edges else 0.0
        cams = high_intervals(edges, ch["camera"], end_s=end)
        probes = high_intervals(edges, ch["probe"], end_s=end)
        lit = [_overlap(c, probes) for c in cams]
        kinds, lit_pulses = [], []
        for p in lit:
            if p is None:
                kinds.append("dark")
                continue
            kinds.append(("atoms2", "atoms1", "ref2", "ref1")[min(len(lit_pulses), 3)])
            lit_pulses.append(p)
        default = Exposures()
        times = [p[0] for p in lit_pulses] + [default.atoms2_time_s, default.atoms1_time_s][len(lit_pulses):]
        lengths = [p[1] - p[0] for p in lit_pulses]
        lengths += [default.atoms2_pulse_s] * (4 - len(lengths))
        exposures = Exposures(times[0], max(times[1], times[0] + lengths[0]), *lengths[:4])
        mw = self.microwave_emulator.snapshot()
        try:
            pulses = pulses_from_instruments(self.config, edges, mw, exposures.atoms2_time_s)
        except ValueError as exc:       # e.g. the internal pulse generator, which is not emulated
            log.warning("virtual lab: no microwave pulse: %s", exc)
            with self._lock:
                self.errors.append(str(exc))
            pulses = ()
        t0 = time.perf_counter()
        shot = self.atoms.shot(seq - 1, pulses=pulses, exposures=exposures,
                               render=bool(cams))
        spent = time.perf_counter() - t0
        with self._lock:
            self._simulation_s += spent
            self.truths.append(LabShot(seq, mw, pulses, tuple(kinds), shot.truth))
        if shot.frames is not None:
            frames = shot.frames
            self.camera.deliver(frames[FRAME_NAMES.index(kind)] for kind in kinds)

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

    def true_counts(self) -> np.ndarray:
        """(n1, n2) of every program run so far, shape (S, 2)."""
        with self._lock:
            return np.array([(t.truth.n1, t.truth.n2) for t in self.truths], dtype=int).reshape(-1, 2)
