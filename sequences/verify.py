"""Per-shot settings verification: what the plan asked for, compared with what the instruments read back.

After every shot the sequencer reads the instruments back and compares, with these tolerances
(the instruments' resolutions; a read-back outside them is a mismatch):

| setting | asked | tolerance |
| --- | --- | --- |
| ``mw.frequency_hz`` | the plan's carrier | the source's resolution (SMA100B 1 mHz, SynthHD 0.1 Hz) |
| ``mw.level_dbm`` | the plan's level | 0.01 dB |
| ``mw.phase_deg`` | the axis phase of the shot (if its pulse is > 0) | SMA100B 0.01, SynthHD 0.001 degree |
| the source's ``fixed_settings`` (SMA100B: ``power_unit`` DBM, ``pulse_source`` EXT, ``pulse_polarity`` NORM, ``pulse_modulation_enabled``; SynthHD: PLL/PA on, trigger function 4, no inversion) | as declared | exact |
| ``mw.output_enabled`` | True | exact |
| ``mw.error_queue`` | empty | exact: any queued instrument error fails the shot |
| ``card.status`` | ``STOPPED`` after the shot | exact (``ABORTED`` means another host aborted it) |
| ``card.instructions`` | the length of the shot's program | exact |
| ``camera.trigger``, ``camera.trigger_source`` | the configured trigger and line | exact |
| ``camera.width/height/offset_x/offset_y`` | the configured ROI | exact |
| ``camera.exposure_mode`` | ``timed`` or ``trigger_width`` (lab config) | exact |
| ``camera.exposure_s`` | the plan's exposure (timed mode) | 1 % or 2 us, the larger (cameras quantise it) |

A setting the driver does not read back (absent from its read-back, or None because the device
lacks the feature, e.g. no exposure node) is not compared; the camera check before the run
(``sequences/camera_check.py``) refuses devices that lack what a run needs.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sequences.instruments import SequencerConfig
from sequences.plan import RunPlan

FREQUENCY_TOL_HZ = 1e-3
LEVEL_TOL_DB = 0.01
PHASE_TOL_DEG = 0.01
EXPOSURE_REL_TOL = 0.01
EXPOSURE_ABS_TOL_S = 2e-6
VERIFIED_CAMERA_KEYS = ("camera.trigger", "camera.trigger_source", "camera.width", "camera.height",
                        "camera.offset_x", "camera.offset_y", "camera.exposure_mode",
                        "camera.exposure_s")
"""The camera read-back compared every shot (and stored with the ok row)."""


@dataclass(frozen=True)
class Expected:
    """One setting the plan asks for: ``name`` (``mw.frequency_hz``), ``value``, ``instrument``
    ('microwave', 'timing_card' or 'camera'), absolute ``tolerance`` (numbers; 0 = exact) in ``unit``,
    optional ``relative`` tolerance (fraction of the asked value; the larger one applies)."""

    name: str
    value: object
    instrument: str
    tolerance: float = 0.0
    unit: str = ""
    relative: float = 0.0

    def allowed(self) -> float:
        """The tolerance that applies, in ``unit``."""
        if isinstance(self.value, (int, float)) and not isinstance(self.value, bool):
            return max(self.tolerance, self.relative * abs(float(self.value)))
        return 0.0

    def matches(self, read: object) -> bool:
        """True if ``read`` equals the asked value within the tolerance."""
        asked = self.value
        if isinstance(asked, bool) or isinstance(read, bool) or not isinstance(asked, (int, float)):
            return type(read) is type(asked) and read == asked
        if not isinstance(read, (int, float)) or not math.isfinite(float(read)):
            return False
        return abs(float(read) - float(asked)) <= self.allowed() * (1 + 1e-9)


@dataclass(frozen=True)
class Mismatch:
    """A setting read back outside its tolerance (or an instrument error in its queue)."""

    expected: Expected
    read: object

    def __str__(self) -> str:
        e = self.expected
        unit = f" {e.unit}" if e.unit else ""
        tol = f", tolerance {_fmt(e.allowed())}{unit}" if e.allowed() else ""
        return f"{e.name} asked {_fmt(e.value)}{unit}, read {_fmt(self.read)}{unit}{tol}"


class SettingsMismatch(Exception):
    """The read-back settings of a shot differ from the plan; ``mismatches`` lists each one."""

    def __init__(self, mismatches: list[Mismatch]) -> None:
        self.mismatches = mismatches
        self.settings: dict[str, bool | int | float | str] = {}
        self.instruments = sorted({m.expected.instrument for m in mismatches})
        super().__init__(f"{', '.join(self.instruments)}: settings differ from the plan: "
                         + "; ".join(str(m) for m in mismatches))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.12g}"
    return str(value)


def compare(expected: Iterable[Expected], read: Mapping[str, object]) -> list[Mismatch]:
    """Every expected setting whose read-back differs; names absent from ``read`` or read as None
    are skipped (not read back by this driver/device)."""
    out = []
    for e in expected:
        if e.name not in read or read[e.name] is None:
            continue
        if not e.matches(read[e.name]):
            out.append(Mismatch(e, read[e.name]))
    return out


def microwave_expected(*, frequency_hz: float, level_dbm: float, phase_deg: float | None,
                       fixed: Mapping[str, object],
                       resolution: Mapping[str, float] | None = None) -> list[Expected]:
    """What the sequencer sets on the microwave source for one shot (``phase_deg`` None: not set):
    the source's ``fixed`` settings (exact), carrier, level and phase within the source's
    ``resolution`` (default: the SMA100B's), RF on."""
    res = {"frequency_hz": FREQUENCY_TOL_HZ, "level_dbm": LEVEL_TOL_DB, "phase_deg": PHASE_TOL_DEG}
    res.update(resolution or {})
    out = [Expected(f"mw.{name}", value, "microwave") for name, value in fixed.items()]
    out += [Expected("mw.frequency_hz", float(frequency_hz), "microwave", res["frequency_hz"], "Hz"),
            Expected("mw.level_dbm", float(level_dbm), "microwave", res["level_dbm"], "dBm")]
    if phase_deg is not None:
        out.append(Expected("mw.phase_deg", float(phase_deg), "microwave", res["phase_deg"], "deg"))
    out.append(Expected("mw.output_enabled", True, "microwave"))
    return out


def card_expected(*, instructions: int) -> list[Expected]:
    """After a shot the card has stopped by itself, with the shot's program in memory."""
    return [Expected("card.status", "STOPPED", "timing_card"),
            Expected("card.instructions", int(instructions), "timing_card")]


def camera_expected(*, width: int, height: int, offset_x: int, offset_y: int,
                    exposure_s: float | None, trigger: str, trigger_line: str,
                    exposure_mode: str = "timed") -> list[Expected]:
    """The camera's configured trigger, ROI, exposure mode and (timed) exposure."""
    out = [Expected("camera.trigger", trigger, "camera"),
           Expected("camera.trigger_source", trigger_line if trigger == "hardware" else "Software",
                    "camera"),
           Expected("camera.width", int(width), "camera"), Expected("camera.height", int(height), "camera"),
           Expected("camera.offset_x", int(offset_x), "camera"),
           Expected("camera.offset_y", int(offset_y), "camera"),
           Expected("camera.exposure_mode", exposure_mode, "camera")]
    if exposure_s is not None and exposure_mode == "timed":
        out.append(Expected("camera.exposure_s", float(exposure_s), "camera", EXPOSURE_ABS_TOL_S, "s",
                            relative=EXPOSURE_REL_TOL))
    return out


def error_queue_mismatch(errors: list[tuple[int, str]]) -> Mismatch | None:
    """A mismatch naming the queued instrument errors (None if the queue was empty)."""
    if not errors:
        return None
    text = ", ".join(f'{code},"{msg}"' for code, msg in errors)
    return Mismatch(Expected("mw.error_queue", "empty", "microwave"), text)


def check_shot(read: Mapping[str, Any], errors: list[tuple[int, str]], *, plan: RunPlan,
               config: SequencerConfig, phase_deg: float | None, instructions: int,
               camera_trigger: str, fixed: Mapping[str, object],
               resolution: Mapping[str, float] | None = None) -> None:
    """Raise SettingsMismatch (with ``settings``: the scalar read-back, for the failed row) unless
    the read-back ``read`` (``mw.*``, ``card.*``, ``camera.*``) matches the plan and ``errors``
    (the microwave error queue) is empty."""
    c = config
    expected = microwave_expected(frequency_hz=plan.microwave.frequency_hz,
                                  level_dbm=plan.microwave.power_dbm, phase_deg=phase_deg,
                                  fixed=fixed, resolution=resolution)
    expected += card_expected(instructions=instructions)
    expected += camera_expected(width=c.camera_width, height=c.camera_height,
                                offset_x=c.camera_offset_x, offset_y=c.camera_offset_y,
                                exposure_s=plan.imaging.camera_exposure_s,
                                trigger=camera_trigger, trigger_line=c.camera_trigger_line,
                                exposure_mode=c.camera_exposure_mode)
    mismatches = compare(expected, read)
    queued = error_queue_mismatch(errors)
    if queued is not None:
        mismatches.append(queued)
    if mismatches:
        failure = SettingsMismatch(mismatches)
        failure.settings = {k: v for k, v in read.items() if isinstance(v, (bool, int, float, str))}
        raise failure
