"""Driver of the Rabi-pulse microwave source, a Rohde & Schwarz SMA100B (SCPI over VISA).

Any VISA resource string works: ``TCPIP0::<host>::inst0::INSTR`` (VXI-11), ``TCPIP0::<host>::hislip0::INSTR``
or a raw socket ``TCPIP0::<host>::5025::SOCKET``; the pyvisa-py backend (``"@py"``) is the default.
Units are SI-like and in the names: Hz, dBm, degrees (``level_dbm`` reads dBm only while
``power_unit`` is ``DBM``, the instrument's ``*RST`` value; set it, as the sequencer does, to be sure). The Rabi pulse itself is gated by a TTL into
the pulse-modulation input, so the driver covers carrier, level, phase, pulse modulation and output.

Example::

    from drivers.sma100b import SMA100B
    with SMA100B("TCPIP0::192.168.1.20::5025::SOCKET", timeout_s=2.0) as mw:
        mw.power_unit = "DBM"
        mw.frequency_hz = 6_834_682_611.0
        mw.level_dbm = -10.0
        mw.phase_deg = 90.0
        mw.pulse_source = "EXT"
        mw.pulse_modulation_enabled = True
        mw.output_enabled = True
        mw.wait_complete()            # *OPC?
        print(mw.settings())
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from drivers.errors import DriverError, InstrumentDisconnected, InstrumentError, InstrumentTimeout, ProtocolError
from drivers.scpi import ScpiInstrument
from drivers.scpi_controls import boolean, choice, numeric

__all__ = ["SMA100B", "DriverError", "InstrumentDisconnected", "InstrumentError", "InstrumentTimeout",
           "ProtocolError"]


class SMA100B(ScpiInstrument):
    """Rohde & Schwarz SMA100B analog signal generator (the facts sheet's SCPI subset).

    The numeric ranges are those of the reference instrument (frequency option up to 12.75 GHz);
    a unit with smaller options answers values beyond its own range with ``-222`` (InstrumentError).
    Settings are restored by ``reconnect()`` in declaration order, so the RF output comes last.
    """

    model: ClassVar[str] = "SMA100B"
    fixed_settings: ClassVar[Mapping[str, object]] = {
        "power_unit": "DBM", "pulse_source": "EXT", "pulse_polarity": "NORM",
        "pulse_modulation_enabled": True}
    """The Rabi gate: RF follows the timing card's TTL on the pulse-modulation input (high = on);
    levels in dBm. The sequencer applies these before the carrier and checks them every shot."""
    resolution: ClassVar[Mapping[str, float]] = {"frequency_hz": 1e-3, "level_dbm": 0.01, "phase_deg": 0.01}
    """Setting resolution (Hz, dB, degrees): the tolerance of the per-shot read-back check."""

    power_unit = choice("UNIT:POW", choices=("DBM", "DBUV", "V"),
                        doc="Control the unit of level values sent without suffix and of level "
                            "answers; level_dbm needs DBM (another client may change it)")
    frequency_hz = numeric("SOUR:FREQ", unit="Hz", minimum=8e3, maximum=12.75e9, wire_unit="Hz",
                           doc="Control the carrier frequency")
    level_dbm = numeric("SOUR:POW", unit="dBm", minimum=-145.0, maximum=18.0, wire_unit="dBm",
                        doc="Control the RF output level")
    phase_deg = numeric("SOUR:PHAS", unit="deg", minimum=-720.0, maximum=720.0, wire_unit="DEG",
                        doc="Control the phase offset of the carrier (sets the Rabi rotation axis)")
    pulse_source = choice("SOUR:PULM:SOUR", choices=("INTernal", "EXTernal"),
                          doc="Control the pulse-modulation source, EXT = the timing card's TTL")
    pulse_polarity = choice("SOUR:PULM:POL", choices=("NORMal", "INVerted"),
                            doc="Control the pulse-modulation polarity, NORM = RF on while the gate is high")
    pulse_modulation_enabled = boolean("SOUR:PULM:STAT", doc="Control whether pulse modulation is on")
    output_enabled = boolean("OUTP", doc="Control whether the RF output is on")

    def reset(self) -> None:
        """``*RST`` the instrument (its defaults: 1 GHz, -30 dBm, 0 deg, RF off) and forget remembered settings."""
        with self._lock:
            self.write("*RST")
            self._last_set.clear()
