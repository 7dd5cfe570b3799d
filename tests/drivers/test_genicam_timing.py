"""GenICam timing limits, TriggerWidth exposure and the FrameID chunk on real GenApi node maps of an
SFNC camera (in-memory nodes, tests/drivers/genicam_xml.py)."""
from __future__ import annotations

import pytest

from drivers.camera_base import CameraConfig
from drivers.genicam_config import enable_chunks, frame_timing, set_optional
from drivers.genicam_nodes import NodeMap, detect_features

from .genicam_xml import device_xml, load


def nodes(**kw) -> NodeMap:
    return NodeMap(load(device_xml(**kw)))


def test_the_frame_rate_maximum_sets_the_interval() -> None:
    interval, limit = frame_timing(nodes(), "1024x768 Mono16")
    assert interval == pytest.approx(0.01)
    assert limit == "AcquisitionFrameRate maximum 100 Hz at 1024x768 Mono16"


def test_no_timing_node_states_no_limit() -> None:
    interval, limit = frame_timing(nodes(frame_rate=False), "64x64 Mono8")
    assert interval is None and limit.startswith("no AcquisitionFrameRate, ResultingFrameRate")


def test_trigger_width_exposure_is_set_where_offered() -> None:
    nm = nodes()
    feats = detect_features(nm)
    assert feats.trigger_width
    set_optional(nm, CameraConfig(width=64, height=64, exposure_mode="trigger_width"), feats)
    assert nm.get("ExposureMode") == "TriggerWidth"
    set_optional(nm, CameraConfig(width=64, height=64, exposure_s=1e-3), feats)
    assert nm.get("ExposureMode") == "Timed" and nm.get("ExposureTime") == 1000.0


def test_trigger_width_needs_the_hardware_trigger_and_the_feature() -> None:
    with pytest.raises(ValueError, match="trigger_width' needs trigger='hardware'"):
        CameraConfig(width=8, height=8, trigger="software", exposure_mode="trigger_width")
    nm = nodes(exposure=None)
    with pytest.raises(ValueError, match="offers no ExposureMode TriggerWidth"):
        set_optional(nm, CameraConfig(width=8, height=8, exposure_mode="trigger_width"), detect_features(nm))


def test_no_chunk_nodes_no_frame_id_chunk() -> None:
    assert enable_chunks(nodes()) == set()          # frame ids then come from the GenTL buffer
