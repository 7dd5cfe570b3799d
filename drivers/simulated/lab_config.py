"""Configuration of the virtual lab (``[virtual_lab]`` table of a lab config): the simulated atoms,
the card's channel map, the microwave coupling (Rabi frequency vs generator level, atomic resonance),
the card's time scale, the trigger source and the virtual camera. Units in the field names.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drivers.simulated.atoms import SimulationConfig, SpinConfig
from drivers.simulated.cloud import CloudConfig
from drivers.simulated.imaging import ImagingConfig

DEFAULT_CHANNELS: dict[str, int] = {"mw_gate": 0, "probe": 1, "camera": 2, "tof_marker": 5}
FRAME_SIDE_PX = (32, 4096)      # rows and columns of a simulated frame: a cloud fits, RAM suffices
MAX_TIME_SCALE = 10.0           # real seconds per programmed second (a ~60 ms shot then takes 0.6 s)
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
    blast_channel: str = ""
    """A resonant push beam (a user channel's name; empty: none): high at any time before the
    first probe pulse, it blows every atom out, so the shot is atom-free (detection noise)."""
    load_channel: str = ""
    """The loading of the trap (a user channel's name; empty: none). A program that holds it high
    before the trap switch-off for a total time t loads ``atom_number * (1 - exp(-t / load_time_s))``
    atoms on average (the usual saturating MOT/evaporation loading curve); a program that never
    drives it gets the lab's own loading, ``atom_number`` (the card does not run the loading)."""
    load_time_s: float = 20e-3
    """The loading time constant (s) of ``load_channel``."""
    probe_levels: Mapping[str, float] = field(default_factory=dict)
    """User channels that switch the probe AOM to another RF level: channel -> the probe intensity
    I/I_sat while it is high during the first probe pulse (the whole shot, references included, is
    imaged at it; without one: the imaging's ``probe_saturation``)."""

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
        for name, top in (("time_scale", MAX_TIME_SCALE), ("trigger_period_s", 60.0)):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= top):
                raise VirtualLabConfigError(f"virtual lab {name} = {v!r}: expected a number from 0 to {top:g}")
        lo, hi = FRAME_SIDE_PX
        if not all(lo <= side <= hi for side in self.frame_shape):
            raise VirtualLabConfigError(f"virtual lab frame_shape = {list(self.frame_shape)}: expected rows "
                                        f"and columns from {lo} to {hi} px")
        if not (isinstance(self.reference_level_dbm, (int, float))
                and math.isfinite(self.reference_level_dbm)):
            raise VirtualLabConfigError(f"virtual lab reference_level_dbm = {self.reference_level_dbm!r}: "
                                        f"expected a level in dBm")
        for name, level in self.probe_levels.items():
            if name not in self.channels:
                raise VirtualLabConfigError(f"virtual lab probe_levels.{name}: not a channel of the "
                                            f"timing card ({', '.join(self.channels)})")
            if isinstance(level, bool) or not isinstance(level, (int, float)) or not (
                    math.isfinite(level) and 0 < level <= 100):
                raise VirtualLabConfigError(f"virtual lab probe_levels.{name} = {level!r}: expected a "
                                            f"probe intensity I/I_sat, > 0 and <= 100")
        if self.load_channel and self.load_channel not in self.channels:
            raise VirtualLabConfigError(f"virtual lab load_channel = {self.load_channel!r}: not a "
                                        f"channel of the timing card ({', '.join(self.channels)})")
        if not (isinstance(self.load_time_s, (int, float)) and math.isfinite(self.load_time_s)
                and 0 < self.load_time_s <= 60):
            raise VirtualLabConfigError(f"virtual lab load_time_s = {self.load_time_s!r}: expected a "
                                        f"time constant in s, > 0 and <= 60")
        if self.blast_channel and self.blast_channel not in self.channels:
            raise VirtualLabConfigError(f"virtual lab blast_channel = {self.blast_channel!r}: not a "
                                        f"channel of the timing card ({', '.join(self.channels)})")
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
        if "probe_levels" in data:
            kw["probe_levels"] = dict(_table(data.pop("probe_levels"), f"{where}.probe_levels"))
        names = {f.name for f in dataclasses.fields(cls)} - {"simulation", "channels", "probe_levels"}
        unknown = sorted(set(data) - names)
        if unknown:
            raise VirtualLabConfigError(f"{where}: unknown key(s) {unknown}; expected "
                                        f"{sorted(names | set(_STATE_KEYS) | {'frame_shape', 'cloud_centre_px', 'channels', 'probe_levels', 'cloud', 'imaging'})}")
        for key in ("rabi_frequency_hz", "reference_level_dbm", "resonance_hz", "time_scale",
                    "trigger_period_s", "load_time_s"):
            if key in data:
                value = data[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise VirtualLabConfigError(f"{where} {key} = {value!r}: expected a number")
                kw[key] = float(value)
        for key in ("adc_bits",):
            if key in data:
                kw[key] = data[key]
        for key in ("blast_channel", "load_channel"):
            if key in data:
                if not isinstance(data[key], str):
                    raise VirtualLabConfigError(f"{where} {key} = {data[key]!r}: expected a channel name")
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
