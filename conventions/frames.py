"""The frames of one shot, in the order the camera delivers them and the run file stores them."""
from __future__ import annotations

FRAME_NAMES: tuple[str, ...] = ("atoms2", "atoms1", "ref2", "ref1", "dark")
"""|2> atoms, |1> atoms (one exposure separation later, 1.5 ms by default), the reference of each
(probe light without atoms, same pulse length), and a dark frame (no probe light)."""

LIT_FRAMES: tuple[str, ...] = FRAME_NAMES[:4]
"""The frames taken with probe light, in order."""
