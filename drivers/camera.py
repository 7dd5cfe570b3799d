"""GenICam camera driver on harvesters: any camera with a GenTL producer (``.cti``).

``GenICamCamera(cti_files=[...], serial_number="...")`` implements ``drivers.camera_base.Camera``.
Units: ROI in sensor pixels, exposure in s (the node ``ExposureTime`` is in us), gain in dB,
frame rate in Hz, timeouts in s. Frames are 2-D numpy copies in raw counts (see camera_base).

Behaviour on devices that lack optional features (checked on the node map, never assumed):
- no ``OffsetX``/``OffsetY``: the device reads a window from the top-left corner large enough for the
  requested ROI, and the ROI is cut out in software (``settings()["software_crop"]``);
- no trigger nodes: hardware/software trigger fall back to free-running acquisition;
- no ``Mono16``: the widest unpacked MonoN; no mono at all: colour converted to mono explicitly;
- no exposure/gain/frame-rate node: the request is logged as a warning and reported as None.
"""
from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from genicam import gentl
from genicam.genapi import GenericException as GenApiError

from drivers.camera_base import (COLOUR_FORMATS, Camera, CameraConfig, CameraFeatures,
                                 CameraIdentity, CameraTiming, DeviceInUse, FrameTimeout,
                                 check_fetch_args, choose_pixel_format, colour_to_mono, mono_bits)
from drivers.errors import DriverError, InstrumentDisconnected, InstrumentError, ProtocolError
from drivers.genicam_config import enable_chunks, frame_timing, set_optional, set_roi, set_trigger
from drivers.genicam_nodes import NodeMap, detect_features, exposure_node
from drivers.genicam_producers import (ProducerSession, acquire_producers, discover, identity_of,
                                       producers_from_env, release_producers)

__all__ = ["GenICamCamera", "discover", "producers_from_env"]

log = logging.getLogger(__name__)

_LOST = (gentl.IoException, gentl.NotAvailableException, gentl.InvalidHandleException,
         gentl.ClosedException, gentl.NotInitializedException)


def _gentl_error(action: str, e: Exception, instrument: str) -> DriverError:
    """A steerlab driver error for a GenTL/GenApi exception raised during ``action``."""
    text = str(e).strip() or type(e).__name__
    if isinstance(e, gentl.ResourceInUseException):
        return DeviceInUse(f"{action}: the device is already open (in this or another process); "
                           f"close that handle first ({text})", instrument=instrument)
    if isinstance(e, _LOST):
        return InstrumentDisconnected(f"{action}: device lost ({type(e).__name__}: {text})",
                                      instrument=instrument)
    m = re.search(r"\(ID: (-?\d+)\)", text)
    return InstrumentError(int(m.group(1)) if m else type(e).__name__, text, command=action,
                           instrument=instrument)


class GenICamCamera(Camera):
    """A GenICam camera opened through harvesters by serial number or device id.

    ``cti_files``: one or more GenTL producer files. ``serial_number``/``device_id``: which device
    (either may be omitted if the producers see exactly one). ``name`` prefixes error messages.
    ``max_buffer_bytes``: memory for the acquisition buffers (2 shots' worth are announced if they fit).
    Not thread-safe: use from one thread.
    """

    def __init__(self, *, cti_files: Sequence[str], serial_number: str | None = None,
                 device_id: str | None = None, name: str = "camera",
                 max_buffer_bytes: int = 256 * 2**20) -> None:
        if isinstance(cti_files, (str, bytes, os.PathLike)):
            raise ValueError(f"camera: cti_files must be a list of .cti paths, got {cti_files!r}")
        self._cti_files = [os.fspath(f) for f in cti_files]
        self._serial = None if serial_number is None else str(serial_number)
        self._device_id = device_id
        self.name = name
        self._max_buffer_bytes = int(max_buffer_bytes)
        self._session: ProducerSession | None = None
        self._ia: Any = None
        self._nodes: NodeMap | None = None
        self._features: CameraFeatures | None = None
        self._identity: CameraIdentity | None = None
        self._config: CameraConfig | None = None
        self._pixel_format = ""
        self._trigger_mode = ""
        self._crop: tuple[int, int, int, int] | None = None  # x0, y0, width, height
        self._chunks: set[str] = set()
        self._frame_ids: list[int] = []
        self._timestamps: list[float] = []

    # -- connection ------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._ia is not None

    def connect(self) -> None:
        """Load the producers, find the device, open it exclusively and detect its features."""
        if self._ia is not None:
            return
        session = acquire_producers(self._cti_files)
        try:
            info = self._find(session.device_infos)
            try:
                ia = session.harvester.create(info)
            except (gentl.GenericException, GenApiError) as e:
                raise _gentl_error(f"open {info.id_!r}", e, self.name) from e
        except BaseException:
            release_producers(session)
            raise
        self._session, self._ia = session, ia
        self._nodes = NodeMap(ia.remote_device.node_map)
        self._identity = identity_of(info)
        self._features = detect_features(self._nodes)
        self._config = None
        missing = self._features.missing()
        if missing:
            log.info("%s %s lacks optional features: %s", self.name, self._identity.device_id,
                     ", ".join(missing))

    def _find(self, infos: list[Any]) -> Any:
        if not infos:
            raise InstrumentDisconnected(f"no GenICam device found through {self._cti_files}",
                                         instrument=self.name)
        matches = [i for i in infos
                   if (self._serial is None or str(i.serial_number) == self._serial)
                   and (self._device_id is None or i.id_ == self._device_id)]
        seen = [f"{i.id_} (serial {i.serial_number})" for i in infos]
        if not matches:
            raise InstrumentDisconnected(
                f"no device with serial_number={self._serial!r} device_id={self._device_id!r}; "
                f"found: {seen}", instrument=self.name)
        if len(matches) > 1:
            raise ValueError(f"{self.name}: {len(matches)} devices match; pass serial_number or "
                             f"device_id to choose one of {seen}")
        return matches[0]

    def close(self) -> None:
        """Stop, release buffers and the device, unload the producers; never raises on device errors."""
        ia, session = self._ia, self._session
        self._ia = self._session = self._nodes = None
        self._config = None
        if ia is not None:
            try:
                ia.destroy()  # stops acquisition and releases buffers first
            except Exception as e:  # device already gone: nothing left to release on our side
                log.warning("%s: releasing the device failed: %s", self.name, e)
        if session is not None:
            release_producers(session, ia)

    def _require(self) -> tuple[Any, NodeMap]:
        if self._ia is None or self._nodes is None:
            raise InstrumentDisconnected("camera not open: call connect()", instrument=self.name)
        return self._ia, self._nodes

    @property
    def acquiring(self) -> bool:
        return self._ia is not None and bool(self._ia.is_acquiring())

    # -- configuration ---------------------------------------------------------------------------
    def features(self) -> CameraFeatures:
        self._require()
        assert self._features is not None
        return self._features

    def _apply(self, cfg: CameraConfig) -> None:
        ia, nm = self._require()
        if self.acquiring:
            raise RuntimeError(f"{self.name}: call stop() before configure()")
        self._config = None  # a configure that fails half-way leaves the camera unconfigured
        feats = self.features()
        fmt = choose_pixel_format(feats.pixel_formats, cfg.pixel_format)
        if cfg.pixel_format is None and fmt != "Mono16":
            log.warning("%s: Mono16 not offered (%s); using %s", self.name,
                        list(feats.pixel_formats), fmt)
        nm.set("PixelFormat", fmt)
        self._crop = set_roi(nm, cfg, feats)
        set_optional(nm, cfg, feats)
        self._trigger_mode = set_trigger(nm, cfg, feats)
        self._chunks = enable_chunks(nm)
        nm.try_set("AcquisitionMode", "Continuous")
        self._set_buffers(ia, nm, cfg.frames_per_shot)
        self._pixel_format, self._config = fmt, cfg

    def _set_buffers(self, ia: Any, nm: NodeMap, frames_per_shot: int) -> None:
        """Two shots' worth of buffers (at least 4), within ``max_buffer_bytes``."""
        payload = int(nm.get("PayloadSize", 0) or 0)
        wanted = max(4, 2 * frames_per_shot)
        if payload > 0:
            wanted = min(wanted, max(1, self._max_buffer_bytes // payload))
        n = max(int(ia.min_num_buffers), wanted)
        if n < frames_per_shot:
            log.warning("%s: only %d buffers of %d bytes fit in max_buffer_bytes=%d for %d frames "
                        "per shot: fetch promptly or frames are lost", self.name, n, payload,
                        self._max_buffer_bytes, frames_per_shot)
        ia.num_buffers = n

    # -- acquisition -----------------------------------------------------------------------------
    def start(self) -> None:
        ia, _ = self._require()
        if self._config is None:
            raise RuntimeError(f"{self.name}: call configure() before start()")
        if self.acquiring:
            return
        self._frame_ids, self._timestamps = [], []
        try:
            ia.start()
        except (gentl.GenericException, GenApiError) as e:
            raise _gentl_error("start", e, self.name) from e

    def software_trigger(self) -> None:
        _, nm = self._require()
        if not self.acquiring:
            raise RuntimeError(f"{self.name}: software_trigger() before start()")
        if self._trigger_mode == "hardware":
            raise RuntimeError(f"{self.name}: configured for hardware trigger")
        if self._trigger_mode == "software":
            try:
                nm.execute("TriggerSoftware")
            except ValueError as e:
                raise InstrumentError("TriggerSoftware", str(e), instrument=self.name) from e
        # free-running: frames arrive by themselves

    def fetch_frames(self, n: int, timeout_s: float) -> list[np.ndarray]:
        """The next ``n`` frames; FrameTimeout (with the frames that came) if fewer arrive in time."""
        check_fetch_args(n, timeout_s)
        ia, _ = self._require()
        if not self.acquiring:
            raise RuntimeError(f"{self.name}: fetch_frames() before start(): no acquisition running")
        deadline = time.monotonic() + timeout_s
        frames: list[np.ndarray] = []
        while len(frames) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FrameTimeout(n, len(frames), timeout_s, frames=frames, instrument=self.name)
            try:
                buf = ia.try_fetch(timeout=remaining)
            except gentl.TimeoutException:
                continue
            except (gentl.GenericException, GenApiError) as e:
                raise _gentl_error("fetch", e, self.name) from e
            if buf is None:  # nothing in time, or an incomplete buffer (already requeued)
                continue
            with buf:  # requeues the buffer on exit, also if the conversion raises
                frames.append(self._to_array(buf))
                self._frame_ids.append(self._frame_id(buf))
                stamp = self._frame_timestamp(buf)
                if stamp is not None:
                    self._timestamps.append(stamp)
        return frames

    def _frame_id(self, buf: Any) -> int:
        """The chunk FrameID where the device sends it, else the GenTL buffer's frame id."""
        if "FrameID" in self._chunks and self._nodes is not None:
            chunk = self._nodes.get("ChunkFrameID")
            if chunk is not None:
                return int(chunk)
        return int(buf.frame_id)

    def _frame_timestamp(self, buf: Any) -> float | None:
        """The chunk Timestamp (ns) where sent, else the GenTL buffer's (0 = none, as on viky), in s."""
        if "Timestamp" in self._chunks and self._nodes is not None:
            chunk = self._nodes.get("ChunkTimestamp")
            if chunk:
                return int(chunk) * 1e-9
        try:
            ns = int(buf.timestamp_ns or 0)
        except (gentl.GenericException, AttributeError, ValueError):   # viky: NotAvailableException
            ns = 0
        return ns * 1e-9 if ns > 0 else None

    def frame_ids(self) -> list[int]:
        return list(self._frame_ids)

    def frame_timestamps(self) -> list[float]:
        return list(self._timestamps)

    def timing(self) -> CameraTiming:
        """From the node map: AcquisitionFrameRate maximum, ResultingFrameRate, SensorReadoutTime
        plus ExposureTime (the binding one). GenTL producers number frames (buffer frame id)."""
        _, nm = self._require()
        cfg = self._config
        if cfg is None:
            raise RuntimeError(f"{self.name}: call configure() before timing()")
        interval, limit = frame_timing(nm, f"{cfg.width}x{cfg.height} {self._pixel_format}")
        return CameraTiming(interval, limit, frame_ids=True)

    def _to_array(self, buf: Any) -> np.ndarray:
        components = buf.payload.components if buf.payload is not None else []
        if not components:
            raise ProtocolError("buffer without an image component", instrument=self.name)
        comp = components[0]
        fmt, w, h = str(comp.data_format), int(comp.width), int(comp.height)
        per_pixel = int(round(float(comp.num_components_per_pixel)))
        data = comp.data
        if data is None or data.size != w * h * per_pixel:
            raise ProtocolError(f"buffer holds {None if data is None else data.size} values, expected "
                                f"{w}x{h}x{per_pixel} for {fmt}", instrument=self.name)
        if fmt in COLOUR_FORMATS:
            image = colour_to_mono(data.reshape(h, w, per_pixel), fmt)
        elif mono_bits(fmt) is not None and per_pixel == 1:
            image = data.reshape(h, w)
        else:
            raise ProtocolError(f"unsupported pixel format {fmt!r} in buffer", instrument=self.name)
        if self._crop is not None:
            x0, y0, cw, ch = self._crop
            image = image[y0:y0 + ch, x0:x0 + cw]
        return np.array(image, copy=True, order="C")

    def stop(self) -> None:
        """Stop acquisition and discard queued frames; logs (never raises) device errors."""
        if self._ia is None:
            return
        try:
            if self._ia.is_acquiring():
                self._ia.stop()
        except Exception as e:  # device gone: our side is stopped regardless
            log.warning("%s: stopping acquisition failed: %s", self.name, e)

    # -- reporting -------------------------------------------------------------------------------
    def identity(self) -> CameraIdentity:
        if self._identity is None:
            raise InstrumentDisconnected("camera never connected: no identity", instrument=self.name)
        return self._identity

    def settings(self) -> dict[str, Any]:
        """Values read back from the device (None where the node is absent)."""
        ia, nm = self._require()
        exp_node = exposure_node(nm)
        exp_us = nm.get(exp_node) if exp_node else None
        selector = nm.get("TriggerSelector") if self._trigger_mode in ("hardware", "software") else None
        roi = self._crop or (int(nm.get("OffsetX", 0)), int(nm.get("OffsetY", 0)),
                             int(nm.get("Width")), int(nm.get("Height")))
        cfg = self._config
        return {
            "camera": "genicam",
            "identity": self.identity().as_dict(),
            "cti_files": list(self._cti_files),
            "device_width": int(nm.get("Width")),
            "device_height": int(nm.get("Height")),
            "offset_x": roi[0], "offset_y": roi[1], "width": roi[2], "height": roi[3],
            "software_crop": self._crop is not None,
            "pixel_format": nm.get("PixelFormat"),
            "mono_conversion": "mean(R,G,B)" if self._pixel_format in COLOUR_FORMATS else None,
            "exposure_s": None if exp_us is None else float(exp_us) * 1e-6,
            "exposure_mode": {"Timed": "timed", "TriggerWidth": "trigger_width"}.get(
                str(nm.get("ExposureMode")), "timed" if exp_node else None),
            "gain_db": None if nm.get("Gain") is None else float(nm.get("Gain")),
            "frame_rate_hz": None if nm.get("AcquisitionFrameRate") is None
            else float(nm.get("AcquisitionFrameRate")),
            "trigger": self._trigger_mode or None,
            "trigger_selector": selector,
            "trigger_source": nm.get("TriggerSource") if selector else None,
            "trigger_activation": nm.get("TriggerActivation") if selector else None,
            "acquisition_mode": nm.get("AcquisitionMode"),
            "frames_per_shot": cfg.frames_per_shot if cfg else None,
            "num_buffers": int(ia.num_buffers),
            "missing_features": self.features().missing(),
        }
