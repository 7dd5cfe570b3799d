"""The PrawnDO firmware's reply vocabulary: run and clock status, error lines, driver exceptions.

Error lines are those of ``prawn_do.c`` v1.3.0 and the facts sheet; each maps to a short code carried
by ``InstrumentError.code`` (``CardBusyError`` for commands refused while a sequence runs).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from drivers.errors import DriverError, InstrumentError

HELD_PREFIX = b"Error: the card is held by another host"
"""First line sent to a second host while another holds the card (the emulator; a real USB port
is opened exclusively instead, and the second open fails)."""

ECHO_PREFIXES = (b"Invalid command: ", b"Cannot execute command ")
"""Replies that echo the raw command line, its ``\\n`` included (so they arrive as two lines)."""

# Firmware error lines (prawn_do.c v1.3.0 and the facts sheet) -> short code for InstrumentError.
_ERRORS: tuple[tuple[str, str], ...] = (
    (r"Cannot execute command .* during buffered execution\.", "busy"),
    (r"Invalid command: .*", "invalid-command"),
    (r"Can only abort when status is 1 or 2", "not-running"),
    (r"Invalid address and/or too many instructions.*", "memory"),
    (r"Too many DO commands.*", "memory"),
    (r"Invalid number of reps.*", "invalid-cycles"),
    (r"Reps must be 0 or greater than 4.*", "invalid-cycles"),
    (r"Invalid output specification.*", "invalid-word"),
    (r"Invalid (instruction )?address.*", "invalid-address"),
    (r"Invalid (request|instruction)|invalid request", "invalid-request"),
    (r"invalid clock.*|Failure\. Cannot exactly achieve that clock frequency|System Clock Resus'd", "clock"),
)


class RunStatus(IntEnum):
    """``sts`` run-status of the card."""

    STOPPED = 0
    TRANSITION_TO_RUNNING = 1
    RUNNING = 2
    ABORT_REQUESTED = 3
    ABORTING = 4
    ABORTED = 5
    TRANSITION_TO_STOP = 6


class ClockSource(IntEnum):
    """``sts`` clock-status / ``clk`` source: internal oscillator or external clock on pin 20."""

    INTERNAL = 0
    EXTERNAL = 1


@dataclass(frozen=True)
class CardStatus:
    """The card's run state and clock source."""

    run: RunStatus
    clock: ClockSource

    @property
    def idle(self) -> bool:
        """True when the card accepts programming commands (STOPPED or ABORTED)."""
        return self.run in (RunStatus.STOPPED, RunStatus.ABORTED)


class CardBusyError(InstrumentError):
    """The card refused a command because a sequence is running (abort it or wait for the stop)."""


class ProgramMismatch(DriverError):
    """The program read back from the card differs from the one written (``verify``)."""


def firmware_error(command: str, line: str, *, instrument: str) -> InstrumentError | None:
    """The InstrumentError for a firmware error ``line`` in reply to ``command``; None if not one."""
    for pattern, code in _ERRORS:
        if re.fullmatch(pattern, line):
            cls = CardBusyError if code == "busy" else InstrumentError
            return cls(code, line, command=command, instrument=instrument)
    return None
