"""Safe access to a GenICam node map (harvesters' ``remote_device.node_map``) and feature detection.

GenICam devices differ in which features they implement (SFNC names: ``ExposureTime`` in us,
``Gain`` in dB, ``OffsetX``, ``TriggerSelector`` ...). Every access here first checks that the node
exists and is available, so a missing feature is a reported absence, never a crash.
"""
from __future__ import annotations

import logging
from typing import Any

from genicam.genapi import EAccessMode
from genicam.genapi import GenericException as GenApiError

from drivers.camera_base import CameraFeatures

log = logging.getLogger(__name__)

_NI, _NA, _WO, _RO, _RW = (EAccessMode.NI.value, EAccessMode.NA.value, EAccessMode.WO.value,
                           EAccessMode.RO.value, EAccessMode.RW.value)

HARDWARE_SELECTORS = ("FrameStart", "FrameBurstStart")


class NodeMap:
    """A thin checked wrapper around a genicam ``NodeMap`` (harvesters' API: ``has_node``,
    ``get_node``, nodes with ``value``, ``get_access_mode()``, ``symbolics``, ``min``/``max``/
    ``inc``, ``execute()``); ``errors``: the GenApi exception classes of that binding (pypylon
    has its own, drivers/pylon_camera.py)."""

    def __init__(self, node_map: Any, errors: tuple[type[Exception], ...] = (GenApiError,)) -> None:
        self._nm = node_map
        self._errors = errors
        self._entry_errors: tuple[type[Exception], ...] = (*errors, AttributeError)

    def _node(self, name: str) -> Any | None:
        try:
            if not self._nm.has_node(name):
                return None
            return self._nm.get_node(name)
        except self._errors:
            return None

    def _mode(self, name: str) -> int:
        node = self._node(name)
        if node is None:
            return _NI
        try:
            return int(node.get_access_mode())
        except self._errors:
            return _NA

    def readable(self, name: str) -> bool:
        return self._mode(name) in (_RO, _RW)

    def writable(self, name: str) -> bool:
        return self._mode(name) in (_WO, _RW)

    def get(self, name: str, default: Any = None) -> Any:
        """The node's value, or ``default`` if it is absent or unreadable."""
        if not self.readable(name):
            return default
        try:
            return self._nm.get_node(name).value
        except self._errors as e:
            log.debug("reading %s failed: %s", name, e)
            return default

    def set(self, name: str, value: Any) -> None:
        """Write a node; ValueError naming node, value and the device's reason if it refuses."""
        if not self.writable(name):
            raise ValueError(f"camera node {name!r} is not writable (absent or locked)")
        try:
            self._nm.get_node(name).value = value
        except self._errors as e:
            raise ValueError(f"camera refused {name}={value!r}: {_short(e)}") from e

    def try_set(self, name: str, value: Any) -> bool:
        """Write a node if possible; log and return False otherwise."""
        try:
            self.set(name, value)
        except ValueError as e:
            log.debug("%s", e)
            return False
        return True

    def execute(self, name: str) -> None:
        if not self.writable(name):
            raise ValueError(f"camera command {name!r} is not available")
        try:
            self._nm.get_node(name).execute()
        except self._errors as e:
            raise ValueError(f"camera command {name} failed: {_short(e)}") from e

    def entries(self, name: str) -> tuple[str, ...]:
        """Available entries of an enumeration node (empty if absent)."""
        if not self.readable(name):
            return ()
        try:
            return tuple(str(s) for s in self._nm.get_node(name).symbolics)
        except self._entry_errors:
            return ()

    def int_range(self, name: str) -> tuple[int, int, int]:
        """(min, max, increment) of an integer node; ValueError if absent."""
        node = self._node(name)
        if node is None or not self.readable(name):
            raise ValueError(f"camera node {name!r} is absent")
        return int(node.min), int(node.max), max(int(node.inc), 1)

    def float_range(self, name: str) -> tuple[float, float]:
        node = self._node(name)
        if node is None or not self.readable(name):
            raise ValueError(f"camera node {name!r} is absent")
        return float(node.min), float(node.max)

    def trigger_selectors(self) -> tuple[str, ...]:
        return self.entries("TriggerSelector") if self.writable("TriggerMode") else ()

    def trigger_sources(self, selector: str) -> tuple[str, ...]:
        """Sources offered for ``selector`` (the source list can depend on the selector)."""
        if not self.try_set("TriggerSelector", selector):
            return ()
        return self.entries("TriggerSource")


def _short(e: Exception) -> str:
    return str(e).split(" : ")[0].strip() or type(e).__name__


def exposure_node(nm: NodeMap) -> str | None:
    """Name of the exposure-time node (SFNC ``ExposureTime``, older ``ExposureTimeAbs``), in us."""
    for name in ("ExposureTime", "ExposureTimeAbs"):
        if nm.writable(name):
            return name
    return None


def detect_features(nm: NodeMap) -> CameraFeatures:
    """Which optional features the device has, from its node map."""
    selectors = nm.trigger_selectors()
    hw_selectors = tuple(s for s in selectors if s in HARDWARE_SELECTORS)
    lines: set[str] = set()
    software = False
    for sel in hw_selectors:
        sources = nm.trigger_sources(sel)
        lines.update(s for s in sources if s.startswith("Line"))
        software = software or ("Software" in sources and nm.writable("TriggerSoftware"))
    return CameraFeatures(
        exposure=exposure_node(nm) is not None,
        gain=nm.writable("Gain"),
        offsets=nm.writable("OffsetX") and nm.writable("OffsetY"),
        frame_rate=nm.writable("AcquisitionFrameRate"),
        hardware_trigger=bool(hw_selectors and lines),
        software_trigger=software,
        trigger_selectors=hw_selectors,
        trigger_lines=tuple(sorted(lines)),
        pixel_formats=nm.entries("PixelFormat"),
        trigger_width="TriggerWidth" in nm.entries("ExposureMode"),
    )
