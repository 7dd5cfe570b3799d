"""The emulated Rohde & Schwarz SMA100B microwave source: its command table (data) on a TCP server.

Settings (``state()`` keys; base units; range of the emulated instrument; ``*RST`` value):

- ``frequency_hz``: Hz, 8 kHz to ``max_frequency_hz`` (12.75 GHz); 1 GHz
- ``level_dbm``: dBm, -145 to ``max_level_dbm`` (+18); -30
- ``phase_deg``: degrees (``RAD`` accepted), -720 to +720; 0
- ``pulse_source``: ``INT`` or ``EXT``; ``INT``
- ``pulse_polarity``: ``NORM`` or ``INV``; ``NORM``
- ``pulse_modulation_enabled``, ``output_enabled``: bool; off

Resolution: 1 mHz, 0.01 dB, 0.01 degree (values are rounded on setting, as the instrument does).
The frequency and level limits are constructor options, like the instrument's hardware options.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from drivers.simulated.scpi_device import OnChange, ScpiDevice, ScpiSetting
from drivers.simulated.scpi_parser import Boolean, Choice, Numeric
from drivers.simulated.scpi_server import ScpiServer

DEFAULT_IDENTITY = "Rohde&Schwarz,SMA100B,1419.8888K02/100001,5.00.122.24"

FREQUENCY_UNITS = {"HZ": 1.0, "KHZ": 1e3, "MHZ": 1e6, "GHZ": 1e9}
LEVEL_UNITS = {"DBM": 1.0}
PHASE_UNITS = {"DEG": 1.0, "RAD": 180.0 / math.pi}


def sma100b_table(*, max_frequency_hz: float = 12.75e9, max_level_dbm: float = 18.0) -> list[ScpiSetting]:
    """The SMA100B command subset of the facts sheet as an SCPI table."""
    return [
        ScpiSetting("[:SOURce<hw>]:FREQuency[:CW|:FIXed]", "frequency_hz",
                    Numeric("Hz", FREQUENCY_UNITS, 8e3, max_frequency_hz, default=1e9, decimals=3)),
        ScpiSetting("[:SOURce<hw>]:POWer[:LEVel][:IMMediate][:AMPLitude]", "level_dbm",
                    Numeric("dBm", LEVEL_UNITS, -145.0, max_level_dbm, default=-30.0, decimals=2)),
        ScpiSetting("[:SOURce<hw>]:PHASe", "phase_deg",
                    Numeric("DEG", PHASE_UNITS, -720.0, 720.0, default=0.0, decimals=2)),
        ScpiSetting("[:SOURce<hw>]:PULM:SOURce", "pulse_source",
                    Choice(("INTernal", "EXTernal"), default="INT")),
        ScpiSetting("[:SOURce<hw>]:PULM:POLarity", "pulse_polarity",
                    Choice(("NORMal", "INVerted"), default="NORM")),
        ScpiSetting("[:SOURce<hw>]:PULM:STATe", "pulse_modulation_enabled", Boolean(default=False)),
        ScpiSetting(":OUTPut<hw>[:STATe]", "output_enabled", Boolean(default=False)),
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
                            identity=identity, queue_size=queue_size, on_change=on_change)
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
