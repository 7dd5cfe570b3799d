"""viky.cti through GenICamCamera: the timing limit read from its node map, frame ids, and the
pre-run checks that refuse it (no hardware trigger; 200 Hz maximum is too slow for 1.5 ms)."""
from __future__ import annotations

import time

import pytest

from drivers.camera import GenICamCamera
from sequences.camera_check import CameraRefused, check_timing, choose_trigger, frame_id_gap
from sequences.plan import ImagingTimings

from .test_camera_viky import VIKY


@pytest.fixture
def camera():
    cam = GenICamCamera(cti_files=[VIKY], serial_number="2")
    cam.connect()
    yield cam
    cam.close()


def test_timing_comes_from_the_frame_rate_maximum(camera: GenICamCamera) -> None:
    camera.configure(width=400, height=300, pixel_format="Mono8", frames_per_shot=2)
    timing = camera.timing()
    assert timing.min_frame_interval_s == pytest.approx(1 / 200)
    assert timing.limit.startswith("AcquisitionFrameRate maximum 200 Hz at 400x300 Mono8")
    with pytest.raises(CameraRefused, match=r"camera Viky 2: AcquisitionFrameRate maximum 200 Hz at "
                                            r"400x300 Mono8: frames at least 5 ms apart, the plan needs 1.5 ms"):
        check_timing(timing, ImagingTimings(), camera="Viky 2")
    check_timing(timing, ImagingTimings(exposure_separation_s=5e-3), camera="Viky 2")   # slow plans pass


def test_a_camera_without_any_trigger_is_refused(camera: GenICamCamera) -> None:
    feats = camera.features()
    with pytest.raises(CameraRefused, match="camera Viky 2: no hardware trigger .*allow_software_trigger"):
        choose_trigger(feats, allow_software_trigger=False, camera="Viky 2")
    with pytest.raises(CameraRefused, match="no hardware trigger and no software trigger"):
        choose_trigger(feats, allow_software_trigger=True, camera="Viky 2")


def test_frame_ids_are_read_from_the_buffers_and_restart_at_start(camera: GenICamCamera) -> None:
    """viky blocks when its buffers are full instead of losing frames, so its ids never jump; the
    gap itself is exercised on the virtual camera (tests/sequences/test_camera_checks.py)."""
    camera.configure(width=100, height=100, pixel_format="Mono8", frames_per_shot=4)
    camera.start()
    try:
        camera.fetch_frames(3, timeout_s=2.0)
        time.sleep(0.1)                              # buffers fill meanwhile: nothing is lost
        camera.fetch_frames(6, timeout_s=2.0)
        assert camera.frame_ids() == list(range(1, 10))
        assert frame_id_gap(camera.frame_ids(), expected=9, first_id=1) is None
    finally:
        camera.stop()
    camera.start()
    try:
        camera.fetch_frames(2, timeout_s=2.0)
        assert camera.frame_ids() == [1, 2]          # counted from start() again
    finally:
        camera.stop()


def test_trigger_width_is_refused_where_the_device_lacks_it(camera: GenICamCamera) -> None:
    assert camera.features().trigger_width is False
    with pytest.raises(ValueError, match="offers no ExposureMode TriggerWidth"):
        camera.configure(width=100, height=100, pixel_format="Mono8", exposure_mode="trigger_width")
    camera.configure(width=100, height=100, pixel_format="Mono8")
    assert camera.settings()["exposure_mode"] is None          # viky has no exposure control at all
