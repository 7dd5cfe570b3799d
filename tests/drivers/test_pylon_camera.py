"""The pylon driver against Basler's own camera emulator (pylon CamEmu, from the pypylon wheel), and
the emulated lab's image files read back through it bit for bit."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from drivers.camera_base import FrameTimeout
from drivers.errors import InstrumentDisconnected, ProtocolError
from drivers.simulated.image_files import ImageFileSensor, digitise, tiff_bytes
from sequences.camera_check import CameraRefused, choose_trigger

pytest.importorskip("pypylon", reason="pypylon is a test dependency (pip install -e '.[test]')")
from drivers.pylon_camera import PylonCamera  # noqa: E402

W, H = 48, 40


def frames(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 60000, (H, W)).astype(np.uint16) for _ in range(n)]


def camera(directory: Path, n: int) -> PylonCamera:
    cam = PylonCamera(serial_number="0815-0000", image_dir=directory)
    cam.connect()
    cam.configure(width=W, height=H, pixel_format="Mono16", exposure_s=100e-6, trigger="software",
                  frames_per_shot=n)
    return cam


def shot(cam: PylonCamera, n: int) -> list[np.ndarray]:
    cam.start()
    for _ in range(n):
        cam.software_trigger()
    got = cam.fetch_frames(n, 5.0)
    cam.stop()
    return got


def test_the_emulator_serves_the_written_frames_bit_exactly_shot_after_shot(tmp_path: Path) -> None:
    sensor = ImageFileSensor(tmp_path, adc_bits=16)
    cam = camera(tmp_path, 5)
    try:
        first = frames(1, 5)
        sensor.deliver(first)
        assert all(np.array_equal(a, b) for a, b in zip(shot(cam, 5), first, strict=True))
        second = frames(2, 3)                       # fewer frames: the stale files are removed
        sensor.deliver(second)
        assert sorted(p.name for p in tmp_path.glob("*.tiff")) == [f"frame-0{i}.tiff" for i in range(3)]
        assert all(np.array_equal(a, b) for a, b in zip(shot(cam, 3), second, strict=True))
        s = cam.settings()
        assert s["emulator"] and s["trigger"] == "software" and s["trigger_source"] == "Software"
        assert (s["width"], s["height"], s["pixel_format"]) == (W, H, "Mono16")
        assert s["exposure_s"] == pytest.approx(100e-6)
    finally:
        cam.close()


def test_the_emulator_has_no_trigger_input_so_a_run_needs_the_software_trigger(tmp_path: Path) -> None:
    cam = PylonCamera(image_dir=tmp_path)
    cam.connect()
    try:
        f = cam.features()
        assert not f.hardware_trigger and f.software_trigger and f.mono16
        assert cam.identity().model == "Emulation"
        with pytest.raises(CameraRefused, match="no hardware trigger.*allow_software_trigger"):
            choose_trigger(f, allow_software_trigger=False, camera="CamEmu")
        assert choose_trigger(f, allow_software_trigger=True, camera="CamEmu") == "software"
    finally:
        cam.close()


def test_a_missing_image_is_a_named_fault_not_a_frame(tmp_path: Path) -> None:
    cam = camera(tmp_path, 1)                       # the directory holds no image
    try:
        cam.start()
        cam.software_trigger()
        with pytest.raises((ProtocolError, FrameTimeout)) as info:
            cam.fetch_frames(1, 2.0)
        assert "frame" in str(info.value)
    finally:
        cam.close()


def test_no_device_with_that_serial_number_names_what_pylon_found(tmp_path: Path) -> None:
    cam = PylonCamera(serial_number="NOPE", image_dir=tmp_path)
    with pytest.raises(InstrumentDisconnected, match=r"no device with serial_number='NOPE'; found: .*0815-0000"):
        cam.connect()


def test_the_tiff_writer_and_digitiser_check_their_input() -> None:
    with pytest.raises(ValueError, match="expected a 2-D uint16 image"):
        tiff_bytes(np.zeros((3, 3), np.float32))
    data = tiff_bytes(np.arange(12, dtype=np.uint16).reshape(3, 4))
    assert data[:4] == b"II*\x00" and data[-24:] == np.arange(12, dtype="<u2").tobytes()
    assert digitise(np.array([[-3.2, 4.6, 70000.0]]), 12).tolist() == [[0, 5, 4095]]
