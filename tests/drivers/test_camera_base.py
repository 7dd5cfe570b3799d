"""Pure parts of the camera interface: configuration checks, pixel-format choice, colour to mono."""
from __future__ import annotations

import math

import numpy as np
import pytest

from drivers.camera_base import (CameraConfig, FrameTimeout, choose_pixel_format, colour_to_mono,
                                 frame_dtype)


@pytest.mark.parametrize("available, expected", [
    (("Mono8", "Mono12", "Mono16", "Mono14"), "Mono16"),
    (("Mono8", "Mono12", "Mono10"), "Mono12"),
    (("Mono8", "Mono12p", "RGB8"), "Mono8"),
    (("BayerRG8", "RGB8", "RGBa8"), "RGB8"),
    (("RGB8", "RGB16"), "RGB16"),
])
def test_pixel_format_preference(available, expected) -> None:
    assert choose_pixel_format(available, None) == expected


def test_no_usable_pixel_format() -> None:
    with pytest.raises(ValueError, match=r"no usable pixel format among \['BayerRG8', 'YUV422_8'\]"):
        choose_pixel_format(("BayerRG8", "YUV422_8"), None)


def test_frame_dtypes() -> None:
    assert frame_dtype("Mono8") == np.uint8 and frame_dtype("Mono12") == np.uint16
    assert frame_dtype("RGB16") == np.uint16
    with pytest.raises(ValueError, match="wider than 16"):
        frame_dtype("Mono32")


def test_colour_to_mono_is_the_rounded_mean_of_rgb() -> None:
    bgra = np.array([[[0, 0, 255, 7], [1, 1, 0, 0], [2, 2, 0, 9]]], dtype=np.uint8)
    assert colour_to_mono(bgra, "BGRa8").tolist() == [[85, 1, 1]]  # 85, 2/3 -> 1, 4/3 -> 1
    rgb16 = np.array([[[65535, 65535, 65535], [65535, 0, 0]]], dtype=np.uint16)
    out = colour_to_mono(rgb16, "RGB16")
    assert out.dtype == np.uint16 and out.tolist() == [[65535, 21845]]
    with pytest.raises(ValueError, match=r"expected shape \(h, w, 4\) for RGBa8"):
        colour_to_mono(np.zeros((2, 2, 3), np.uint8), "RGBa8")


@pytest.mark.parametrize("kwargs, message", [
    ({"width": True}, "width=True must be an integer"),
    ({"height": 2.0}, "height=2.0 must be an integer"),
    ({"offset_x": -1}, "offset_x=-1 must be >= 0"),
    ({"exposure_s": math.nan}, "exposure_s=nan must be finite and > 0"),
    ({"exposure_s": 0}, "exposure_s=0 must be finite and > 0"),
    ({"gain_db": math.inf}, "gain_db=inf must be a finite number"),
    ({"trigger_line": ""}, "trigger_line='' must be a line name"),
    ({"pixel_format": 16}, "pixel_format=16 must be a string"),
])
def test_configuration_checks(kwargs, message) -> None:
    args = {"width": 10, "height": 10} | kwargs
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CameraConfig(**args)


def test_frame_timeout_message() -> None:
    err = FrameTimeout(4, 1, 0.5, frames=[np.zeros(1)], instrument="cam")
    assert str(err) == "cam: no reply to 'fetch_frames(n=4)' within 0.5 s: 1 of 4 frames arrived"
    assert (err.expected, err.received, err.timeout_s, len(err.frames)) == (4, 1, 0.5, 1)
