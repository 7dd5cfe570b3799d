"""The record of one shot: frames, measurement direction, instrument settings read back, timestamps.

Conventions
- ``index`` counts every attempted shot of a run from 0 (failed attempts included), so it is unique
  in a run file. ``cycle`` is the repetition of the direction cycle, ``sequence_index`` the position
  inside it; a retried shot keeps ``cycle``/``sequence_index``/``direction`` and gets a new ``index``
  and ``attempt``. Every plan slot (cycle, sequence_index) therefore has exactly one 'ok' record.
- ``frames``: (F, H, W) uint16 camera counts, frame order given by ``frame_names`` (the virtual lab
  and the sequencer use ``FRAME_NAMES``: atoms |2>, atoms |1>, reference |2>, reference |1>, dark).
  A failed shot has no frames (``None``).
- Timestamps: UTC ISO 8601 with microseconds (wall clock, for people) and ``time.monotonic()``
  seconds (for durations within one process).
"""
from __future__ import annotations

import math
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from conventions.frames import FRAME_NAMES

DIRECTIONS: tuple[str, ...] = ("x", "y", "z")
STATUSES: tuple[str, ...] = ("ok", "failed")

Direction = Literal["x", "y", "z"]
Status = Literal["ok", "failed"]
Scalar = bool | int | float | str


class ShotError(ValueError):
    """A shot record is inconsistent; the message names the field, its value and what was expected."""


def utc_now_iso() -> str:
    """The current UTC time as ISO 8601 with microseconds, e.g. ``2025-01-31T12:00:00.000001+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class ShotTime:
    """Start and end of a shot: UTC ISO strings and ``time.monotonic()`` seconds."""

    start_utc: str
    end_utc: str
    start_monotonic_s: float
    end_monotonic_s: float

    @property
    def duration_s(self) -> float:
        """Duration of the shot in seconds (monotonic clock)."""
        return self.end_monotonic_s - self.start_monotonic_s


class ShotClock:
    """Takes a shot's start time on creation and its end time on ``finish()``."""

    def __init__(self) -> None:
        self.start_utc = utc_now_iso()
        self.start_monotonic_s = time.monotonic()

    def finish(self) -> ShotTime:
        """The shot's times, ending now."""
        return ShotTime(self.start_utc, utc_now_iso(), self.start_monotonic_s, time.monotonic())


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ShotError(f"ShotRecord.{name} = {value!r}: expected an integer >= {minimum}")


def _check_settings(settings: Mapping[str, Scalar]) -> dict[str, Scalar]:
    if not isinstance(settings, Mapping):
        raise ShotError(f"ShotRecord.settings = {settings!r}: expected a mapping str -> scalar")
    out: dict[str, Scalar] = {}
    for key, value in settings.items():
        if not isinstance(key, str) or not key:
            raise ShotError(f"ShotRecord.settings key {key!r}: expected a non-empty string")
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(value, (bool, int, float, str)):
            raise ShotError(f"ShotRecord.settings[{key!r}] = {value!r}: expected bool, int, float "
                            "or str")
        if isinstance(value, float) and not math.isfinite(value):
            raise ShotError(f"ShotRecord.settings[{key!r}] = {value!r}: expected a finite number")
        out[key] = value
    return out


@dataclass(frozen=True, eq=False)
class ShotRecord:
    """One attempted shot. Build it with ``ShotRecord.ok(...)`` or ``ShotRecord.failed(...)``.

    ``frames`` is a read-only view; the producer hands the array over and must not modify it.
    """

    index: int
    cycle: int
    sequence_index: int
    direction: Direction
    frames: NDArray[np.uint16] | None
    frame_names: tuple[str, ...]
    settings: Mapping[str, Scalar]
    timing: ShotTime
    status: Status = "ok"
    reason: str = ""
    attempt: int = 1
    extra: Mapping[str, Scalar] = field(default_factory=dict)
    #: zlib.crc32 of the frames as little-endian uint16 bytes, computed when the shot is assembled
    #: (in the producer's thread), so the checksum covers the whole way to the disk
    frames_crc32: int = field(default=-1, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_int("index", self.index, 0)
        _check_int("cycle", self.cycle, 0)
        _check_int("sequence_index", self.sequence_index, 0)
        _check_int("attempt", self.attempt, 1)
        if self.direction not in DIRECTIONS:
            raise ShotError(f"ShotRecord.direction = {self.direction!r}: expected one of x, y, z")
        if self.status not in STATUSES:
            raise ShotError(f"ShotRecord.status = {self.status!r}: expected 'ok' or 'failed'")
        if not isinstance(self.reason, str):
            raise ShotError(f"ShotRecord.reason = {self.reason!r}: expected a string")
        if self.status == "failed" and not self.reason.strip():
            raise ShotError("ShotRecord.reason is empty: a failed shot must say why it failed")
        names = tuple(self.frame_names)
        if not names or any(not isinstance(n, str) or not n for n in names) \
                or len(set(names)) != len(names):
            raise ShotError(f"ShotRecord.frame_names = {self.frame_names!r}: expected unique "
                            "non-empty strings")
        object.__setattr__(self, "frame_names", names)
        frames = self.frames
        if frames is None:
            if self.status == "ok":
                raise ShotError("ShotRecord.frames is None: an 'ok' shot must carry its frames")
        else:
            if not isinstance(frames, np.ndarray) or frames.dtype != np.uint16 or frames.ndim != 3:
                desc = (f"{frames.dtype} array of shape {frames.shape}"
                        if isinstance(frames, np.ndarray) else type(frames).__name__)
                raise ShotError(f"ShotRecord.frames: got {desc}, expected a (F, H, W) uint16 "
                                "array")
            if frames.shape[0] != len(names):
                raise ShotError(f"ShotRecord.frames has {frames.shape[0]} frames but frame_names "
                                f"lists {len(names)}: {names}")
            view = frames.view()
            view.flags.writeable = False
            object.__setattr__(self, "frames", view)
            if self.frames_crc32 < 0:
                object.__setattr__(self, "frames_crc32",
                                   zlib.crc32(np.ascontiguousarray(view, dtype="<u2")))  # type: ignore[arg-type]  # an ndarray is a buffer (stubs: Py 3.12 __buffer__)
        object.__setattr__(self, "settings", MappingProxyType(_check_settings(self.settings)))
        object.__setattr__(self, "extra", MappingProxyType(_check_settings(self.extra)))

    @classmethod
    def ok(cls, *, index: int, cycle: int, sequence_index: int, direction: Direction,
           frames: NDArray[np.uint16], settings: Mapping[str, Scalar], timing: ShotTime,
           frame_names: tuple[str, ...] = FRAME_NAMES, attempt: int = 1,
           extra: Mapping[str, Scalar] | None = None) -> ShotRecord:
        """A completed shot with its frames."""
        return cls(index, cycle, sequence_index, direction, frames, frame_names, settings, timing,
                   "ok", "", attempt, dict(extra or {}))

    @classmethod
    def failed(cls, *, index: int, cycle: int, sequence_index: int, direction: Direction,
               reason: str, settings: Mapping[str, Scalar], timing: ShotTime,
               frame_names: tuple[str, ...] = FRAME_NAMES, attempt: int = 1,
               extra: Mapping[str, Scalar] | None = None) -> ShotRecord:
        """A shot that failed (no frames), with the reason in words."""
        return cls(index, cycle, sequence_index, direction, None, frame_names, settings, timing,
                   "failed", reason, attempt, dict(extra or {}))

    @property
    def is_ok(self) -> bool:
        """True for a completed shot."""
        return self.status == "ok"

    def frame(self, name: str) -> NDArray[np.uint16]:
        """One frame by name (read-only (H, W) uint16 view)."""
        if self.frames is None:
            raise ShotError(f"shot {self.index} failed ({self.reason}): it has no frames")
        try:
            return self.frames[self.frame_names.index(name)]
        except ValueError:
            raise ShotError(f"shot {self.index} has no frame {name!r}; frames are "
                            f"{self.frame_names}") from None

    def metadata(self) -> dict[str, object]:
        """Everything except the frames, as plain JSON-able values."""
        return {
            "index": self.index, "cycle": self.cycle, "sequence_index": self.sequence_index,
            "direction": self.direction, "status": self.status, "reason": self.reason,
            "attempt": self.attempt, "frame_names": list(self.frame_names),
            "start_utc": self.timing.start_utc, "end_utc": self.timing.end_utc,
            "start_monotonic_s": self.timing.start_monotonic_s,
            "end_monotonic_s": self.timing.end_monotonic_s,
            "settings": dict(self.settings), "extra": dict(self.extra),
        }
