"""The emulated Rohde & Schwarz SMA100B microwave source: its command table (data) on a TCP server.

Settings (``state()`` keys; base units; range of the emulated instrument; ``*RST`` value):

- ``frequency_hz``: Hz, 8 kHz to ``max_frequency_hz`` (12.75 GHz); 1 GHz
- ``level_dbm``: dBm, -145 to ``max_level_dbm`` (+18); -30
- ``phase_deg``: degrees (``RAD`` accepted), -720 to +720; 0
- ``pulse_source``: ``INT`` or ``EXT``; ``INT``
- ``pulse_polarity``: ``NORM`` or ``INV``; ``NORM``
- ``pulse_modulation_enabled``, ``output_enabled``: bool; off
- ``power_unit``: ``DBM``, ``DBUV`` or ``V`` (``:UNIT:POWer``): the unit of a level given without
  suffix and of the level query's answer; ``DBM``

Levels take the suffixes dBm, dBuV, V, mV and uV (50 ohm, V rms: 0 dBm = 0.2236 V = 106.99 dBuV).
Resolution: 1 mHz, 0.01 dB, 0.01 degree (values are rounded on setting, as the instrument does).
The frequency and level limits are constructor options, like the instrument's hardware options,
and ``*OPT?`` names them (``SMAB-B112``: 12.75 GHz; ``SMAB-K22``: pulse modulator).
The IEEE 488.2 status model and the R&S error-queue forms are those of ``ScpiDevice``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from drivers.simulated.scpi_device import OnChange, ScpiDevice, ScpiSetting
from drivers.simulated.scpi_parser import Boolean, Choice, Numeric, Scale
from drivers.simulated.scpi_server import ScpiServer

DEFAULT_IDENTITY = "Rohde&Schwarz,SMA100B,1419.8888K02/100001,5.00.122.24"

FREQUENCY_UNITS = {"HZ": 1.0, "KHZ": 1e3, "MHZ": 1e6, "GHZ": 1e9}
LEVEL_UNITS = {"DBM": 1.0}
_DBM_AT_1_V = 10.0 * math.log10(1.0 / 50.0 / 1e-3)      # 13.0103 dBm: 1 V rms into 50 ohm
_DBUV_AT_0_DBM = 20.0 * math.log10(1e6) - _DBM_AT_1_V    # 106.9897 dBuV


def _volts_to_dbm(scale: float) -> Scale:
    return (lambda v: 20.0 * math.log10(v * scale) + _DBM_AT_1_V,
            lambda dbm: 10.0 ** ((dbm - _DBM_AT_1_V) / 20.0) / scale)


LEVEL_SCALES: dict[str, Scale] = {
    "DBUV": (lambda dbuv: dbuv - _DBUV_AT_0_DBM, lambda dbm: dbm + _DBUV_AT_0_DBM),
    "V": _volts_to_dbm(1.0), "MV": _volts_to_dbm(1e-3), "UV": _volts_to_dbm(1e-6),
}
FREQUENCY_OPTIONS = ((3e9, "SMAB-B103"), (6e9, "SMAB-B106"), (12.75e9, "SMAB-B112"),
                     (20e9, "SMAB-B120"), (31.8e9, "SMAB-B131"), (40e9, "SMAB-B140"))


def installed_options(max_frequency_hz: float) -> tuple[str, ...]:
    """``*OPT?`` of an emulated unit: its frequency option and the pulse modulator (K22)."""
    frequency = next((name for limit, name in FREQUENCY_OPTIONS if max_frequency_hz <= limit),
                     FREQUENCY_OPTIONS[-1][1])
    return (frequency, "SMAB-K22")
PHASE_UNITS = {"DEG": 1.0, "RAD": 180.0 / math.pi}


def sma100b_table(*, max_frequency_hz: float = 12.75e9, max_level_dbm: float = 18.0) -> list[ScpiSetting]:
    """The SMA100B command subset of the facts sheet as an SCPI table."""
    return [
        ScpiSetting("[:SOURce<hw>]:FREQuency[:CW|:FIXed]", "frequency_hz",
                    Numeric("Hz", FREQUENCY_UNITS, 8e3, max_frequency_hz, default=1e9, decimals=3)),
        ScpiSetting("[:SOURce<hw>]:POWer[:LEVel][:IMMediate][:AMPLitude]", "level_dbm",
                    Numeric("dBm", LEVEL_UNITS, -145.0, max_level_dbm, default=-30.0, decimals=2,
                            scales=LEVEL_SCALES), unit_setting="power_unit"),
        ScpiSetting("[:SOURce<hw>]:PHASe", "phase_deg",
                    Numeric("DEG", PHASE_UNITS, -720.0, 720.0, default=0.0, decimals=2)),
        ScpiSetting("[:SOURce<hw>]:PULM:SOURce", "pulse_source",
                    Choice(("INTernal", "EXTernal"), default="INT")),
        ScpiSetting("[:SOURce<hw>]:PULM:POLarity", "pulse_polarity",
                    Choice(("NORMal", "INVerted"), default="NORM")),
        ScpiSetting("[:SOURce<hw>]:PULM:STATe", "pulse_modulation_enabled", Boolean(default=False)),
        ScpiSetting(":OUTPut<hw>[:STATe]", "output_enabled", Boolean(default=False)),
        ScpiSetting(":UNIT:POWer", "power_unit", Choice(("DBM", "DBUV", "V"), default="DBM")),
    ]


@dataclass(frozen=True)
class MicrowaveState:
    """What the emulated generator really holds (Hz, dBm, degrees; enumerations in short form)."""

    frequency_hz: float
    level_dbm: float
    phase_deg: float
    pulse_source: str
    pulse_polarity: str
    pulse_modulation_enabled: bool
    output_enabled: bool

    def rf_on(self, gate_high: bool) -> bool:
        """Whether RF leaves the output while the pulse-modulation input is ``gate_high``.

        Output off: never. Pulse modulation off: always (CW). External source: the gate level,
        inverted by ``INV`` polarity. The internal pulse generator is not emulated (ValueError).
        """
        if not self.output_enabled:
            return False
        if not self.pulse_modulation_enabled:
            return True
        if self.pulse_source != "EXT":
            raise ValueError(f"pulse_source {self.pulse_source!r}: only the external gate (EXT) is emulated")
        return gate_high != (self.pulse_polarity == "INV")


class SMA100BEmulator(ScpiServer):
    """An SMA100B on ``TCPIP0::127.0.0.1::<port>::SOCKET`` (see ``address``), with fault switches.

    ``state()`` (a dict) and ``snapshot()`` (a ``MicrowaveState``) return the settings the instrument
    really holds; ``on_change(name, value)`` is called from the server thread after each change.
    ``max_frequency_hz``/``max_level_dbm`` model the instrument's options (a 6 GHz unit rejects
    7 GHz with -222).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, identity: str = DEFAULT_IDENTITY,
                 max_frequency_hz: float = 12.75e9, max_level_dbm: float = 18.0,
                 on_change: OnChange | None = None, queue_size: int = 10) -> None:
        device = ScpiDevice(sma100b_table(max_frequency_hz=max_frequency_hz, max_level_dbm=max_level_dbm),
                            identity=identity, queue_size=queue_size, on_change=on_change,
                            options=installed_options(max_frequency_hz))
        super().__init__(device, host=host, port=port, name="sma100b")

    def snapshot(self) -> MicrowaveState:
        """A consistent typed copy of the current settings (thread-safe)."""
        state = self.state()
        return MicrowaveState(
            frequency_hz=float(state["frequency_hz"]),  # type: ignore[arg-type]
            level_dbm=float(state["level_dbm"]),  # type: ignore[arg-type]
            phase_deg=float(state["phase_deg"]),  # type: ignore[arg-type]
            pulse_source=str(state["pulse_source"]),
            pulse_polarity=str(state["pulse_polarity"]),
            pulse_modulation_enabled=bool(state["pulse_modulation_enabled"]),
            output_enabled=bool(state["output_enabled"]),
        )
