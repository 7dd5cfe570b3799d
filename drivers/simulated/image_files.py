"""The virtual lab's sensor for a camera emulator that exposes image files.

Basler's camera emulator (pylon CamEmu, in the pypylon wheel) has no trigger input and no sensor:
with ``ImageFileMode = On`` and ``ImageFilename`` = a directory, every frame it acquires is the
next file of that directory (sorted by name, listed when acquisition starts, each file read when
its frame is triggered). :class:`ImageFileSensor` is what the atoms' light falls on in the
emulated real lab: after each program of the card the virtual lab writes the shot's frames, in
exposure order, as ``frame-00.tiff``, ``frame-01.tiff`` ... (16-bit grey, uncompressed baseline
TIFF), replacing each file atomically and removing files of frames the shot did not have.

Counts: the simulated photo-electrons rounded and clipped to the ADC's ``adc_bits`` (as the virtual
camera digitises them), stored as uint16.
"""
from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

FRAME_PATTERN = "frame-{:02d}.tiff"


def tiff_bytes(image: np.ndarray) -> bytes:
    """An uncompressed little-endian baseline TIFF of a 2-D uint16 image (one strip, BlackIsZero)."""
    a = np.ascontiguousarray(image)
    if a.ndim != 2 or a.dtype != np.uint16:
        raise ValueError(f"tiff_bytes: expected a 2-D uint16 image, got {a.dtype} {a.shape}")
    h, w = a.shape
    data = a.astype("<u2", copy=False).tobytes()
    # IFD entries: tag, type (3 SHORT, 4 LONG, 5 RATIONAL), count, value/offset
    n_entries = 12
    ifd_offset = 8
    ifd_size = 2 + 12 * n_entries + 4
    rational_offset = ifd_offset + ifd_size           # X and Y resolution: 72/1 each
    data_offset = rational_offset + 16
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 16), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, data_offset), (277, 3, 1, 1), (278, 4, 1, h), (279, 4, 1, len(data)),
               (282, 5, 1, rational_offset), (283, 5, 1, rational_offset + 8), (296, 3, 1, 1)]
    assert len(entries) == n_entries
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_offset))
    out += struct.pack("<H", n_entries)
    for tag, typ, count, value in entries:
        packed = struct.pack("<HI", value, 0)[:4] if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + packed
    out += struct.pack("<I", 0)                        # no next IFD
    out += struct.pack("<IIII", 72, 1, 72, 1)
    assert len(out) == data_offset
    return bytes(out) + data


def digitise(frame: np.ndarray, adc_bits: int) -> np.ndarray:
    """Photo-electron counts -> uint16 ADC counts: rounded, clipped to 0 .. 2**adc_bits - 1."""
    full = (1 << adc_bits) - 1
    values = frame if np.issubdtype(frame.dtype, np.integer) else np.rint(frame)
    return np.clip(values, 0, full).astype(np.uint16)


class ImageFileSensor:
    """Writes each shot's frames into ``directory`` for a file-reading camera emulator.

    ``deliver(frames, times_s)`` has the virtual camera's signature (the edge times are not needed:
    the emulator times nothing). ``shots_written`` counts deliveries.
    """

    def __init__(self, directory: str | os.PathLike[str], *, adc_bits: int = 16) -> None:
        if not 1 <= int(adc_bits) <= 16:
            raise ValueError(f"image-file sensor: adc_bits={adc_bits!r}: expected 1..16")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.adc_bits = int(adc_bits)
        self.shots_written = 0
        self._lock = threading.Lock()

    def deliver(self, frames: Iterable[np.ndarray], times_s: Iterable[float] | None = None) -> int:
        """Write the frames in order (replacing the previous shot's); returns how many."""
        images = [digitise(np.asarray(f), self.adc_bits) for f in frames]
        with self._lock:
            for i, image in enumerate(images):
                final = self.directory / FRAME_PATTERN.format(i)
                tmp = self.directory / f".{final.name}.part"     # not a .tiff: never listed
                tmp.write_bytes(tiff_bytes(image))
                os.replace(tmp, final)
            for stale in self.directory.glob("frame-*.tiff"):
                try:
                    index = int(stale.stem.split("-", 1)[1])
                except ValueError:
                    continue
                if index >= len(images):
                    stale.unlink(missing_ok=True)
            self.shots_written += 1
        return len(images)

    def close(self) -> None:
        """Nothing to release (the files stay for the emulator)."""
