"""Feature detection and configuration on real GenApi node maps of SFNC cameras (in-memory nodes).

viky.cti lacks the trigger, exposure, gain and offset nodes; these tests load device descriptions
that have them (tests/drivers/genicam_xml.py) into genicam's own NodeMap and check what the driver
writes into them.
"""
from __future__ import annotations

import logging

import pytest

from drivers.camera_base import CameraConfig, choose_pixel_format
from drivers.genicam_config import set_optional, set_roi, set_trigger
from drivers.genicam_nodes import NodeMap, detect_features

from .genicam_xml import device_xml, load


def nodes(**kw) -> NodeMap:
    return NodeMap(load(device_xml(**kw)))


def test_a_full_sfnc_camera_has_every_feature() -> None:
    f = detect_features(nodes())
    assert (f.exposure, f.gain, f.offsets, f.frame_rate, f.hardware_trigger, f.software_trigger) == (True,) * 6
    assert f.trigger_selectors == ("FrameStart",) and f.trigger_lines == ("Line0", "Line1")
    assert f.mono16 and f.missing() == []


def test_a_bare_camera_reports_what_it_lacks() -> None:
    f = detect_features(nodes(offsets=False, exposure=None, gain=False, selectors=(), frame_rate=False,
                              formats=("Mono8", "Mono12", "Mono12p", "BayerRG8")))
    assert f.missing() == ["exposure", "gain", "offsets", "frame_rate", "hardware_trigger",
                           "software_trigger", "Mono16"]
    assert choose_pixel_format(f.pixel_formats, None) == "Mono12"  # widest unpacked mono
    with pytest.raises(ValueError, match="not supported"):
        choose_pixel_format(f.pixel_formats, "BayerRG8")


def test_node_access_is_checked() -> None:
    nm = nodes()
    assert nm.get("NoSuchNode", "default") == "default" and not nm.writable("NoSuchNode")
    with pytest.raises(ValueError, match="'NoSuchNode' is not writable"):
        nm.set("NoSuchNode", 1)
    assert nm.readable("AcquisitionMode") and not nm.writable("AcquisitionMode")
    assert not nm.try_set("AcquisitionMode", "Continuous")
    with pytest.raises(ValueError, match="camera refused Width=500"):
        nm.set("Width", 500)  # not a multiple of 16 above the minimum
    assert nm.int_range("Width") == (16, 1024, 16)


def test_roi_with_offset_nodes_is_set_in_hardware() -> None:
    nm = nodes()
    feats = detect_features(nm)
    crop = set_roi(nm, CameraConfig(width=256, height=100, offset_x=64, offset_y=10), feats)
    assert crop is None
    assert [nm.get(n) for n in ("Width", "Height", "OffsetX", "OffsetY")] == [256, 100, 64, 10]
    with pytest.raises(ValueError, match=r"Width=250 not allowed.*16\.\.1024 in steps of 16"):
        set_roi(nm, CameraConfig(width=250, height=100), feats)
    with pytest.raises(ValueError, match="OffsetX=8 not allowed; steps of 16"):
        set_roi(nm, CameraConfig(width=256, height=100, offset_x=8), feats)
    with pytest.raises(ValueError, match="exceeds the sensor"):
        set_roi(nm, CameraConfig(width=1024, height=100, offset_x=16), feats)


def test_exposure_gain_and_frame_rate_in_node_units() -> None:
    nm = nodes()
    set_optional(nm, CameraConfig(width=64, height=64, exposure_s=2.5e-3, gain_db=6.0, frame_rate_hz=50.0),
                 detect_features(nm))
    assert nm.get("ExposureTime") == pytest.approx(2500.0)  # us
    assert (nm.get("ExposureAuto"), nm.get("ExposureMode"), nm.get("GainAuto")) == ("Off", "Timed", "Off")
    assert nm.get("Gain") == 6.0 and nm.get("AcquisitionFrameRate") == 50.0
    assert nm.get("AcquisitionFrameRateEnable") is True
    with pytest.raises(ValueError, match=r"exposure_s=2 outside the device range 1e-05\.\.1"):
        set_optional(nm, CameraConfig(width=64, height=64, exposure_s=2.0), detect_features(nm))


def test_older_exposure_node_name_is_used() -> None:
    nm = nodes(exposure="ExposureTimeAbs")
    set_optional(nm, CameraConfig(width=64, height=64, exposure_s=1e-3), detect_features(nm))
    assert nm.get("ExposureTimeAbs") == pytest.approx(1000.0)


def test_hardware_trigger_is_frame_start_on_the_line_rising_edge() -> None:
    nm = nodes()
    feats = detect_features(nm)
    mode = set_trigger(nm, CameraConfig(width=64, height=64, trigger="hardware", trigger_line="Line1"), feats)
    assert mode == "hardware"
    assert [nm.get(n) for n in ("TriggerSelector", "TriggerMode", "TriggerSource", "TriggerActivation")] == \
        ["FrameStart", "On", "Line1", "RisingEdge"]
    with pytest.raises(ValueError, match=r"trigger_line='Line7' not offered.*\['Line0', 'Line1'\]"):
        set_trigger(nm, CameraConfig(width=64, height=64, trigger_line="Line7"), feats)


def test_frame_burst_start_is_used_with_a_burst_of_one() -> None:
    nm = nodes(selectors=("FrameBurstStart",))
    assert set_trigger(nm, CameraConfig(width=64, height=64), detect_features(nm)) == "hardware"
    assert nm.get("TriggerSelector") == "FrameBurstStart" and nm.get("AcquisitionBurstFrameCount") == 1


def test_software_trigger_and_fallbacks(caplog) -> None:
    nm = nodes()
    assert set_trigger(nm, CameraConfig(width=64, height=64, trigger="software"), detect_features(nm)) == "software"
    assert (nm.get("TriggerMode"), nm.get("TriggerSource")) == ("On", "Software")
    nm.execute("TriggerSoftware")
    assert nm.get("TriggerSoftwareReg") == 1
    only_software = nodes(sources=("Software",))
    with caplog.at_level(logging.WARNING):
        mode = set_trigger(only_software, CameraConfig(width=64, height=64, trigger="hardware"),
                           detect_features(only_software))
    assert mode == "software" and "falling back to software trigger" in caplog.text
