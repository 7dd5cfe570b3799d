"""The plug-in point for instruments: Python entry points, one group per instrument role.

| group | an entry point names | constructed as |
| --- | --- | --- |
| ``steerlab.microwave_sources`` | a class (``sequences.instruments.Microwave``) | ``cls(address, timeout_s=...)`` |
| ``steerlab.timing_cards`` | a class (``sequences.instruments.TimingCard``) | ``cls(address, timeout_s=...)`` |
| ``steerlab.cameras`` | a factory returning a ``drivers.camera_base.Camera`` | ``factory(**options)`` |

The shipped drivers register the same way, in steerlab's own ``pyproject.toml``
(``sma100b``, ``synthhd``; ``prawndo``; ``genicam``); another package adds a kind by declaring an
entry point in its own metadata, with no change to steerlab (docs/adding-an-instrument.md). The
lab configuration selects a kind by name (``[microwave] kind = "synthhd"``).
"""
from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

GROUPS = {"microwave": "steerlab.microwave_sources", "timing_card": "steerlab.timing_cards",
          "camera": "steerlab.cameras"}


def _entry_points(role: str) -> dict[str, EntryPoint]:
    if role not in GROUPS:
        raise ValueError(f"unknown instrument role {role!r}: expected one of {', '.join(GROUPS)}")
    return {ep.name: ep for ep in entry_points(group=GROUPS[role])}


def available(role: str) -> list[str]:
    """The kinds installed for ``role`` ('microwave', 'timing_card' or 'camera'), sorted."""
    return sorted(_entry_points(role))


def load(role: str, kind: str) -> Any:
    """The class (or camera factory) registered as ``kind`` for ``role``.

    ValueError naming the installed kinds if there is none; the entry point's own import error
    (with the module it names) if it does not load.
    """
    eps = _entry_points(role)
    if kind not in eps:
        installed = ", ".join(sorted(eps)) or "none (is steerlab installed? pip install -e .)"
        raise ValueError(f"{role} kind {kind!r} is not installed (entry-point group "
                         f"{GROUPS[role]}): installed kinds: {installed}")
    return eps[kind].load()
