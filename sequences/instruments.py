"""The instruments a run uses, what the sequencer needs from each, and their set-up per run.

The sequencer talks to the drivers' public APIs: ``drivers.sma100b.SMA100B`` (or any SCPI source
with the same controls), ``drivers.prawndo.PrawnDO`` and a ``drivers.camera_base.Camera``
(``GenICamCamera`` or the virtual camera). The protocols below name exactly what is used.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from drivers.camera_base import Camera

StartMode = Literal["software", "hardware"]


class Microwave(Protocol):
    """The microwave source (entry-point group ``steerlab.microwave_sources``): carrier (Hz), level
    (dBm), phase (deg), RF output, the source-specific ``fixed_settings`` that gate the RF with the
    timing card's TTL (high = on), each set by name with ``setattr``, and their read-back.

    ``resolution``: per setting name, the instrument's resolution (the read-back tolerance).
    """

    address: str
    frequency_hz: float
    level_dbm: float
    phase_deg: float
    output_enabled: bool
    fixed_settings: Mapping[str, object]
    resolution: Mapping[str, float]

    @property
    def identity(self) -> str: ...
    @property
    def connected(self) -> bool: ...
    def connect(self) -> None: ...
    def reconnect(self) -> None: ...

    def close(self) -> None: ...
    def settings(self) -> dict[str, object]: ...
    def wait_complete(self) -> None:
        """Block until the settings sent so far are in effect (SCPI ``*OPC?``)."""
    def drain_errors(self) -> list[tuple[int, str]]:
        """Empty the instrument's error queue: every ``(code, text)``, oldest first."""


class TimingCard(Protocol):
    """The timing card: program, start (software) or arm (hardware trigger), status, abort."""

    address: str

    @property
    def connected(self) -> bool: ...
    @property
    def max_instructions(self) -> int: ...
    @property
    def clock_hz(self) -> float: ...
    def connect(self) -> None: ...
    def reconnect(self) -> None: ...

    def close(self) -> None: ...
    def version(self) -> str: ...
    def board(self) -> str: ...
    def program(self, instructions: Any, *, upload: Any = "auto") -> str: ...
    def verify(self, instructions: Any) -> None: ...
    def start(self) -> None: ...
    def arm(self) -> None: ...
    def abort(self) -> bool: ...
    def status(self) -> Any: ...
    def program_length(self) -> int: ...
    def wait_until_stopped(self, timeout_s: float, *, poll_s: float = 0.01) -> Any: ...


class StatePreparer(Protocol):
    """The virtual lab's atoms: prepares the plan's ``[state]`` (a ``sequences.plan.StateSpec``)
    for the following shots. A real lab has none (its atoms are set by its own channels)."""

    def prepare_state(self, state: Any) -> None: ...


@dataclass
class Instruments:
    """The three instruments of a run (opened and closed by the caller); ``state``: the virtual
    lab's state preparation (None on a real lab), used when a scan varies ``state.*``."""

    microwave: Microwave
    card: TimingCard
    camera: Camera
    state: StatePreparer | None = None


SOFTWARE_TRIGGER_AT = ("exposures", "program_end")


@dataclass(frozen=True)
class SequencerConfig:
    """How the sequencer drives the instruments (from the lab configuration, not the plan).

    ``channels``: card channel map (mw_gate, probe, camera, optional tof_marker, and the lab's own
    channels -> output bit); ``idle_high``: the channels whose idle level is high (active low).
    Camera ROI in sensor pixels; ``start_mode``: 'software' (the card starts on ``swr``) or
    'hardware' (armed, started by the experiment's trigger). ``card_margin_s``: time allowed beyond
    the program's duration for the card to stop. ``fetch_slice_s``: frames are awaited in slices
    this long so that an abort is noticed quickly. ``allow_software_trigger``: a camera without a
    hardware trigger may serve the run (bench tests); the sequencer then sends software triggers at
    the shot's exposure times (otherwise such a camera is refused before the run).
    ``software_trigger_at``: when those triggers are sent: ``"exposures"`` (at the exposure times
    after the card's start) or ``"program_end"`` (one per frame once the card has stopped: for a
    camera emulator that exposes the images a lab emulator wrote for the program just run, e.g.
    pylon's CamEmu in the emulated real lab; a real camera would see no atoms then).
    """

    channels: Mapping[str, int]
    camera_width: int
    camera_height: int
    camera_offset_x: int = 0
    camera_offset_y: int = 0
    camera_pixel_format: str | None = None
    camera_trigger_line: str = "Line0"
    camera_exposure_mode: str = "timed"
    start_mode: StartMode = "software"
    verify_program: bool = True
    card_margin_s: float = 2.0
    fetch_slice_s: float = 0.1
    rf_off_at_end: bool = True
    allow_software_trigger: bool = False
    software_trigger_at: str = "exposures"
    idle_high: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.start_mode not in ("software", "hardware"):
            raise ValueError(f"start_mode = {self.start_mode!r}: expected 'software' or 'hardware'")
        if self.software_trigger_at not in SOFTWARE_TRIGGER_AT:
            raise ValueError(f"software_trigger_at = {self.software_trigger_at!r}: expected one of "
                             f"{SOFTWARE_TRIGGER_AT}")
        for name in ("card_margin_s", "fetch_slice_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} = {value!r}: expected a time in s (> 0)")
        if self.camera_width < 1 or self.camera_height < 1:
            raise ValueError(f"camera ROI {self.camera_width}x{self.camera_height}: expected >= 1")


def flat_settings(prefix: str, values: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    """``{prefix.name: scalar}``; nested or list values become JSON strings, None an empty string."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}"
        if isinstance(value, (bool, int, float, str)) and not (
                isinstance(value, float) and not math.isfinite(value)):
            out[name] = value
        elif value is None:
            out[name] = ""
        else:
            out[name] = json.dumps(value, sort_keys=True, default=str)
    return out
