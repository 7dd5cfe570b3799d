"""Exceptions shared by all steerlab instrument drivers.

Every hardware fault a driver can meet is an expected event with its own class, so callers can
catch exactly what they mean to handle:

- ``InstrumentError``: the instrument understood the link but refused or reported an error
  (e.g. an SCPI error-queue entry); carries the instrument's own code and text.
- ``InstrumentTimeout``: no (complete) reply within the driver's timeout.
- ``InstrumentDisconnected``: the link is refused, closed or broken (also: not connected yet).
- ``ProtocolError``: a reply arrived but is garbage or not what the protocol allows.

All derive from ``DriverError``; none of them is raised for plain programming errors such as an
out-of-range argument checked before any I/O, which raise ``ValueError``.
"""
from __future__ import annotations


class DriverError(Exception):
    """Base class of every error raised by a steerlab instrument driver."""

    def __init__(self, message: str, *, instrument: str = "") -> None:
        self.instrument = instrument
        super().__init__(f"{instrument}: {message}" if instrument else message)


class InstrumentError(DriverError):
    """The instrument reported an error; ``code`` and ``text`` are its own (e.g. -222, "Data out of range").

    ``command`` is the command that caused it when the driver knows it, else an empty string.
    """

    def __init__(self, code: int | str, text: str, *, command: str = "", instrument: str = "") -> None:
        self.code = code
        self.text = text
        self.command = command
        where = f" after {command!r}" if command else ""
        super().__init__(f"instrument error {code}, {text!r}{where}", instrument=instrument)


class InstrumentTimeout(DriverError):
    """No complete reply arrived within ``timeout_s`` seconds to ``command``."""

    def __init__(self, command: str, timeout_s: float, *, instrument: str = "") -> None:
        self.command = command
        self.timeout_s = timeout_s
        super().__init__(f"no reply to {command!r} within {timeout_s:g} s", instrument=instrument)


class InstrumentDisconnected(DriverError):
    """The connection is refused, lost or not open; call ``reconnect()`` (or ``connect()``)."""


class ProtocolError(DriverError):
    """A reply arrived but does not follow the protocol (garbage, wrong type, unexpected line)."""

    def __init__(self, message: str, *, reply: str | bytes | None = None, instrument: str = "") -> None:
        self.reply = reply
        super().__init__(f"{message} (reply {reply!r})" if reply is not None else message,
                         instrument=instrument)
