"""The IEEE 488.2 status model of an emulated SCPI instrument (Rohde & Schwarz flavour).

Registers (all 8 bit):

- ESR, the standard event status register (``*ESR?`` reads and clears it): bit 0 OPC (operation
  complete, set by ``*OPC``), 2 QYE (query error, codes -499..-400), 3 DDE (device-dependent error,
  -399..-300 and positive codes), 4 EXE (execution error, -299..-200), 5 CME (command error,
  -199..-100), 7 PON (power on; set when the instrument is created).
- ESE, the event status enable register (``*ESE``/``*ESE?``).
- SRE, the service request enable register (``*SRE``/``*SRE?``; bit 6 is ignored).
- STB, the status byte (``*STB?``, not cleared by reading): bit 2 EAV (error queue not empty, R&S),
  4 MAV (message available: always 0 when ``*STB?`` is parsed, since the emulator answers every
  query before it reads the next one), 5 ESB (``ESR & ESE != 0``), 6 MSS (``STB & SRE != 0``).

``*CLS`` clears ESR and the error queue; ESE and SRE keep their values (IEEE 488.2 10.3), and
``*RST`` changes none of them.
"""
from __future__ import annotations

import re

OPC, QYE, DDE, EXE, CME, PON = 0x01, 0x04, 0x08, 0x10, 0x20, 0x80
EAV, MAV, ESB, MSS = 0x04, 0x10, 0x20, 0x40

_INTEGER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def esr_bit_for(code: int) -> int:
    """The ESR bit an error-queue entry with ``code`` sets (0 for code 0)."""
    if code == 0:
        return 0
    if -199 <= code <= -100:
        return CME
    if -299 <= code <= -200:
        return EXE
    if -499 <= code <= -400:
        return QYE
    return DDE      # -399..-300 and device-specific (positive or beyond -500) codes


def parse_register(text: str) -> int:
    """An 8-bit register value (NRf, rounded); ValueError('type'|'range') for the error code to raise."""
    if not _INTEGER.fullmatch(text.strip()):
        raise ValueError("type")
    value = round(float(text))
    if not 0 <= value <= 255:
        raise ValueError("range")
    return value


class StatusRegisters:
    """ESR, ESE and SRE, and the status byte computed from them (callers hold the device lock)."""

    def __init__(self) -> None:
        self.esr = PON
        self.ese = 0
        self.sre = 0

    def event(self, bits: int) -> None:
        """Set ``bits`` in the ESR (an error, or OPC)."""
        self.esr |= bits & 0xFF

    def read_esr(self) -> int:
        """``*ESR?``: the ESR, then cleared."""
        value, self.esr = self.esr, 0
        return value

    def set_sre(self, value: int) -> None:
        """``*SRE <n>``: bit 6 (MSS) cannot be enabled."""
        self.sre = value & ~MSS & 0xFF

    def status_byte(self, *, errors_queued: bool) -> int:
        """``*STB?``: EAV, ESB and MSS from the current registers."""
        stb = EAV if errors_queued else 0
        if self.esr & self.ese:
            stb |= ESB
        if stb & self.sre:
            stb |= MSS
        return stb

    def clear(self) -> None:
        """``*CLS``: the ESR is cleared (enable registers kept)."""
        self.esr = 0
