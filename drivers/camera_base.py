"""The camera interface shared by the GenICam driver and the virtual camera.

Conventions:
- Frames are 2-D numpy arrays indexed ``[row, column]`` = ``[y, x]``, in raw camera counts (ADU),
  dtype ``uint8`` for 8-bit formats and ``uint16`` for 10..16-bit formats. They are copies: they stay
  valid after the camera has reused its buffers.
- ROI: ``width``/``height``/``offset_x``/``offset_y`` in pixels of the sensor, origin top-left.
- Times in seconds (``exposure_s``, ``timeout_s``), rates in Hz, gain in dB.
- ``trigger="hardware"``: one frame per rising edge on ``trigger_line``; ``"software"``: one frame per
  ``software_trigger()`` call (or free-running if the device has no trigger at all; see ``settings()``).

A camera is used from one thread at a time (the sequencer's worker); the virtual camera additionally
accepts exposures from the virtual lab's thread.
"""
from __future__ import annotations

import abc
import math
import re
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np

from drivers.errors import InstrumentDisconnected, InstrumentTimeout

TriggerKind = Literal["hardware", "software"]
TRIGGER_KINDS: tuple[str, ...] = ("hardware", "software")
ExposureMode = Literal["timed", "trigger_width"]
EXPOSURE_MODES: tuple[str, ...] = ("timed", "trigger_width")
"""``timed``: the camera times ``exposure_s``; ``trigger_width``: the exposure lasts as long as the
trigger pulse is high (SFNC ``ExposureMode = TriggerWidth``), so the timing card sets it."""

_MONO = re.compile(r"^Mono(\d+)$")
# Interleaved colour formats we can turn into mono explicitly: name -> (channels, bits per channel).
COLOUR_FORMATS: dict[str, tuple[int, int]] = {
    "RGB8": (3, 8), "BGR8": (3, 8), "RGBa8": (4, 8), "BGRa8": (4, 8),
    "RGB16": (3, 16), "BGR16": (3, 16), "RGBa16": (4, 16), "BGRa16": (4, 16),
}


class DeviceInUse(InstrumentDisconnected):
    """The camera is already open (by this process or another one); close that handle first."""


class FrameTimeout(InstrumentTimeout):
    """Fewer frames than expected arrived before the deadline.

    ``received`` and ``expected`` count frames; ``frames`` holds the copies that did arrive.
    """

    def __init__(self, expected: int, received: int, timeout_s: float, *,
                 frames: list[np.ndarray] | None = None, instrument: str = "") -> None:
        super().__init__(f"fetch_frames(n={expected})", timeout_s, instrument=instrument)
        self.expected = expected
        self.received = received
        self.frames = frames if frames is not None else []
        self.args = (f"{self.args[0]}: {received} of {expected} frames arrived",)


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"camera configure: {name}={value!r} must be an integer")
    if value < minimum:
        raise ValueError(f"camera configure: {name}={value} must be >= {minimum}")
    return int(value)


def _positive_float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"camera configure: {name}={value!r} must be a number")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"camera configure: {name}={value!r} must be finite and > 0")
    return float(value)


@dataclass(frozen=True)
class CameraConfig:
    """A validated configure() request (what was asked, not what the device accepted)."""

    width: int
    height: int
    offset_x: int = 0
    offset_y: int = 0
    pixel_format: str | None = None
    exposure_s: float | None = None
    trigger: TriggerKind = "hardware"
    trigger_line: str = "Line0"
    frames_per_shot: int = 1
    gain_db: float | None = None
    frame_rate_hz: float | None = None
    exposure_mode: ExposureMode = "timed"

    def __post_init__(self) -> None:
        _int("width", self.width, 1)
        _int("height", self.height, 1)
        _int("offset_x", self.offset_x, 0)
        _int("offset_y", self.offset_y, 0)
        _int("frames_per_shot", self.frames_per_shot, 1)
        _positive_float("exposure_s", self.exposure_s)
        _positive_float("frame_rate_hz", self.frame_rate_hz)
        if self.gain_db is not None and (isinstance(self.gain_db, bool) or not isinstance(
                self.gain_db, (int, float)) or not math.isfinite(self.gain_db)):
            raise ValueError(f"camera configure: gain_db={self.gain_db!r} must be a finite number")
        if self.exposure_mode not in EXPOSURE_MODES:
            raise ValueError(f"camera configure: exposure_mode={self.exposure_mode!r}, expected one of "
                             f"{EXPOSURE_MODES}")
        if self.exposure_mode == "trigger_width" and self.trigger != "hardware":
            raise ValueError("camera configure: exposure_mode='trigger_width' needs trigger='hardware'")
        if self.trigger not in TRIGGER_KINDS:
            raise ValueError(f"camera configure: trigger={self.trigger!r}, expected one of {TRIGGER_KINDS}")
        if not isinstance(self.trigger_line, str) or not self.trigger_line:
            raise ValueError(f"camera configure: trigger_line={self.trigger_line!r} must be a line name")
        if self.pixel_format is not None and not isinstance(self.pixel_format, str):
            raise ValueError(f"camera configure: pixel_format={self.pixel_format!r} must be a string")


@dataclass(frozen=True)
class CameraIdentity:
    """Who the camera is, for run files."""

    vendor: str
    model: str
    serial_number: str
    device_id: str
    version: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class CameraFeatures:
    """Which optional features the device offers (detected from its node map)."""

    exposure: bool
    gain: bool
    offsets: bool
    frame_rate: bool
    hardware_trigger: bool
    software_trigger: bool
    trigger_selectors: tuple[str, ...]
    trigger_lines: tuple[str, ...]
    pixel_formats: tuple[str, ...]
    trigger_width: bool = False     # ExposureMode TriggerWidth offered

    @property
    def mono16(self) -> bool:
        return "Mono16" in self.pixel_formats

    def missing(self) -> list[str]:
        """Names of the optional features this device lacks, e.g. ``["exposure", "Mono16"]``."""
        flags = {"exposure": self.exposure, "gain": self.gain, "offsets": self.offsets,
                 "frame_rate": self.frame_rate, "hardware_trigger": self.hardware_trigger,
                 "software_trigger": self.software_trigger, "Mono16": self.mono16}
        return [name for name, present in flags.items() if not present]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mono16"] = self.mono16
        d["trigger_selectors"] = list(self.trigger_selectors)
        d["trigger_lines"] = list(self.trigger_lines)
        d["pixel_formats"] = list(self.pixel_formats)
        return d


@dataclass(frozen=True)
class CameraTiming:
    """How soon after one exposure the camera can start the next, at the configured ROI, exposure
    and pixel format, from the camera's own limits.

    ``min_frame_interval_s``: the shortest time (s) between the starts of two exposures, None if the
    device states no limit at all; ``limit``: which limit sets it, in words with its value (e.g.
    ``"AcquisitionFrameRate maximum 200 Hz at 400x400 Mono8"``); ``frame_ids``: True if the camera
    numbers its frames (``frame_ids()``); ``first_frame_id``: the id of the first frame after
    ``start()`` if the device restarts its count there, else None.
    """

    min_frame_interval_s: float | None
    limit: str
    frame_ids: bool = False
    first_frame_id: int | None = None


def mono_bits(pixel_format: str) -> int | None:
    """Bit depth of an unpacked ``MonoN`` format, or None for anything else (packed, colour)."""
    m = _MONO.match(pixel_format)
    return int(m.group(1)) if m else None


def choose_pixel_format(available: tuple[str, ...] | list[str], requested: str | None) -> str:
    """Pick the pixel format to use.

    ``requested`` must be available (ValueError otherwise). With None: Mono16 if offered, else the
    widest unpacked MonoN, else an interleaved colour format (later converted to mono explicitly).
    """
    if requested is not None:
        if requested not in available:
            raise ValueError(f"camera configure: pixel_format={requested!r} is not offered by the device; "
                             f"available: {list(available)}")
        if mono_bits(requested) is None and requested not in COLOUR_FORMATS:
            raise ValueError(f"camera configure: pixel_format={requested!r} is not supported (use an "
                             f"unpacked MonoN or one of {sorted(COLOUR_FORMATS)})")
        return requested
    monos = sorted((b, f) for f in available if (b := mono_bits(f)) is not None and b <= 16)
    if monos:
        return "Mono16" if "Mono16" in available else monos[-1][1]
    colour = [f for f in available if f in COLOUR_FORMATS]
    if colour:
        return max(colour, key=lambda f: COLOUR_FORMATS[f][1])
    raise ValueError(f"camera: no usable pixel format among {list(available)} "
                     f"(need an unpacked MonoN or one of {sorted(COLOUR_FORMATS)})")


def frame_dtype(pixel_format: str) -> np.dtype:
    """numpy dtype of a delivered frame: uint8 up to 8 bits, uint16 up to 16 bits."""
    bits = mono_bits(pixel_format)
    if bits is None:
        if pixel_format not in COLOUR_FORMATS:
            raise ValueError(f"camera: unsupported pixel format {pixel_format!r}")
        bits = COLOUR_FORMATS[pixel_format][1]
    if bits <= 8:
        return np.dtype(np.uint8)
    if bits <= 16:
        return np.dtype(np.uint16)
    raise ValueError(f"camera: pixel format {pixel_format!r} wider than 16 bits is not supported")


def colour_to_mono(image: np.ndarray, pixel_format: str) -> np.ndarray:
    """Mono image of an interleaved colour frame ``(h, w, channels)``: the mean of R, G, B, rounded.

    The alpha channel is ignored; the result keeps the input dtype. Used only when the device offers
    no mono format (equal weights, not a luminance: the camera is a photon counter here).
    """
    channels, _ = COLOUR_FORMATS[pixel_format]
    if image.ndim != 3 or image.shape[2] != channels:
        raise ValueError(f"colour_to_mono: expected shape (h, w, {channels}) for {pixel_format}, "
                         f"got {image.shape}")
    rgb = image[:, :, :3].astype(np.uint32).sum(axis=2)
    return ((rgb + 1) // 3).astype(image.dtype)


class Camera(abc.ABC):
    """What the sequencer needs from a camera; ``GenICamCamera`` and ``VirtualCamera`` implement it.

    Lifecycle: ``connect()`` -> ``configure(...)`` -> ``start()`` -> (``software_trigger()``) ->
    ``fetch_frames(n, timeout_s)`` ... -> ``stop()`` -> ``close()``. ``with camera:`` connects and
    always closes. Nothing happens on the device before ``connect()``.
    """

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the device; raises InstrumentDisconnected (or DeviceInUse) if it cannot."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop acquisition and release the device; safe to call twice and after errors."""

    def configure(self, *, width: int, height: int, offset_x: int = 0, offset_y: int = 0,
                  pixel_format: str | None = None, exposure_s: float | None = None,
                  trigger: TriggerKind = "hardware", trigger_line: str = "Line0",
                  frames_per_shot: int = 1, gain_db: float | None = None,
                  frame_rate_hz: float | None = None, exposure_mode: ExposureMode = "timed") -> None:
        """Set ROI (pixels), pixel format, exposure (s), gain (dB), trigger and frames per shot.

        Requested optional features the device lacks are logged as warnings and left out (see
        ``features()`` and ``settings()``); bad values raise ValueError naming the field.
        """
        self._apply(CameraConfig(width=width, height=height, offset_x=offset_x, offset_y=offset_y,
                                 pixel_format=pixel_format, exposure_s=exposure_s, trigger=trigger,
                                 trigger_line=trigger_line, frames_per_shot=frames_per_shot,
                                 gain_db=gain_db, frame_rate_hz=frame_rate_hz,
                                 exposure_mode=exposure_mode))

    @abc.abstractmethod
    def _apply(self, config: CameraConfig) -> None:
        """Apply a validated configuration to the device."""

    @abc.abstractmethod
    def features(self) -> CameraFeatures:
        """The optional features the connected device has."""

    @abc.abstractmethod
    def start(self) -> None:
        """Arm the camera: from now on triggers produce frames."""

    @abc.abstractmethod
    def software_trigger(self) -> None:
        """Expose one frame now (only with ``trigger="software"``)."""

    @abc.abstractmethod
    def fetch_frames(self, n: int, timeout_s: float) -> list[np.ndarray]:
        """The next ``n`` frames as 2-D copies; FrameTimeout if fewer arrive within ``timeout_s`` s."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop acquisition; pending frames are discarded. Safe to call when not started."""

    @abc.abstractmethod
    def identity(self) -> CameraIdentity:
        """Vendor, model, serial number, device id, version."""

    @abc.abstractmethod
    def settings(self) -> dict[str, Any]:
        """Read-back settings (plain JSON-able values) for the run file."""

    def timing(self) -> CameraTiming:
        """The camera's frame-interval limit at the current configuration (see ``CameraTiming``)."""
        return CameraTiming(None, "the driver reads no timing limits from this camera")

    def frame_ids(self) -> list[int]:
        """The device's ids of the frames fetched since ``start()``, in order (empty if it has none)."""
        return []

    def frame_timestamps(self) -> list[float]:
        """The device's timestamps (s, its own clock) of the frames fetched since ``start()``, in
        order, for the frames that carry one (empty if the device gives none)."""
        return []


def check_fetch_args(n: int, timeout_s: float) -> None:
    """ValueError unless ``n`` is a positive integer and ``timeout_s`` a finite positive time in s."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"fetch_frames: n={n!r} must be an integer >= 1")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) \
            or not math.isfinite(timeout_s) or timeout_s <= 0:
        raise ValueError(f"fetch_frames: timeout_s={timeout_s!r} must be finite and > 0 "
                         f"(a fetch without a timeout can hang forever)")
