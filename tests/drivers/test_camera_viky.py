"""GenICamCamera against the real GenTL stack with the simulated producer viky.cti (genicam wheel).

viky: 3 devices (serials 0/1/2), Width/Height 100..800, PixelFormat RGBa8/Mono8, frame rate 1..200 Hz,
no trigger/exposure/gain/offset nodes. Its image is a black (0) 20x20 square on white (255) moving
diagonally by one pixel per frame, bouncing off the edges; the motion continues across stop/start.
"""
from __future__ import annotations

import logging
import os
import time

import genicam
import numpy as np
import pytest
from genicam import gentl

from drivers import genicam_producers
from drivers.camera import GenICamCamera, _gentl_error, discover
from drivers.camera_base import Camera, DeviceInUse, FrameTimeout
from drivers.errors import InstrumentDisconnected, InstrumentError, InstrumentTimeout

VIKY = os.path.join(os.path.dirname(genicam.__file__), "viky.cti")
SQUARE = 20


def square_position(frame: np.ndarray) -> tuple[int, int]:
    """(x, y) of the square's top-left corner, from its right/bottom edges (visible even if clipped)."""
    ys, xs = np.nonzero(frame == 0)
    assert xs.size, "no square in the frame"
    return int(xs.max()) - SQUARE + 1, int(ys.max()) - SQUARE + 1


def assert_one_square(frame: np.ndarray) -> None:
    ys, xs = np.nonzero(frame == 0)
    assert xs.size == SQUARE * SQUARE
    assert (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (SQUARE, SQUARE)
    assert set(np.unique(frame)) == {0, 255}


def assert_diagonal_steps(positions: list[tuple[int, int]]) -> None:
    """Every step of the square is one pixel in x and one in y (signs flip at the walls)."""
    steps = np.abs(np.diff(np.array(positions), axis=0))
    assert (steps == 1).all(), f"positions {positions}"


def assert_continues(before: list[tuple[int, int]], after: list[tuple[int, int]]) -> None:
    """Two runs of one trajectory: exact steps within each; across the gap the square moved
    diagonally by a few pixels (viky renders into free buffers until stop(), so a frame or two may
    have been made and discarded; an ROI misplaced by (10, 5) pixels would break the diagonal)."""
    assert_diagonal_steps(before)
    assert_diagonal_steps(after)
    dx, dy = np.abs(np.subtract(after[0], before[-1]))
    assert dx == dy and 1 <= dx <= 3, f"gap {before[-1]} -> {after[0]}"


@pytest.fixture
def camera():
    cam = GenICamCamera(cti_files=[VIKY], serial_number="2")
    cam.connect()
    yield cam
    cam.close()
    assert genicam_producers._sessions == {}, "producer left loaded after close"


def test_discovery_lists_the_three_viky_devices() -> None:
    found = discover([VIKY])
    assert [(i.serial_number, i.device_id) for i in found] == [
        ("0", "VikyTL_DEV_red"), ("1", "VikyTL_DEV_green"), ("2", "VikyTL_DEV_blue")]
    assert all(i.vendor == "Machine Vision Games Ltd." and i.model == "Viky" for i in found)


def test_opens_by_serial_number_or_by_device_id() -> None:
    with GenICamCamera(cti_files=[VIKY], serial_number="1") as cam:
        assert cam.identity().device_id == "VikyTL_DEV_green"
    with GenICamCamera(cti_files=[VIKY], device_id="VikyTL_DEV_red") as cam:
        assert cam.identity().serial_number == "0"
        assert isinstance(cam, Camera)


def test_ambiguous_or_unknown_device_is_a_clear_error() -> None:
    with pytest.raises(InstrumentDisconnected, match=r"serial_number='9'.*VikyTL_DEV_red \(serial 0\)"):
        GenICamCamera(cti_files=[VIKY], serial_number="9").connect()
    with pytest.raises(ValueError, match="3 devices match"):
        GenICamCamera(cti_files=[VIKY]).connect()
    assert genicam_producers._sessions == {}


def test_bad_producer_paths_are_rejected(tmp_path) -> None:
    missing = str(tmp_path / "nope.cti")
    with pytest.raises(FileNotFoundError, match="nope.cti"):
        GenICamCamera(cti_files=[missing], serial_number="2").connect()
    with pytest.raises(ValueError, match="must be a list"):
        GenICamCamera(cti_files=VIKY, serial_number="2")  # type: ignore[arg-type]


def test_features_are_detected_from_the_node_map(camera: GenICamCamera) -> None:
    f = camera.features()
    assert (f.exposure, f.gain, f.offsets, f.hardware_trigger, f.software_trigger) == (False,) * 5
    assert f.frame_rate and f.pixel_formats == ("RGBa8", "Mono8") and not f.mono16
    assert f.missing() == ["exposure", "gain", "offsets", "hardware_trigger", "software_trigger", "Mono16"]


def test_missing_features_are_reported_never_a_crash(camera: GenICamCamera, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        camera.configure(width=200, height=100, exposure_s=1e-3, gain_db=3.0, trigger="hardware",
                         frames_per_shot=2)
    text = caplog.text
    for expected in ("Mono16 not offered", "exposure_s=0.001 ignored", "gain_db=3 ignored",
                     "no hardware trigger", "runs free"):
        assert expected in text
    s = camera.settings()
    assert (s["pixel_format"], s["width"], s["height"], s["exposure_s"], s["gain_db"]) == \
        ("Mono8", 200, 100, None, None)
    assert s["trigger"] == "free-running" and s["trigger_selector"] is None
    assert s["frames_per_shot"] == 2 and s["identity"]["serial_number"] == "2"
    assert "Mono16" in s["missing_features"]


def test_bad_configuration_names_the_problem(camera: GenICamCamera) -> None:
    with pytest.raises(ValueError, match=r"Width=50 not allowed.*100\.\.800"):
        camera.configure(width=50, height=100)
    with pytest.raises(ValueError, match="exceeds the sensor"):
        camera.configure(width=700, height=100, offset_x=200)
    with pytest.raises(ValueError, match=r"'Mono16' is not offered.*\['RGBa8', 'Mono8'\]"):
        camera.configure(width=200, height=100, pixel_format="Mono16")
    with pytest.raises(ValueError, match="trigger='external'"):
        camera.configure(width=200, height=100, trigger="external")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frames_per_shot=0"):
        camera.configure(width=200, height=100, frames_per_shot=0)
    with pytest.raises(ValueError, match=r"frame_rate_hz=500 outside the device range 1\.\.200"):
        camera.configure(width=200, height=100, frame_rate_hz=500)
    with pytest.raises(RuntimeError, match="configure"):
        camera.start()  # the failed configure left the camera unconfigured


def test_acquires_n_frames_of_the_moving_square(camera: GenICamCamera) -> None:
    camera.configure(width=240, height=160, frame_rate_hz=200, frames_per_shot=6)
    camera.start()
    frames = camera.fetch_frames(12, timeout_s=5.0)
    assert len(frames) == 12
    for f in frames:
        assert f.shape == (160, 240) and f.dtype == np.uint8 and f.flags.c_contiguous
        assert_one_square(f)
    first, first_pos = frames[0], square_position(frames[0])
    assert_diagonal_steps([square_position(f) for f in frames])
    camera.fetch_frames(20, timeout_s=5.0)  # every buffer reused since: the copies must not change
    assert square_position(first) == first_pos
    assert not np.shares_memory(frames[0], frames[1])


def test_roi_offsets_without_offset_nodes_are_cropped_in_software(camera: GenICamCamera) -> None:
    # same device window (210 x 125) both times, so the square's trajectory is continuous
    camera.configure(width=210, height=125, frame_rate_hz=20)
    camera.start()
    full = camera.fetch_frames(4, timeout_s=5.0)
    camera.stop()
    camera.configure(width=200, height=120, offset_x=10, offset_y=5, frame_rate_hz=20)
    s = camera.settings()
    assert s["software_crop"] and (s["device_width"], s["device_height"]) == (210, 125)
    assert (s["offset_x"], s["offset_y"], s["width"], s["height"]) == (10, 5, 200, 120)
    camera.start()
    cropped = camera.fetch_frames(4, timeout_s=5.0)
    assert all(f.shape == (120, 200) for f in cropped)
    assert_continues([square_position(f) for f in full],
                     [(x + 10, y + 5) for x, y in map(square_position, cropped)])


def test_colour_only_format_is_converted_to_mono_explicitly(camera: GenICamCamera) -> None:
    camera.configure(width=200, height=120, pixel_format="RGBa8", frame_rate_hz=200)
    assert camera.settings()["mono_conversion"] == "mean(R,G,B)"
    camera.start()
    (frame,) = camera.fetch_frames(1, timeout_s=5.0)
    # blue device: the square is (R, G, B) = (0, 0, 255) -> 85, the background white -> 255
    assert frame.shape == (120, 200) and frame.dtype == np.uint8
    assert set(np.unique(frame)) == {85, 255} and (frame == 85).sum() == SQUARE * SQUARE


def test_fetch_without_start_fails_at_once(camera: GenICamCamera) -> None:
    camera.configure(width=200, height=100)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"before start\(\)"):
        camera.fetch_frames(1, timeout_s=2.0)
    assert time.monotonic() - t0 < 0.5
    with pytest.raises(ValueError, match="timeout_s=0"):
        camera.fetch_frames(1, timeout_s=0)


def test_fewer_frames_than_expected_is_a_timeout_naming_the_count(camera: GenICamCamera) -> None:
    camera.configure(width=200, height=100, frame_rate_hz=20)  # 50 ms per frame
    camera.start()
    t0 = time.monotonic()
    with pytest.raises(FrameTimeout) as info:
        camera.fetch_frames(20, timeout_s=0.3)  # ~6 frames can come
    elapsed = time.monotonic() - t0
    err = info.value
    assert isinstance(err, InstrumentTimeout)
    assert 0.3 <= elapsed < 1.2
    assert err.expected == 20 and 1 <= err.received <= 10 and len(err.frames) == err.received
    assert f"{err.received} of 20 frames arrived" in str(err)
    assert len(camera.fetch_frames(2, timeout_s=2.0)) == 2  # still usable after the timeout


def test_software_trigger_on_a_free_running_camera(camera: GenICamCamera) -> None:
    camera.configure(width=200, height=120, trigger="software", frame_rate_hz=200)
    with pytest.raises(RuntimeError, match="before start"):
        camera.software_trigger()
    camera.start()
    camera.software_trigger()  # nothing to execute on viky: frames flow by themselves
    assert len(camera.fetch_frames(1, timeout_s=5.0)) == 1


def test_gentl_errors_map_to_driver_errors() -> None:
    lost = _gentl_error("fetch", gentl.IoException("GenTL exception: io (ID: -1010)"), "cam")
    assert isinstance(lost, InstrumentDisconnected) and "device lost (IoException" in str(lost)
    other = _gentl_error("start", gentl.ErrorException("GenTL exception: Unspecified (ID: -1001)"), "cam")
    assert isinstance(other, InstrumentError) and other.code == -1001 and other.command == "start"
    busy = _gentl_error("open", gentl.ResourceInUseException("in use (ID: -1004)"), "cam")
    assert isinstance(busy, DeviceInUse)


def test_stop_and_restart(camera: GenICamCamera) -> None:
    camera.configure(width=200, height=120, frame_rate_hz=20)
    camera.start()
    before = camera.fetch_frames(3, timeout_s=5.0)
    with pytest.raises(RuntimeError, match="stop"):
        camera.configure(width=300, height=120)
    camera.stop()
    camera.stop()  # idempotent
    assert not camera.acquiring
    with pytest.raises(RuntimeError, match="before start"):
        camera.fetch_frames(1, timeout_s=0.5)
    camera.start()
    after = camera.fetch_frames(3, timeout_s=5.0)
    assert_continues([square_position(f) for f in before], [square_position(f) for f in after])


def test_two_successive_opens() -> None:
    for _ in range(2):
        with GenICamCamera(cti_files=[VIKY], serial_number="0") as cam:
            cam.configure(width=200, height=100, frame_rate_hz=200)
            cam.start()
            assert len(cam.fetch_frames(2, timeout_s=5.0)) == 2
    assert genicam_producers._sessions == {}


def test_double_open_is_device_in_use(camera: GenICamCamera) -> None:
    second = GenICamCamera(cti_files=[VIKY], serial_number="2", name="second")
    with pytest.raises(DeviceInUse, match="second: open 'VikyTL_DEV_blue': the device is already open"):
        second.connect()
    assert isinstance(DeviceInUse("x"), InstrumentDisconnected)
    camera.configure(width=200, height=100, frame_rate_hz=200)
    camera.start()
    assert len(camera.fetch_frames(1, timeout_s=5.0)) == 1  # the first handle is unaffected
    camera.close()
    with second:  # free again
        assert second.identity().serial_number == "2"


def test_two_devices_of_one_producer_at_once(camera: GenICamCamera) -> None:
    with GenICamCamera(cti_files=[VIKY], serial_number="0") as red:
        for cam in (camera, red):
            cam.configure(width=200, height=100, frame_rate_hz=200)
            cam.start()
        assert len(red.fetch_frames(2, timeout_s=5.0)) == 2
        assert len(camera.fetch_frames(2, timeout_s=5.0)) == 2


def test_release_is_clean_after_errors() -> None:
    cam = GenICamCamera(cti_files=[VIKY], serial_number="2")
    with pytest.raises(FrameTimeout):
        with cam:
            cam.configure(width=200, height=100, frame_rate_hz=1)
            cam.start()
            cam.fetch_frames(5, timeout_s=0.1)  # raises while acquiring; the with block closes
    assert not cam.connected
    cam.close()  # twice is fine
    with GenICamCamera(cti_files=[VIKY], serial_number="2") as again:
        again.configure(width=200, height=100, frame_rate_hz=200)
        again.start()
        assert len(again.fetch_frames(1, timeout_s=5.0)) == 1


def test_calls_on_a_closed_camera_raise_disconnected() -> None:
    cam = GenICamCamera(cti_files=[VIKY], serial_number="2")
    for call in (cam.features, cam.settings, cam.start, cam.identity,
                 lambda: cam.configure(width=200, height=100),
                 lambda: cam.fetch_frames(1, timeout_s=0.1)):
        with pytest.raises(InstrumentDisconnected):
            call()
    cam.stop()  # a no-op, not an error
