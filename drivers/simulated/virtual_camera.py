"""A virtual camera with the driver interface of ``GenICamCamera``, fed by the virtual lab.

Exposure model: the camera exposes only when triggered.
- ``trigger="hardware"``: the virtual lab calls ``expose(frame)`` (or ``deliver(frames)``) at the
  times the emulated timing card's camera channel fired; each call is one edge on the trigger line.
  Edges while the camera is not armed (not started, or set to software trigger) are missed, as on a
  real camera, and counted.
- ``trigger="software"``: ``software_trigger()`` asks ``frame_source()`` for a frame.
Frames handed in are full-sensor images ``(sensor_height, sensor_width)`` in native ADC counts
(``adc_bits``, 16 by default: the simulated atoms render uint16 counts). The camera cuts the ROI and
converts to the pixel format: MonoN with N < adc_bits keeps the N most significant bits (value >>
(adc_bits - N)), as real cameras do; values are rounded and clipped to the ADC range first.

Timing model (``timing()``): a global-shutter sensor whose readout does not overlap the exposure:
two exposures can start ``exposure_s + frame_overhead_s + row_time_s x height`` apart at the
configured ROI (2 us per row and 20 us by default: 0.63 ms for 256 rows and 100 us). Frame ids
count every exposure from 1 after each ``start()``, lost frames included, as a device's frame
counter does (``frame_ids()``).

Faults (switches for tests and the virtual lab): ``drop_next_frames(k)`` loses the next k exposures,
``set_delivery_delay(s)`` makes frames available only s seconds after exposure, ``unplug()`` loses the
device (every call raises InstrumentDisconnected until ``plug_in()`` and a new ``connect()``).

Thread safety: ``expose``/``deliver`` may run on the virtual lab's thread while the sequencer calls
``fetch_frames``; frames are queued under a lock and fetched with a timeout. No threads are started.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.camera_base import (Camera, CameraConfig, CameraFeatures, CameraIdentity, CameraTiming,
                                 FrameTimeout, check_fetch_args, choose_pixel_format, frame_dtype,
                                 mono_bits)
from drivers.patience import Patience, no_patience
from drivers.errors import InstrumentDisconnected

log = logging.getLogger(__name__)

FrameSource = Callable[[], np.ndarray]


@dataclass
class VirtualCameraStats:
    """What happened to the triggers: counts since connect()."""

    exposures_queued: int = 0
    triggers_missed: int = 0     # edges while not armed for them
    frames_dropped: int = 0      # lost by the drop_next_frames fault
    frames_overflowed: int = 0   # lost because every buffer was full


class VirtualCamera(Camera):
    """Virtual camera: ``sensor_width`` x ``sensor_height`` pixels, ``adc_bits``-bit ADC.

    ``pixel_formats``: the MonoN formats offered (N <= adc_bits). ``frame_source``: callable giving
    a full-sensor frame for each software trigger. ``buffer_count``: frames held before new
    exposures overflow (default: twice ``frames_per_shot``, at least 4).
    """

    def __init__(self, *, sensor_width: int = 256, sensor_height: int = 256, adc_bits: int = 16,
                 pixel_formats: tuple[str, ...] = ("Mono8", "Mono12", "Mono16"),
                 trigger_lines: tuple[str, ...] = ("Line0", "Line1", "Line2", "Line3"),
                 exposure_range_s: tuple[float, float] = (10e-6, 10.0),
                 serial_number: str = "VC0001", frame_source: FrameSource | None = None,
                 buffer_count: int | None = None, name: str = "virtual camera",
                 row_time_s: float = 2e-6, frame_overhead_s: float = 20e-6,
                 trigger_width: bool = False) -> None:
        if not (1 <= adc_bits <= 16):
            raise ValueError(f"VirtualCamera: adc_bits={adc_bits} must be in 1..16")
        if sensor_width < 1 or sensor_height < 1:
            raise ValueError(f"VirtualCamera: sensor {sensor_width}x{sensor_height} must be >= 1x1")
        for f in pixel_formats:
            bits = mono_bits(f)
            if bits is None or bits > adc_bits:
                raise ValueError(f"VirtualCamera: pixel format {f!r} must be MonoN with N <= adc_bits={adc_bits}")
        if not (row_time_s >= 0 and frame_overhead_s >= 0):
            raise ValueError(f"VirtualCamera: row_time_s={row_time_s!r} and frame_overhead_s="
                             f"{frame_overhead_s!r} must be >= 0 s")
        if buffer_count is not None and buffer_count < 1:
            raise ValueError(f"VirtualCamera: buffer_count={buffer_count} must be >= 1")
        self.sensor_shape = (int(sensor_height), int(sensor_width))
        self.adc_bits = adc_bits
        self.name = name
        self._formats = tuple(pixel_formats)
        self._lines = tuple(trigger_lines)
        self._exposure_range_s = exposure_range_s
        self._identity = CameraIdentity(vendor="steerlab", model="VirtualCamera",
                                        serial_number=serial_number, device_id=f"virtual-{serial_number}",
                                        version="1")
        self._frame_source = frame_source
        self._buffer_count = buffer_count
        self._cond = threading.Condition()
        # how late the simulation rendering the frames is (the virtual lab sets it, lateness.py):
        # the sequencer's frame deadline waits for it; fetch_frames' own timeout is exact
        self.patience: Patience = no_patience
        self._queue: deque[tuple[float, int, float | None, np.ndarray]] = deque()  # (available at, id, ts, frame)
        self.row_time_s, self.frame_overhead_s = float(row_time_s), float(frame_overhead_s)
        self._trigger_width = bool(trigger_width)
        self._next_id = 1
        self._fetched_ids: list[int] = []
        self._fetched_ts: list[float] = []
        self._connected = False
        self._unplugged = False
        self._acquiring = False
        self._config: CameraConfig | None = None
        self._pixel_format = ""
        self._drop_next = 0
        self._delay_s = 0.0
        self.stats = VirtualCameraStats()

    # -- fault switches --------------------------------------------------------------------------
    def drop_next_frames(self, k: int) -> None:
        """Lose the next ``k`` exposures (the trigger arrives, no frame is delivered)."""
        if k < 0:
            raise ValueError(f"drop_next_frames: k={k} must be >= 0")
        with self._cond:
            self._drop_next = k

    def set_delivery_delay(self, delay_s: float) -> None:
        """Make each frame available ``delay_s`` s after its exposure (0: at once)."""
        if not delay_s >= 0:
            raise ValueError(f"set_delivery_delay: delay_s={delay_s!r} must be >= 0")
        with self._cond:
            self._delay_s = float(delay_s)

    def unplug(self) -> None:
        """Lose the device: queued frames vanish, a waiting fetch and every later call raise."""
        with self._cond:
            self._unplugged = True
            self._acquiring = False
            self._queue.clear()
            self._cond.notify_all()

    def plug_in(self) -> None:
        """Undo ``unplug()``; the camera must then be reopened (``close()``/``connect()``)."""
        with self._cond:
            self._unplugged = False

    def clear_faults(self) -> None:
        """No drops, no delay, plugged in."""
        with self._cond:
            self._drop_next, self._delay_s, self._unplugged = 0, 0.0, False

    # -- state the virtual lab reads -------------------------------------------------------------
    @property
    def armed_for_hardware_trigger(self) -> bool:
        with self._cond:
            return self._acquiring and self._config is not None and self._config.trigger == "hardware"

    @property
    def config(self) -> CameraConfig | None:
        """The active configuration (exposure_s, trigger_line, ROI ...), or None."""
        return self._config

    def set_frame_source(self, source: FrameSource | None) -> None:
        self._frame_source = source

    # -- Camera interface ------------------------------------------------------------------------
    def _check_link(self) -> None:
        """Caller holds the lock."""
        if self._unplugged:
            raise InstrumentDisconnected("device lost (unplugged)", instrument=self.name)
        if not self._connected:
            raise InstrumentDisconnected("camera not open: call connect()", instrument=self.name)

    def connect(self) -> None:
        with self._cond:
            if self._unplugged:
                raise InstrumentDisconnected(f"no device with serial {self._identity.serial_number!r} "
                                             f"(unplugged)", instrument=self.name)
            if self._connected:
                return
            self._connected = True
            self._acquiring = False
            self._queue.clear()
            self._config = None
            self.stats = VirtualCameraStats()

    def close(self) -> None:
        with self._cond:
            self._connected = False
            self._acquiring = False
            self._config = None
            self._queue.clear()
            self._cond.notify_all()

    def features(self) -> CameraFeatures:
        with self._cond:
            self._check_link()
        return CameraFeatures(exposure=True, gain=False, offsets=True, frame_rate=False,
                              hardware_trigger=bool(self._lines), software_trigger=True,
                              trigger_selectors=("FrameStart",), trigger_lines=self._lines,
                              pixel_formats=self._formats, trigger_width=self._trigger_width)

    def _apply(self, cfg: CameraConfig) -> None:
        fmt = choose_pixel_format(self._formats, cfg.pixel_format)
        h, w = self.sensor_shape
        if cfg.offset_x + cfg.width > w or cfg.offset_y + cfg.height > h:
            raise ValueError(f"camera configure: ROI {cfg.width}x{cfg.height} at ({cfg.offset_x}, "
                             f"{cfg.offset_y}) exceeds the {w}x{h} sensor")
        lo, hi = self._exposure_range_s
        if cfg.exposure_s is not None and not lo <= cfg.exposure_s <= hi:
            raise ValueError(f"camera configure: exposure_s={cfg.exposure_s:g} outside {lo:g}..{hi:g}")
        if cfg.trigger == "hardware" and cfg.trigger_line not in self._lines:
            raise ValueError(f"camera configure: trigger_line={cfg.trigger_line!r} not offered; "
                             f"lines: {list(self._lines)}")
        if cfg.exposure_mode == "trigger_width" and not self._trigger_width:
            raise ValueError("camera configure: exposure_mode='trigger_width': not offered by this "
                             "camera (VirtualCamera(trigger_width=True) offers it)")
        if cfg.gain_db is not None:
            log.warning("%s: no gain (the rendered frames carry the camera gain): gain_db ignored", self.name)
        if cfg.frame_rate_hz is not None:
            log.warning("%s: no free-running mode: frame_rate_hz ignored", self.name)
        with self._cond:
            self._check_link()
            if self._acquiring:
                raise RuntimeError(f"{self.name}: call stop() before configure()")
            self._config, self._pixel_format = cfg, fmt

    def start(self) -> None:
        with self._cond:
            self._check_link()
            if self._config is None:
                raise RuntimeError(f"{self.name}: call configure() before start()")
            if not self._acquiring:
                self._next_id, self._fetched_ids, self._fetched_ts = 1, [], []
            self._acquiring = True

    def stop(self) -> None:
        with self._cond:
            self._acquiring = False
            self._queue.clear()
            self._cond.notify_all()

    def software_trigger(self) -> None:
        with self._cond:
            self._check_link()
            if not self._acquiring or self._config is None:
                raise RuntimeError(f"{self.name}: software_trigger() before start()")
            if self._config.trigger != "software":
                raise RuntimeError(f"{self.name}: configured for hardware trigger")
        if self._frame_source is None:
            raise RuntimeError(f"{self.name}: software trigger needs a frame_source")
        self._accept(self._frame_source(), "software", time.monotonic())

    def expose(self, frame: np.ndarray, at_s: float | None = None) -> bool:
        """One trigger edge with the full-sensor image it exposes; True if a frame was queued.
        ``at_s``: the edge's time on the device clock (s), reported as the frame's timestamp."""
        return self._accept(frame, "hardware", at_s)

    def deliver(self, frames: Iterable[np.ndarray], times_s: Iterable[float] | None = None) -> int:
        """Several edges in order (e.g. a shot's frames, with their edge times in s); returns how
        many frames were queued."""
        if times_s is None:
            return sum(self.expose(f) for f in frames)
        return sum(self.expose(f, t) for f, t in zip(frames, times_s, strict=True))

    def _accept(self, frame: np.ndarray, kind: str, at_s: float | None = None) -> bool:
        frame = np.asarray(frame)
        if frame.shape != self.sensor_shape:
            raise ValueError(f"{self.name}: exposed frame has shape {frame.shape}, the sensor is "
                             f"{self.sensor_shape} (rows, columns)")
        with self._cond:
            cfg, fmt = self._config, self._pixel_format
            if not (self._connected and not self._unplugged and self._acquiring
                    and cfg is not None and cfg.trigger == kind):
                self.stats.triggers_missed += 1
                return False
        image = self._digitise(frame, cfg, fmt)
        with self._cond:
            if not self._acquiring or self._config is not cfg:  # stopped meanwhile
                self.stats.triggers_missed += 1
                return False
            frame_id, self._next_id = self._next_id, self._next_id + 1
            if self._drop_next > 0:
                self._drop_next -= 1
                self.stats.frames_dropped += 1
                return False
            capacity = self._buffer_count or max(4, 2 * cfg.frames_per_shot)
            if len(self._queue) >= capacity:
                self.stats.frames_overflowed += 1
                log.warning("%s: all %d buffers full: frame lost", self.name, capacity)
                return False
            self._queue.append((time.monotonic() + self._delay_s, frame_id, at_s, image))
            self.stats.exposures_queued += 1
            self._cond.notify_all()
            return True

    def _digitise(self, frame: np.ndarray, cfg: CameraConfig, fmt: str) -> np.ndarray:
        roi = frame[cfg.offset_y:cfg.offset_y + cfg.height, cfg.offset_x:cfg.offset_x + cfg.width]
        full = (1 << self.adc_bits) - 1
        if np.issubdtype(roi.dtype, np.integer):
            counts = np.clip(roi, 0, full).astype(np.uint32)
        else:
            counts = np.clip(np.rint(roi), 0, full).astype(np.uint32)
        bits = mono_bits(fmt)
        assert bits is not None
        return (counts >> (self.adc_bits - bits)).astype(frame_dtype(fmt))

    def fetch_frames(self, n: int, timeout_s: float) -> list[np.ndarray]:
        """The next ``n`` frames; FrameTimeout (with those that came) if fewer arrive in time."""
        check_fetch_args(n, timeout_s)
        deadline = time.monotonic() + timeout_s
        frames: list[np.ndarray] = []
        with self._cond:
            self._check_link()
            if not self._acquiring:
                raise RuntimeError(f"{self.name}: fetch_frames() before start(): no acquisition running")
            while len(frames) < n:
                self._check_link()
                now = time.monotonic()
                if self._queue and self._queue[0][0] <= now:
                    _, frame_id, stamp, image = self._queue.popleft()
                    frames.append(image)
                    self._fetched_ids.append(frame_id)
                    if stamp is not None:
                        self._fetched_ts.append(stamp)
                    continue
                if now >= deadline:
                    raise FrameTimeout(n, len(frames), timeout_s, frames=frames, instrument=self.name)
                if not self._acquiring:
                    raise RuntimeError(f"{self.name}: acquisition stopped during fetch_frames "
                                       f"({len(frames)} of {n} frames arrived)")
                wake = min(deadline, self._queue[0][0]) if self._queue else deadline
                self._cond.wait(wake - now)
        return frames

    def identity(self) -> CameraIdentity:
        return self._identity

    def frame_ids(self) -> list[int]:
        with self._cond:
            return list(self._fetched_ids)

    def frame_timestamps(self) -> list[float]:
        with self._cond:
            return list(self._fetched_ts)

    def timing(self) -> CameraTiming:
        with self._cond:
            self._check_link()
            cfg = self._config
        if cfg is None:
            raise RuntimeError(f"{self.name}: call configure() before timing()")
        exposure = cfg.exposure_s or self._exposure_range_s[0]
        readout = self.row_time_s * cfg.height
        interval = exposure + self.frame_overhead_s + readout
        return CameraTiming(interval, f"readout {readout * 1e3:.3g} ms ({cfg.height} rows x "
                            f"{self.row_time_s * 1e6:.3g} us) + overhead {self.frame_overhead_s * 1e6:.3g} us"
                            f" + exposure {exposure * 1e6:.3g} us, not overlapped",
                            frame_ids=True, first_frame_id=1)

    def settings(self) -> dict[str, Any]:
        with self._cond:
            self._check_link()
            cfg = self._config
        return {
            "camera": "virtual",
            "identity": self._identity.as_dict(),
            "sensor_width": self.sensor_shape[1], "sensor_height": self.sensor_shape[0],
            "adc_bits": self.adc_bits,
            "offset_x": cfg.offset_x if cfg else None, "offset_y": cfg.offset_y if cfg else None,
            "width": cfg.width if cfg else None, "height": cfg.height if cfg else None,
            "pixel_format": self._pixel_format or None,
            "exposure_s": cfg.exposure_s if cfg and cfg.exposure_mode == "timed" else None,
            "exposure_mode": cfg.exposure_mode if cfg else None,
            "trigger": cfg.trigger if cfg else None,
            "trigger_selector": "FrameStart" if cfg else None,
            "trigger_source": (cfg.trigger_line if cfg.trigger == "hardware" else "Software") if cfg else None,
            "frames_per_shot": cfg.frames_per_shot if cfg else None,
            "buffer_count": self._buffer_count or (max(4, 2 * cfg.frames_per_shot) if cfg else None),
            "missing_features": self.features().missing(),
        }
