"""Driver of a Windfreak SynthHD (v2) microwave source over its USB serial protocol (pyserial).

Protocol (Windfreak "SynthHD & HD PRO API Guide"; the public ``windfreak`` package speaks it): a
command is one character followed by its value (``f6834.68261100``: frequency in MHz; ``W-10.000``:
level in dBm) or by ``?`` for a query, whose answer is one line ending in ``\\n``. Commands need no
separator: the next command character ends a value. ``C0``/``C1`` select channel A/B for the
commands that follow. Writes have no reply and the instrument has no error queue, so every setting
is read back right after it is written and a value the instrument did not take raises
``InstrumentError`` (code ``"refused"``), naming the setting, the value sent and the value read.

``address``: a serial port (``/dev/ttyACM0``, ``COM3``) or a pyserial URL (``socket://127.0.0.1:PORT``,
the virtual lab's emulator). Units: Hz, dBm, degrees. No I/O before ``connect()``.

Settings (``settings()`` keys; the sequencer applies ``fixed_settings`` and checks them every shot):

| name | command | unit, strict range |
| --- | --- | --- |
| ``frequency_hz`` | ``f`` (MHz on the wire, 8 decimals) | Hz, 10 MHz to 15 GHz (resolution 0.1 Hz) |
| ``level_dbm`` | ``W`` | dBm, -70 to +20 (0.01 dB) |
| ``phase_deg`` | ``~`` | degrees, 0 to 360 (0.001 degree) |
| ``output_enabled`` | ``h`` (RF output unmuted) | bool |
| ``pll_enabled``, ``pa_enabled`` | ``E``, ``r`` (PLL and power amplifier powered) | bool |
| ``trigger_function`` | ``w`` (0 disabled ... 4 RF enable ...) | int 0-9 |
| ``pulse_invert`` | ``:`` | bool |

The Rabi gate: trigger function 4 ("rf enable"), the timing card's TTL on the trigger input, RF on
while it is high (``pulse_invert`` off).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, overload

import serial

from drivers.errors import InstrumentDisconnected, InstrumentError, InstrumentTimeout, ProtocolError
from drivers.lifecycle import Instrument, open_serial

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthSetting:
    """One SynthHD setting: command character, wire format, validator, parser, read-back tolerance."""

    name: str
    command: str
    unit: str
    validate: Callable[[Any], Any]
    format: Callable[[Any], str]
    parse: Callable[[str], Any]
    tolerance: float = 0.0


def _number(name: str, unit: str, lo: float, hi: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name}: expected a number in {unit}, got {value!r}")
        v = float(value)
        if not math.isfinite(v) or not lo <= v <= hi:
            raise ValueError(f"{name}: {v!r} {unit} is outside the range {lo:g} to {hi:g} {unit}")
        return v
    return check


def _flag(name: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected True or False, got {value!r}")
        return value
    return check


def _parse_flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError("expected 0 or 1")
    return text == "1"


def _trigger(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        raise ValueError(f"trigger_function: expected an integer 0..9, got {value!r}")
    return value


SETTINGS: tuple[SynthSetting, ...] = (
    SynthSetting("pll_enabled", "E", "", _flag("pll_enabled"), lambda v: str(int(v)), _parse_flag),
    SynthSetting("pa_enabled", "r", "", _flag("pa_enabled"), lambda v: str(int(v)), _parse_flag),
    SynthSetting("trigger_function", "w", "", _trigger, str, int),
    SynthSetting("pulse_invert", ":", "", _flag("pulse_invert"), lambda v: str(int(v)), _parse_flag),
    SynthSetting("frequency_hz", "f", "Hz", _number("frequency_hz", "Hz", 10e6, 15e9),
                 lambda v: f"{v / 1e6:.8f}", lambda t: float(t) * 1e6, tolerance=0.1),
    SynthSetting("level_dbm", "W", "dBm", _number("level_dbm", "dBm", -70.0, 20.0),
                 lambda v: f"{v:.3f}", float, tolerance=0.01),
    SynthSetting("phase_deg", "~", "deg", _number("phase_deg", "deg", 0.0, 360.0),
                 lambda v: f"{v:.3f}", float, tolerance=0.001),
    SynthSetting("output_enabled", "h", "", _flag("output_enabled"), lambda v: str(int(v)), _parse_flag),
)
"""In the order ``reconnect()`` re-applies them (RF output last)."""
_BY_NAME = {s.name: s for s in SETTINGS}
RF_ENABLE_TRIGGER = 4
T = TypeVar("T")


class _Setting(Generic[T]):
    """A SynthHD setting as an attribute: reading queries the instrument, assigning writes and
    verifies (see ``SynthHD.set``)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        s = _BY_NAME[name]
        self.__doc__ = f"Control {name} (command {s.command!r}{', ' + s.unit if s.unit else ''})."

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> "_Setting[T]": ...

    @overload
    def __get__(self, obj: "SynthHD", objtype: type | None = None) -> T: ...

    def __get__(self, obj: "SynthHD | None", objtype: type | None = None) -> "T | _Setting[T]":
        if obj is None:
            return self
        return obj.get(self.name)

    def __set__(self, obj: "SynthHD", value: T) -> None:
        obj.set(self.name, value)


class SynthHD(Instrument):
    """One channel (0 = A, 1 = B) of a Windfreak SynthHD v2; thread-safe (one lock)."""

    model: ClassVar[str] = "SynthHD"
    fixed_settings: ClassVar[Mapping[str, object]] = {
        "pll_enabled": True, "pa_enabled": True, "trigger_function": RF_ENABLE_TRIGGER,
        "pulse_invert": False}
    """The gate: RF follows the timing card's TTL on the trigger input (high = on), PLL and PA on."""
    resolution: ClassVar[Mapping[str, float]] = {"frequency_hz": 0.1, "level_dbm": 0.01, "phase_deg": 0.001}
    """Setting resolution (Hz, dB, degrees): the tolerance of the per-shot read-back check."""

    frequency_hz: _Setting[float] = _Setting()
    level_dbm: _Setting[float] = _Setting()
    phase_deg: _Setting[float] = _Setting()
    output_enabled: _Setting[bool] = _Setting()
    pll_enabled: _Setting[bool] = _Setting()
    pa_enabled: _Setting[bool] = _Setting()
    trigger_function: _Setting[int] = _Setting()
    pulse_invert: _Setting[bool] = _Setting()

    def __init__(self, address: str, *, timeout_s: float = 1.0, channel: int = 0) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 s, got {timeout_s!r}")
        if channel not in (0, 1):
            raise ValueError(f"channel must be 0 (A) or 1 (B), got {channel!r}")
        self.address = address
        self.timeout_s = float(timeout_s)
        self.channel = channel
        self._name = f"SynthHD {address}"
        self._port: serial.SerialBase | None = None
        self._rx = bytearray()
        self._lock = threading.RLock()
        self._identity: str | None = None
        self._last_set: dict[str, object] = {}
        self._needs_flush = False

    # --- lifecycle (connect/close/reconnect: drivers/lifecycle.py) --------------------------------
    @property
    def _link_open(self) -> bool:
        return self._port is not None

    def _open(self) -> None:
        """Open the port and identify (model, serial number, firmware, hardware version)."""
        self._port = open_serial(self.address, self.timeout_s, self._name)
        model = self.query("+")
        serial_number = self.query("-")
        firmware = self.query("v0")
        hardware = self.query("v1")
        if "SynthHD" not in model:
            raise ProtocolError("'+' (model type) does not name a SynthHD", reply=model,
                                instrument=self._name)
        self._identity = f"Windfreak,{model},{serial_number},{firmware} / {hardware}"
        log.info("%s: connected (%s)", self._name, self._identity)

    def _discard(self) -> None:
        self._close_port()

    def _restore(self) -> None:
        """Re-apply the last value set for each setting."""
        for s in SETTINGS:
            if s.name in self._last_set:
                self._write_setting(s, self._last_set[s.name])

    @property
    def identity(self) -> str:
        """``Windfreak,<model>,<serial>,<firmware> / <hardware>`` from the last connect."""
        if self._identity is None:
            raise InstrumentDisconnected(f"not connected to {self.address}: call connect()",
                                         instrument=self._name)
        return self._identity

    # --- settings --------------------------------------------------------------------------------
    def set(self, name: str, value: object) -> None:
        """Validate (ValueError before any I/O), write, read back; InstrumentError if not taken."""
        s = _BY_NAME.get(name)
        if s is None:
            raise ValueError(f"unknown SynthHD setting {name!r}: expected one of {', '.join(_BY_NAME)}")
        checked = s.validate(value)
        with self._lock:
            self._last_set[name] = checked
            self._write_setting(s, checked)

    def get(self, name: str) -> Any:
        """Query one setting and parse its answer (ProtocolError if it does not parse)."""
        s = _BY_NAME[name]
        reply = self.query(s.command + "?")
        try:
            return s.parse(reply)
        except ValueError as e:
            raise ProtocolError(f"{name}: cannot parse the answer to {s.command + '?'!r}: {e}",
                                reply=reply, instrument=self._name) from None

    def settings(self) -> dict[str, object]:
        """Read back every setting: name -> value (Hz, dBm, degrees, bools, trigger function)."""
        with self._lock:
            return {s.name: self.get(s.name) for s in SETTINGS}

    def last_set(self) -> dict[str, object]:
        """The values last set through this driver (what ``reconnect()`` restores)."""
        with self._lock:
            return dict(self._last_set)

    def wait_complete(self) -> None:
        """Wait (up to ``timeout_s``) until the PLL reports lock (``p`` -> ``1``): the settings are
        then in effect. InstrumentError if it does not lock in time."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            if self.query("p") == "1":
                return
            if time.monotonic() > deadline:
                raise InstrumentError("unlocked", "the PLL did not lock", command="p",
                                      instrument=self._name)
            time.sleep(0.005)

    def drain_errors(self) -> list[tuple[int, str]]:
        """The SynthHD has no error queue: always empty (every write is verified by its read-back)."""
        return []

    # --- exchanges -------------------------------------------------------------------------------
    def query(self, command: str) -> str:
        """Send ``C<channel>`` + ``command`` and return the one-line answer without ``\\n``."""
        with self._lock:
            self._send(command)
            return self._read_line(command)

    def _write_setting(self, s: SynthSetting, value: Any) -> None:
        self._send(s.command + s.format(value))
        read = self.get(s.name)
        ok = abs(read - value) <= s.tolerance * (1 + 1e-9) if s.tolerance else read == value
        if not ok:
            raise InstrumentError("refused", f"{s.name}: sent {s.format(value)}, reads {read!r}",
                                  command=s.command + s.format(value), instrument=self._name)

    def _send(self, command: str) -> None:
        port = self._require()
        if self._needs_flush:       # a late answer after a timeout must not pass for the next one
            time.sleep(min(0.05, self.timeout_s))
            self._io(lambda p: p.reset_input_buffer(), command)
            self._rx.clear()
            self._needs_flush = False
        data = f"C{self.channel}{command}".encode("ascii")
        log.debug("%s <- %r", self._name, data)
        self._io(lambda p: p.write(data), command)
        del port

    def _read_line(self, command: str) -> str:
        deadline = time.monotonic() + self.timeout_s
        while True:
            i = self._rx.find(b"\n")
            if i >= 0:
                raw = bytes(self._rx[:i])
                del self._rx[:i + 1]
                try:
                    return raw.decode("ascii").rstrip("\r")
                except UnicodeDecodeError:
                    self._needs_flush = True
                    raise ProtocolError(f"garbage in the answer to {command!r}", reply=raw,
                                        instrument=self._name) from None
            if time.monotonic() > deadline:
                self._needs_flush = True
                raise InstrumentTimeout(command, self.timeout_s, instrument=self._name)
            chunk = self._io(lambda p: p.read(4096), command)
            if chunk:
                self._rx += chunk
            else:
                time.sleep(0.0002)

    def _io(self, op: Callable[[serial.SerialBase], Any], command: str) -> Any:
        port = self._require()
        try:
            return op(port)
        except serial.SerialTimeoutException as exc:
            self._needs_flush = True
            raise InstrumentTimeout(command, self.timeout_s, instrument=self._name) from exc
        except (serial.SerialException, OSError) as exc:
            self._close_port()
            raise InstrumentDisconnected(f"connection lost at {command!r}: {exc}; call reconnect()",
                                         instrument=self._name) from exc

    def _require(self) -> serial.SerialBase:
        if self._port is None:
            raise InstrumentDisconnected(f"not connected to {self.address}: call connect() or reconnect()",
                                         instrument=self._name)
        return self._port

    def _close_port(self) -> None:
        port, self._port = self._port, None
        self._rx.clear()
        self._needs_flush = False
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as exc:
                log.debug("%s: close: %s", self._name, exc)
