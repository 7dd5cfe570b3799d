"""Programming a GenICam node map from a CameraConfig: ROI, exposure/gain/frame rate, trigger.

SFNC units: ``ExposureTime`` in us (we take s), ``Gain`` in dB, ``AcquisitionFrameRate`` in Hz,
ROI nodes in pixels. Each function checks the node map first; a missing optional feature is a
logged warning, an impossible value a ValueError naming field, value and the device's range.
"""
from __future__ import annotations

import logging

from drivers.camera_base import CameraConfig, CameraFeatures
from drivers.genicam_nodes import HARDWARE_SELECTORS, NodeMap, exposure_node

log = logging.getLogger(__name__)


def set_roi(nm: NodeMap, cfg: CameraConfig, feats: CameraFeatures) -> tuple[int, int, int, int] | None:
    """Set Width/Height/OffsetX/OffsetY; returns the software crop (x0, y0, w, h) or None.

    Without offset nodes, the device reads ``offset + size`` pixels from the top-left corner and
    the ROI is cut out of each frame in software.
    """
    if feats.offsets:  # offsets first to 0 so that Width/Height can reach the full sensor
        nm.set("OffsetX", 0)
        nm.set("OffsetY", 0)
    for axis, size, offset in (("Width", cfg.width, cfg.offset_x), ("Height", cfg.height, cfg.offset_y)):
        lo, hi, inc = nm.int_range(axis)
        if offset + size > hi:
            raise ValueError(f"camera configure: offset + {axis.lower()} = {offset} + {size} "
                             f"exceeds the sensor ({hi} pixels)")
        device_size = size if feats.offsets else offset + size
        if device_size < lo or (device_size - lo) % inc:
            raise ValueError(f"camera configure: {axis}={device_size} not allowed; the device "
                             f"accepts {lo}..{hi} in steps of {inc}")
    if not feats.offsets and (cfg.offset_x or cfg.offset_y):
        log.warning("camera has no OffsetX/OffsetY: reading %dx%d from the corner and cropping the "
                    "ROI in software", cfg.offset_x + cfg.width, cfg.offset_y + cfg.height)
        nm.set("Width", cfg.offset_x + cfg.width)
        nm.set("Height", cfg.offset_y + cfg.height)
        return (cfg.offset_x, cfg.offset_y, cfg.width, cfg.height)
    nm.set("Width", cfg.width)
    nm.set("Height", cfg.height)
    if feats.offsets:
        for node, value in (("OffsetX", cfg.offset_x), ("OffsetY", cfg.offset_y)):
            _, _, inc = nm.int_range(node)
            if value % inc:
                raise ValueError(f"camera configure: {node}={value} not allowed; steps of {inc}")
            nm.set(node, value)
    return None


def _set_float(nm: NodeMap, node: str, value: float, field: str, scale: float) -> None:
    """Write ``value`` (node units) after a range check; ``scale`` converts node units to ``field``'s."""
    lo, hi = nm.float_range(node)
    if not lo <= value <= hi:
        raise ValueError(f"camera configure: {field}={value * scale:g} outside the device range "
                         f"{lo * scale:g}..{hi * scale:g}")
    nm.set(node, value)


def set_optional(nm: NodeMap, cfg: CameraConfig, feats: CameraFeatures) -> None:
    """Exposure (s) or TriggerWidth exposure, gain (dB), frame rate (Hz), each only if requested;
    absent nodes are warned about; TriggerWidth on a device without it is a ValueError."""
    if cfg.exposure_mode == "trigger_width":
        if not feats.trigger_width:
            raise ValueError("camera configure: exposure_mode='trigger_width': the device offers no "
                             f"ExposureMode TriggerWidth (entries: {list(nm.entries('ExposureMode'))})")
        nm.try_set("ExposureAuto", "Off")
        nm.set("ExposureMode", "TriggerWidth")
    elif cfg.exposure_s is not None:
        node = exposure_node(nm)
        if node is None:
            log.warning("camera has no exposure-time node: exposure_s=%g ignored", cfg.exposure_s)
        else:
            nm.try_set("ExposureAuto", "Off")
            nm.try_set("ExposureMode", "Timed")
            _set_float(nm, node, cfg.exposure_s * 1e6, "exposure_s", 1e-6)
    if cfg.gain_db is not None:
        if not feats.gain:
            log.warning("camera has no Gain node: gain_db=%g ignored", cfg.gain_db)
        else:
            nm.try_set("GainAuto", "Off")
            _set_float(nm, "Gain", cfg.gain_db, "gain_db", 1.0)
    if cfg.frame_rate_hz is not None:
        if not feats.frame_rate:
            log.warning("camera has no AcquisitionFrameRate: frame_rate_hz=%g ignored", cfg.frame_rate_hz)
        else:
            nm.try_set("AcquisitionFrameRateEnable", True)
            _set_float(nm, "AcquisitionFrameRate", cfg.frame_rate_hz, "frame_rate_hz", 1.0)


def set_trigger(nm: NodeMap, cfg: CameraConfig, feats: CameraFeatures) -> str:
    """Program the trigger; returns the effective mode: "hardware", "software" or "free-running".

    Hardware: FrameStart (else FrameBurstStart with a burst of 1) on ``trigger_line``, rising edge,
    so that every edge the timing card emits is one frame. Without hardware trigger nodes the
    camera falls back to the software trigger, and without any trigger to free-running.
    """
    for sel in nm.entries("TriggerSelector"):  # no stale trigger left on any selector
        if nm.try_set("TriggerSelector", sel):
            nm.try_set("TriggerMode", "Off")
    selector = next((s for s in HARDWARE_SELECTORS if s in feats.trigger_selectors), "")
    if cfg.trigger == "hardware":
        if feats.hardware_trigger:
            if cfg.trigger_line not in nm.trigger_sources(selector):
                raise ValueError(f"camera configure: trigger_line={cfg.trigger_line!r} not offered "
                                 f"for {selector}; lines: {list(feats.trigger_lines)}")
            _arm_selector(nm, selector, cfg.trigger_line)
            nm.try_set("TriggerActivation", "RisingEdge")
            return "hardware"
        log.warning("camera has no hardware trigger (TriggerSelector FrameStart/FrameBurstStart on "
                    "a line): falling back to software trigger")
    if feats.software_trigger:
        ordered = [s for s in HARDWARE_SELECTORS if s in feats.trigger_selectors]   # FrameStart first
        selector = next(s for s in ordered if "Software" in nm.trigger_sources(s))
        _arm_selector(nm, selector, "Software")
        return "software"
    log.warning("camera has no trigger at all: it runs free, fetch_frames returns the next frames "
                "of the stream")
    return "free-running"


def frame_timing(nm: NodeMap, where: str) -> tuple[float | None, str]:
    """(shortest interval between exposure starts in s, the limit in words) from the node map:
    the largest of 1 / AcquisitionFrameRate maximum, 1 / ResultingFrameRate and SensorReadoutTime +
    ExposureTime (us nodes); (None, what is missing) if the device states none of them."""
    limits: list[tuple[float, str]] = []
    if nm.readable("AcquisitionFrameRate"):
        try:
            fps = nm.float_range("AcquisitionFrameRate")[1]
            if fps > 0:
                limits.append((1.0 / fps, f"AcquisitionFrameRate maximum {fps:.6g} Hz at {where}"))
        except ValueError:
            pass
    for node in ("ResultingFrameRate", "AcquisitionResultingFrameRate"):
        fps = nm.get(node)
        if fps:
            limits.append((1.0 / float(fps), f"{node} {float(fps):.6g} Hz at {where}"))
    readout_us = nm.get("SensorReadoutTime")
    if readout_us:
        exposure = exposure_node(nm)
        exposure_us = float(nm.get(exposure, 0.0) or 0.0) if exposure else 0.0
        limits.append(((float(readout_us) + exposure_us) * 1e-6,
                       f"SensorReadoutTime {float(readout_us):.6g} us + ExposureTime {exposure_us:.6g} us"))
    if not limits:
        return None, f"no AcquisitionFrameRate, ResultingFrameRate or SensorReadoutTime node at {where}"
    return max(limits)


def enable_chunks(nm: NodeMap) -> set[str]:
    """Turn on the FrameID and Timestamp chunks where the device offers them (SFNC ChunkModeActive,
    ChunkSelector, ChunkEnable); the names now sent with every frame (``ChunkFrameID``,
    ``ChunkTimestamp`` in ns)."""
    offered = [c for c in ("FrameID", "Timestamp") if c in nm.entries("ChunkSelector")]
    if not offered or not nm.try_set("ChunkModeActive", True):
        return set()
    return {c for c in offered if nm.try_set("ChunkSelector", c) and nm.try_set("ChunkEnable", True)}


def _arm_selector(nm: NodeMap, selector: str, source: str) -> None:
    if source.startswith("Line") and nm.try_set("LineSelector", source):
        nm.try_set("LineMode", "Input")           # the trigger line is an input (SFNC LineMode)
    nm.set("TriggerSelector", selector)
    nm.set("TriggerMode", "On")
    nm.set("TriggerSource", source)
    if selector == "FrameBurstStart" and not nm.try_set("AcquisitionBurstFrameCount", 1):
        log.warning("FrameBurstStart without a writable AcquisitionBurstFrameCount: one edge may "
                    "give several frames")
