"""Basler cameras through Basler's own pylon SDK (pypylon): GigE, USB3 Vision and the camera emulator.

``PylonCamera(serial_number="...", image_dir=None)`` implements ``drivers.camera_base.Camera`` with
the same node programming as the GenICam driver (drivers/genicam_config.py, through an adapter of
pypylon's node map). Units: ROI in sensor pixels, exposure in s (node ``ExposureTime`` in us),
gain in dB, timeouts in s; frames are 2-D numpy copies in raw counts.

The camera emulator (pylon CamEmu, device class ``BaslerCamEmu``, enabled by the environment
variable ``PYLON_CAMEMU`` = number of emulated cameras, which this driver sets to 1 when it is
unset and ``image_dir`` is given) lists trigger sources Line1..3 but has no input lines: the driver
reports it without a hardware trigger, so a run needs ``[sequencer] allow_software_trigger``. With
``image_dir`` its frames are the directory's image files in name order (``ImageFileMode`` On,
``ImageFilename`` = the directory): Basler's emulator lists the directory when acquisition starts
and reads each file when its frame is triggered, so with a software trigger the driver starts
acquiring at the first trigger of a shot, after the files of that shot exist
(drivers/simulated/image_files.py writes them in the emulated real lab).

pypylon is an optional dependency (``pip install steerlab[pylon]``); without it ``connect()`` says so.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from drivers.camera_base import (COLOUR_FORMATS, Camera, CameraConfig, CameraFeatures,
                                 CameraIdentity, CameraTiming, DeviceInUse, FrameTimeout,
                                 check_fetch_args, choose_pixel_format, colour_to_mono, mono_bits)
from drivers.errors import InstrumentDisconnected, InstrumentError, ProtocolError
from drivers.genicam_config import frame_timing, set_optional, set_roi, set_trigger
from drivers.genicam_nodes import NodeMap, detect_features, exposure_node

__all__ = ["EMULATOR_CLASS", "PylonCamera"]

log = logging.getLogger(__name__)

EMULATOR_CLASS = "BaslerCamEmu"
"""pylon's device class of the camera emulator (no input lines, no sensor)."""


def _pylon() -> Any:
    try:
        from pypylon import pylon
    except ImportError as exc:
        raise InstrumentDisconnected(f"pylon camera: pypylon is not installed ({exc}); "
                                     "pip install 'steerlab[pylon]'", instrument="camera") from None
    return pylon


def _genicam_errors() -> tuple[type[Exception], ...]:
    from pypylon import genicam
    return (genicam.GenericException,)


class _Node:
    """A pypylon parameter seen through harvesters' node API (what drivers.genicam_nodes uses)."""

    def __init__(self, node: Any) -> None:
        self._node = node

    def get_access_mode(self) -> int:
        return int(self._node.GetAccessMode())

    @property
    def value(self) -> Any:
        return self._node.Value

    @value.setter
    def value(self, v: Any) -> None:
        self._node.Value = v

    @property
    def symbolics(self) -> tuple[str, ...]:
        return tuple(self._node.Symbolics)

    @property
    def min(self) -> Any:
        return self._node.Min

    @property
    def max(self) -> Any:
        return self._node.Max

    @property
    def inc(self) -> Any:
        return self._node.Inc

    def execute(self) -> None:
        self._node.Execute()


class _Nodes:
    """pypylon's node map with harvesters' ``has_node``/``get_node``."""

    def __init__(self, node_map: Any) -> None:
        self._nm = node_map

    def has_node(self, name: str) -> bool:
        return self._nm.GetNode(name) is not None

    def get_node(self, name: str) -> _Node:
        return _Node(self._nm.GetNode(name))


class PylonCamera(Camera):
    """A Basler camera (or pylon's emulator) opened through pylon by serial number.

    ``serial_number``: which device (None: the only one pylon finds); ``image_dir``: the emulator's
    image files (CamEmu only); ``name`` prefixes error messages. Not thread-safe: use from one thread.
    """

    def __init__(self, *, serial_number: str | None = None, image_dir: str | os.PathLike[str] | None = None,
                 name: str = "camera") -> None:
        self._serial = None if serial_number in (None, "") else str(serial_number)
        self._image_dir = None if image_dir is None else os.fspath(image_dir)
        self.name = name
        self._cam: Any = None
        self._nodes: NodeMap | None = None
        self._features: CameraFeatures | None = None
        self._identity: CameraIdentity | None = None
        self._emulator = False
        self._config: CameraConfig | None = None
        self._pixel_format = ""
        self._trigger_mode = ""
        self._crop: tuple[int, int, int, int] | None = None
        self._armed = False
        self._frame_ids: list[int] = []
        self._timestamps: list[float] = []

    # -- connection ------------------------------------------------------------------------------
    def connect(self) -> None:
        """Find the device by serial number, open it and detect its features."""
        if self._cam is not None:
            return
        if self._image_dir is not None:
            os.environ.setdefault("PYLON_CAMEMU", "1")   # read when pylon's factory first enumerates
        pylon = _pylon()
        errors = _genicam_errors()
        try:
            factory = pylon.TlFactory.GetInstance()
            infos = list(factory.EnumerateDevices())
        except errors as e:
            raise InstrumentDisconnected(f"pylon: enumerating devices failed: {e}", instrument=self.name) from e
        seen = [f"{i.GetModelName()} (serial {i.GetSerialNumber()}, {i.GetDeviceClass()})" for i in infos]
        matches = [i for i in infos if self._serial is None or i.GetSerialNumber() == self._serial]
        if not matches:
            raise InstrumentDisconnected(f"pylon: no device with serial_number={self._serial!r}; found: "
                                         f"{seen or 'none'}", instrument=self.name)
        if len(matches) > 1:
            raise ValueError(f"{self.name}: {len(matches)} pylon devices match; set serial_number to "
                             f"one of {seen}")
        info = matches[0]
        try:
            cam = pylon.InstantCamera(factory.CreateDevice(info))
            cam.Open()
        except errors as e:
            text = str(e).split(" : ")[0]
            if "exclusive" in text.lower() or "in use" in text.lower() or "access denied" in text.lower():
                raise DeviceInUse(f"pylon: open {info.GetFullName()!r}: the device is already open "
                                  f"({text})", instrument=self.name) from e
            raise InstrumentDisconnected(f"pylon: open {info.GetFullName()!r} failed: {text}",
                                         instrument=self.name) from e
        self._cam = cam
        self._emulator = info.GetDeviceClass() == EMULATOR_CLASS
        self._nodes = NodeMap(_Nodes(cam.GetNodeMap()), errors)
        nm = self._nodes
        self._identity = CameraIdentity(vendor=str(info.GetVendorName()), model=str(info.GetModelName()),
                                        serial_number=str(info.GetSerialNumber()),
                                        device_id=str(info.GetFullName()),
                                        version=str(nm.get("DeviceFirmwareVersion", "") or ""))
        features = detect_features(nm)
        if self._emulator:     # Line1..3 are listed, but the emulator has no input to trigger it
            features = CameraFeatures(**{**features.__dict__, "hardware_trigger": False,
                                         "trigger_lines": (), "trigger_width": False})
        self._features = features
        if self._image_dir is not None:
            if not self._emulator:
                self.close()
                raise ValueError(f"{self.name}: image_dir is for pylon's camera emulator; "
                                 f"{info.GetFullName()} is a {info.GetDeviceClass()} device")
            try:
                nm.set("TestImageSelector", "Off")
                nm.set("ImageFilename", self._image_dir)
                nm.set("ImageFileMode", "On")
            except ValueError as e:
                self.close()
                raise InstrumentError("ImageFilename", str(e), instrument=self.name) from e
        missing = features.missing()
        if missing:
            log.info("%s %s lacks optional features: %s", self.name, self._identity.device_id,
                     ", ".join(missing))

    def close(self) -> None:
        """Stop and close the device; never raises on device errors."""
        cam, self._cam, self._nodes, self._config = self._cam, None, None, None
        self._armed = False
        if cam is None:
            return
        try:
            if cam.IsGrabbing():
                cam.StopGrabbing()
            cam.Close()
        except Exception as e:           # device already gone: nothing left to release here
            log.warning("%s: closing the device failed: %s", self.name, e)

    def _require(self) -> tuple[Any, NodeMap]:
        if self._cam is None or self._nodes is None:
            raise InstrumentDisconnected("camera not open: call connect()", instrument=self.name)
        return self._cam, self._nodes

    # -- configuration ---------------------------------------------------------------------------
    def features(self) -> CameraFeatures:
        self._require()
        assert self._features is not None
        return self._features

    def _apply(self, cfg: CameraConfig) -> None:
        cam, nm = self._require()
        if cam.IsGrabbing():
            raise RuntimeError(f"{self.name}: call stop() before configure()")
        self._config = None
        feats = self.features()
        fmt = choose_pixel_format(feats.pixel_formats, cfg.pixel_format)
        nm.set("PixelFormat", fmt)
        self._crop = set_roi(nm, cfg, feats)
        set_optional(nm, cfg, feats)
        self._trigger_mode = set_trigger(nm, cfg, feats)
        nm.try_set("AcquisitionMode", "Continuous")
        cam.MaxNumBuffer.Value = max(4, 2 * cfg.frames_per_shot)
        self._pixel_format, self._config = fmt, cfg

    # -- acquisition -----------------------------------------------------------------------------
    def start(self) -> None:
        """Arm: with a hardware trigger acquisition starts now; with a software trigger at the
        first ``software_trigger()`` (the emulator then lists the shot's image files)."""
        cam, _ = self._require()
        if self._config is None:
            raise RuntimeError(f"{self.name}: call configure() before start()")
        self._frame_ids, self._timestamps = [], []
        self._armed = True
        if self._trigger_mode != "software":
            self._grab()

    def _grab(self) -> None:
        cam, _ = self._require()
        if cam.IsGrabbing():
            return
        pylon = _pylon()
        try:
            cam.StartGrabbing(pylon.GrabStrategy_OneByOne)
        except _genicam_errors() as e:
            raise InstrumentError("StartGrabbing", str(e).split(" : ")[0], instrument=self.name) from e

    def software_trigger(self) -> None:
        cam, _ = self._require()
        if not self._armed:
            raise RuntimeError(f"{self.name}: software_trigger() before start()")
        if self._trigger_mode == "hardware":
            raise RuntimeError(f"{self.name}: configured for hardware trigger")
        self._grab()
        if self._trigger_mode == "software":
            pylon = _pylon()
            try:
                exposure_s = (self._config.exposure_s if self._config else None) or 0.01
                cam.WaitForFrameTriggerReady(int(1000 * exposure_s + 1000),
                                             pylon.TimeoutHandling_ThrowException)
                cam.ExecuteSoftwareTrigger()
            except _genicam_errors() as e:
                raise InstrumentError("TriggerSoftware", str(e).split(" : ")[0],
                                      instrument=self.name) from e

    def fetch_frames(self, n: int, timeout_s: float) -> list[np.ndarray]:
        """The next ``n`` frames; FrameTimeout (with those that came) if fewer arrive in time;
        a frame the device reports failed (e.g. the emulator's image file is missing or
        unreadable) is a ProtocolError naming the device's reason."""
        check_fetch_args(n, timeout_s)
        cam, _ = self._require()
        if not self._armed:
            raise RuntimeError(f"{self.name}: fetch_frames() before start(): no acquisition running")
        pylon = _pylon()
        errors = _genicam_errors()
        deadline = time.monotonic() + timeout_s
        frames: list[np.ndarray] = []
        while len(frames) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not cam.IsGrabbing():
                raise FrameTimeout(n, len(frames), timeout_s, frames=frames, instrument=self.name)
            try:
                result = cam.RetrieveResult(max(1, int(remaining * 1000)), pylon.TimeoutHandling_Return)
            except errors as e:
                raise InstrumentDisconnected(f"fetch: {str(e).split(' : ')[0]}", instrument=self.name) from e
            if result is None or not result.IsValid():
                continue
            try:
                if not result.GrabSucceeded():
                    raise ProtocolError(f"frame {len(frames) + 1} of {n} failed: "
                                        f"{result.GetErrorDescription()} (0x{result.GetErrorCode():x})",
                                        instrument=self.name)
                frames.append(self._to_array(result))
                self._frame_ids.append(int(result.GetBlockID()))
                stamp = int(result.GetTimeStamp())
                if stamp > 0:
                    self._timestamps.append(stamp * 1e-9)
            finally:
                result.Release()
        return frames

    def _to_array(self, result: Any) -> np.ndarray:
        fmt = self._pixel_format
        image = np.asarray(result.GetArray())
        if fmt in COLOUR_FORMATS:
            image = colour_to_mono(image, fmt)
        elif mono_bits(fmt) is None or image.ndim != 2:
            raise ProtocolError(f"unsupported frame {image.shape} {image.dtype} for {fmt}",
                                instrument=self.name)
        cfg = self._config
        if cfg is not None and self._crop is None and image.shape != (cfg.height, cfg.width):
            raise ProtocolError(f"frame of {image.shape[1]}x{image.shape[0]} px, configured "
                                f"{cfg.width}x{cfg.height}", instrument=self.name)
        if self._crop is not None:
            x0, y0, cw, ch = self._crop
            image = image[y0:y0 + ch, x0:x0 + cw]
        return np.array(image, copy=True, order="C")

    def frame_ids(self) -> list[int]:
        return list(self._frame_ids)

    def frame_timestamps(self) -> list[float]:
        return list(self._timestamps)

    def timing(self) -> CameraTiming:
        """From the node map (AcquisitionFrameRate maximum, ResultingFrameRate, readout + exposure).
        Block ids restart with each acquisition, which a software-triggered shot starts anew."""
        _, nm = self._require()
        cfg = self._config
        if cfg is None:
            raise RuntimeError(f"{self.name}: call configure() before timing()")
        interval, limit = frame_timing(nm, f"{cfg.width}x{cfg.height} {self._pixel_format}")
        return CameraTiming(interval, limit, frame_ids=False)

    def stop(self) -> None:
        """Stop acquisition and discard queued frames; logs (never raises) device errors."""
        self._armed = False
        if self._cam is None:
            return
        try:
            if self._cam.IsGrabbing():
                self._cam.StopGrabbing()
        except Exception as e:           # device gone: our side is stopped regardless
            log.warning("%s: stopping acquisition failed: %s", self.name, e)

    # -- reporting -------------------------------------------------------------------------------
    def identity(self) -> CameraIdentity:
        if self._identity is None:
            raise InstrumentDisconnected("camera never connected: no identity", instrument=self.name)
        return self._identity

    def settings(self) -> dict[str, Any]:
        """Values read back from the device (None where the node is absent)."""
        _, nm = self._require()
        exp_node = exposure_node(nm)
        exp_us = nm.get(exp_node) if exp_node else None
        selector = nm.get("TriggerSelector") if self._trigger_mode in ("hardware", "software") else None
        roi = self._crop or (int(nm.get("OffsetX", 0)), int(nm.get("OffsetY", 0)),
                             int(nm.get("Width")), int(nm.get("Height")))
        cfg = self._config
        return {
            "camera": "pylon",
            "identity": self.identity().as_dict(),
            "emulator": self._emulator,
            "image_dir": self._image_dir,
            "device_width": int(nm.get("Width")),
            "device_height": int(nm.get("Height")),
            "offset_x": roi[0], "offset_y": roi[1], "width": roi[2], "height": roi[3],
            "software_crop": self._crop is not None,
            "pixel_format": nm.get("PixelFormat"),
            "exposure_s": None if exp_us is None else float(exp_us) * 1e-6,
            "exposure_mode": {"Timed": "timed", "TriggerWidth": "trigger_width"}.get(
                str(nm.get("ExposureMode")), "timed" if exp_node else None),
            "gain_db": None if nm.get("Gain") is None else float(nm.get("Gain")),
            "trigger": self._trigger_mode or None,
            "trigger_selector": selector,
            "trigger_source": nm.get("TriggerSource") if selector else None,
            "acquisition_mode": nm.get("AcquisitionMode"),
            "frames_per_shot": cfg.frames_per_shot if cfg else None,
            "missing_features": self.features().missing(),
        }
