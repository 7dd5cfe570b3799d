"""VirtualCamera: the camera interface fed by the virtual lab (hardware edges) or a frame source."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from drivers.camera_base import Camera, FrameTimeout
from drivers.errors import InstrumentDisconnected, InstrumentTimeout
from drivers.simulated.virtual_camera import VirtualCamera

H, W = 64, 96


def sensor_frame(value_offset: int = 0) -> np.ndarray:
    """A full-sensor uint16 frame whose every pixel is distinct: 10 * (row * W + column) + offset."""
    assert 10 * H * W + value_offset < 2**16
    return (10 * np.arange(H * W, dtype=np.uint32).reshape(H, W) + value_offset).astype(np.uint16)


@pytest.fixture
def camera():
    cam = VirtualCamera(sensor_width=W, sensor_height=H, serial_number="VC42")
    cam.connect()
    yield cam
    cam.close()


def test_implements_the_camera_interface(camera: VirtualCamera) -> None:
    assert isinstance(camera, Camera)
    assert camera.identity().as_dict() == {"vendor": "steerlab", "model": "VirtualCamera",
                                           "serial_number": "VC42", "device_id": "virtual-VC42", "version": "1"}
    f = camera.features()
    assert f.hardware_trigger and f.software_trigger and f.offsets and f.exposure and f.mono16
    assert f.missing() == ["gain", "frame_rate"]


def test_hardware_edge_exposes_the_roi_in_mono16(camera: VirtualCamera) -> None:
    camera.configure(width=40, height=20, offset_x=30, offset_y=10, exposure_s=50e-6,
                     trigger="hardware", trigger_line="Line1", frames_per_shot=2)
    assert not camera.armed_for_hardware_trigger
    camera.start()
    assert camera.armed_for_hardware_trigger
    full = sensor_frame()
    assert camera.expose(full)
    (frame,) = camera.fetch_frames(1, timeout_s=1.0)
    assert frame.dtype == np.uint16 and frame.shape == (20, 40)
    np.testing.assert_array_equal(frame, full[10:30, 30:70])
    s = camera.settings()
    assert (s["pixel_format"], s["trigger"], s["trigger_source"], s["exposure_s"]) == \
        ("Mono16", "hardware", "Line1", 50e-6)
    assert (s["offset_x"], s["offset_y"], s["width"], s["height"], s["frames_per_shot"]) == (30, 10, 40, 20, 2)


def test_narrower_formats_keep_the_most_significant_bits(camera: VirtualCamera) -> None:
    full = np.full((H, W), 0x1234, dtype=np.uint16)
    for fmt, expected, dtype in (("Mono8", 0x12, np.uint8), ("Mono12", 0x123, np.uint16)):
        camera.configure(width=W, height=H, pixel_format=fmt)
        camera.start()
        camera.expose(full)
        (frame,) = camera.fetch_frames(1, timeout_s=1.0)
        assert frame.dtype == dtype and (frame == expected).all()
        camera.stop()


def test_float_frames_are_rounded_and_clipped_to_the_adc(camera: VirtualCamera) -> None:
    camera.configure(width=3, height=1)
    camera.start()
    full = np.zeros((H, W))
    full[0, :3] = (-5.0, 1234.6, 7e4)
    camera.expose(full)
    (frame,) = camera.fetch_frames(1, timeout_s=1.0)
    assert frame.tolist() == [[0, 1235, 65535]]


def test_edges_while_not_armed_are_missed(camera: VirtualCamera) -> None:
    full = sensor_frame()
    assert not camera.expose(full)  # not configured
    camera.configure(width=W, height=H, trigger="software")
    camera.start()
    assert not camera.expose(full)  # armed for software trigger only
    camera.stop()
    camera.configure(width=W, height=H)
    assert not camera.expose(full)  # configured, not started
    assert camera.stats.triggers_missed == 3
    camera.start()
    with pytest.raises(FrameTimeout, match="0 of 1 frames arrived"):
        camera.fetch_frames(1, timeout_s=0.05)


def test_software_trigger_asks_the_frame_source() -> None:
    calls: list[int] = []

    def source() -> np.ndarray:
        calls.append(1)
        return sensor_frame(len(calls))

    with VirtualCamera(sensor_width=W, sensor_height=H, frame_source=source) as cam:
        cam.configure(width=W, height=H, trigger="software")
        with pytest.raises(RuntimeError, match="before start"):
            cam.software_trigger()
        cam.start()
        cam.software_trigger()
        cam.software_trigger()
        a, b = cam.fetch_frames(2, timeout_s=1.0)
        assert len(calls) == 2 and a[0, 0] == 1 and b[0, 0] == 2
        cam.stop()
        cam.configure(width=W, height=H, trigger="hardware")
        cam.start()
        with pytest.raises(RuntimeError, match="hardware trigger"):
            cam.software_trigger()
    with VirtualCamera(sensor_width=W, sensor_height=H) as bare:
        bare.configure(width=W, height=H, trigger="software")
        bare.start()
        with pytest.raises(RuntimeError, match="frame_source"):
            bare.software_trigger()


def test_frames_from_the_lab_thread_arrive_in_order(camera: VirtualCamera) -> None:
    camera.configure(width=W, height=H, frames_per_shot=5)
    camera.start()

    def lab() -> None:
        for k in range(5):
            time.sleep(0.01)
            camera.expose(sensor_frame(k))

    thread = threading.Thread(target=lab, name="virtual-lab")
    thread.start()
    try:
        frames = camera.fetch_frames(5, timeout_s=5.0)
    finally:
        thread.join()
    assert [int(f[0, 0]) for f in frames] == [0, 1, 2, 3, 4]
    assert camera.stats.exposures_queued == 5


def test_dropped_frames_give_a_timeout_naming_the_count(camera: VirtualCamera) -> None:
    camera.configure(width=W, height=H, frames_per_shot=5)
    camera.start()
    camera.drop_next_frames(2)
    assert camera.deliver(sensor_frame(k) for k in range(5)) == 3
    with pytest.raises(FrameTimeout) as info:
        camera.fetch_frames(5, timeout_s=0.1)
    err = info.value
    assert isinstance(err, InstrumentTimeout) and "3 of 5 frames arrived" in str(err)
    assert [int(f[0, 0]) for f in err.frames] == [2, 3, 4] and camera.stats.frames_dropped == 2
    camera.deliver(sensor_frame(k) for k in range(5, 10))  # the fault is spent
    assert len(camera.fetch_frames(5, timeout_s=1.0)) == 5


def test_late_delivery(camera: VirtualCamera) -> None:
    camera.configure(width=W, height=H)
    camera.start()
    camera.set_delivery_delay(0.2)
    t0 = time.monotonic()
    camera.expose(sensor_frame())
    with pytest.raises(FrameTimeout, match="0 of 1"):
        camera.fetch_frames(1, timeout_s=0.05)
    assert len(camera.fetch_frames(1, timeout_s=2.0)) == 1
    assert time.monotonic() - t0 >= 0.19
    camera.clear_faults()
    camera.expose(sensor_frame())
    assert len(camera.fetch_frames(1, timeout_s=0.05)) == 1


def test_unplug_during_fetch_and_reconnect(camera: VirtualCamera) -> None:
    camera.configure(width=W, height=H)
    camera.start()
    timer = threading.Timer(0.1, camera.unplug)
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(InstrumentDisconnected, match="unplugged"):
            camera.fetch_frames(1, timeout_s=5.0)
    finally:
        timer.join()
    assert time.monotonic() - t0 < 2.0
    assert not camera.expose(sensor_frame())
    with pytest.raises(InstrumentDisconnected):
        camera.configure(width=W, height=H)
    camera.close()
    with pytest.raises(InstrumentDisconnected, match="VC42"):
        camera.connect()
    camera.plug_in()
    camera.connect()
    camera.configure(width=W, height=H)
    camera.start()
    camera.expose(sensor_frame())
    assert len(camera.fetch_frames(1, timeout_s=1.0)) == 1


def test_full_buffers_lose_frames() -> None:
    small = VirtualCamera(sensor_width=W, sensor_height=H, buffer_count=2)
    with small:
        small.configure(width=W, height=H)
        small.start()
        assert small.deliver([sensor_frame(k) for k in range(3)]) == 2
        assert small.stats.frames_overflowed == 1
        assert [int(f[0, 0]) for f in small.fetch_frames(2, timeout_s=1.0)] == [0, 1]


def test_stop_discards_pending_frames_and_restart_works(camera: VirtualCamera) -> None:
    camera.configure(width=W, height=H)
    camera.start()
    camera.expose(sensor_frame(1))
    camera.stop()
    with pytest.raises(RuntimeError, match="before start"):
        camera.fetch_frames(1, timeout_s=0.1)
    camera.start()
    with pytest.raises(FrameTimeout):
        camera.fetch_frames(1, timeout_s=0.05)
    camera.expose(sensor_frame(2))
    assert int(camera.fetch_frames(1, timeout_s=1.0)[0][0, 0]) == 2


def test_bad_configuration_and_frames_name_the_problem(camera: VirtualCamera) -> None:
    with pytest.raises(ValueError, match=r"exceeds the 96x64 sensor"):
        camera.configure(width=90, height=10, offset_x=10)
    with pytest.raises(ValueError, match=r"trigger_line='Line9'.*Line0"):
        camera.configure(width=W, height=H, trigger_line="Line9")
    with pytest.raises(ValueError, match="exposure_s=20 outside"):
        camera.configure(width=W, height=H, exposure_s=20.0)
    with pytest.raises(ValueError, match="'Mono10' is not offered"):
        camera.configure(width=W, height=H, pixel_format="Mono10")
    with pytest.raises(ValueError, match="width=0"):
        camera.configure(width=0, height=H)
    camera.configure(width=W, height=H)
    camera.start()
    with pytest.raises(RuntimeError, match="stop"):
        camera.configure(width=W, height=H)
    with pytest.raises(ValueError, match=r"shape \(10, 10\).*\(64, 96\)"):
        camera.expose(np.zeros((10, 10)))
    with pytest.raises(ValueError, match="n=0"):
        camera.fetch_frames(0, timeout_s=1.0)


def test_calls_before_connect_raise_disconnected() -> None:
    cam = VirtualCamera()
    for call in (cam.features, cam.settings, cam.start, lambda: cam.configure(width=8, height=8),
                 lambda: cam.fetch_frames(1, timeout_s=0.1)):
        with pytest.raises(InstrumentDisconnected):
            call()
    cam.stop()
    cam.close()
