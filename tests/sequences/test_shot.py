"""ShotRecord: validation, read-only frames, failed shots, metadata."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sequences.shot import FRAME_NAMES, ShotClock, ShotError, ShotRecord


def _frames(f: int = 5, h: int = 4, w: int = 6) -> np.ndarray:
    return np.arange(f * h * w, dtype=np.uint16).reshape(f, h, w)


def _ok(**kw):
    args = dict(index=3, cycle=1, sequence_index=0, direction="x", frames=_frames(),
                settings={"mw.phase_deg": 90.0, "mw.output": True, "idn": "R&S"},
                timing=ShotClock().finish())
    args.update(kw)
    return ShotRecord.ok(**args)


def test_ok_record_has_named_readonly_frames_and_json_metadata() -> None:
    shot = _ok()
    assert shot.is_ok and shot.frame_names == FRAME_NAMES
    np.testing.assert_array_equal(shot.frame("atoms1"), _frames()[1])
    with pytest.raises(ValueError):
        shot.frames[0, 0, 0] = 7
    with pytest.raises(TypeError):
        shot.settings["x"] = 1  # type: ignore[index]
    meta = json.loads(json.dumps(shot.metadata()))
    assert meta["direction"] == "x" and meta["settings"]["mw.phase_deg"] == 90.0
    assert meta["end_monotonic_s"] >= meta["start_monotonic_s"]
    assert meta["start_utc"].endswith("+00:00")


def test_failed_record_needs_reason_and_has_no_frames() -> None:
    shot = ShotRecord.failed(index=0, cycle=0, sequence_index=2, direction="z",
                             reason="camera: 3 of 5 frames", settings={},
                             timing=ShotClock().finish(), attempt=2)
    assert not shot.is_ok and shot.frames is None and shot.attempt == 2
    with pytest.raises(ShotError, match="no frames"):
        shot.frame("dark")
    with pytest.raises(ShotError, match="must say why"):
        ShotRecord.failed(index=0, cycle=0, sequence_index=0, direction="z", reason=" ",
                          settings={}, timing=ShotClock().finish())


@pytest.mark.parametrize("kw, match", [
    ({"direction": "w"}, "direction = 'w'"),
    ({"index": -1}, "index = -1"),
    ({"cycle": True}, "cycle = True"),
    ({"frames": _frames().astype(np.float32)}, "float32"),
    ({"frames": _frames()[0]}, r"shape \(4, 6\)"),
    ({"frames": _frames(f=4)}, "4 frames but frame_names lists 5"),
    ({"settings": {"a": [1, 2]}}, r"settings\['a'\]"),
    ({"settings": {"a": float("nan")}}, "finite"),
    ({"frame_names": ("a", "a", "b", "c", "d")}, "unique"),
])
def test_bad_fields_are_named(kw, match) -> None:
    with pytest.raises(ShotError, match=match):
        _ok(**kw)


def test_numpy_scalars_in_settings_become_python_scalars() -> None:
    shot = _ok(settings={"f": np.float64(1.5), "n": np.int32(3)})
    assert type(shot.settings["f"]) is float and type(shot.settings["n"]) is int
    with pytest.raises(ShotError, match="no frame 'atoms3'"):
        shot.frame("atoms3")
