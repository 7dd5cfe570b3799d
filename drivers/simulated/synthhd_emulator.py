"""An emulated Windfreak SynthHD v2 (two channels) behind a TCP port (``socket://``) or a pty.

The firmware side follows the "SynthHD & HD PRO API Guide" as the public ``windfreak`` package
uses it: a command character, then its value or ``?``; queries answer one line ending in ``\\n``;
writes answer nothing. A value ends at the next character that cannot continue it (a command
letter, ``?``, a line end) or, as the end of a burst, after ``idle_s`` (10 ms) without input. A sign
is only taken as the first character of a value. ``C0``/``C1`` select the channel of the
per-channel commands (``f W ~ h E r a Z``, and the queries ``p`` and ``V``); ``w`` (trigger
function) and ``:`` (pulse invert) are the device's. Immediate queries: ``+`` model, ``-`` serial number, ``v0``/``v1``/``v2``
firmware/hardware/sub-version, ``p`` PLL lock, ``z`` temperature, ``V`` calibration.
Unknown characters are ignored, and a value outside the instrument's range is not taken (the
setting keeps its value), as there is no error reply: a client finds out by reading back.

As emulated (not from the guide): answers ``f?`` with 7 decimals in MHz, ``W?``/``~?`` with 3,
booleans ``0``/``1``; the PLL locks at once when powered. ``*RST``-like defaults at power-up:
1 GHz, -10 dBm, 0 degrees, RF/PLL/PA off, trigger function 0.

Physics for the virtual lab (channel A): ``snapshot()`` is a ``MicrowaveState``: with trigger
function 4 (RF enable) the trigger input gates the RF (``pulse_invert`` inverts it), as the
SMA100B's external pulse modulation does; RF leaves only with ``h``, ``E`` and ``r`` all on.
One host at a time: a second TCP connection is closed at once.
"""
from __future__ import annotations

import functools
import logging
import os
import select
import socket
import threading
import tty
from collections.abc import Callable
from typing import Any

from drivers.simulated.scpi_device import OnChange
from drivers.simulated.sma100b_emulator import MicrowaveState

log = logging.getLogger(__name__)

MODEL = "WFT SynthHD 1873"
SERIAL = "1873"
VERSIONS = {"0": "Firmware Version 3.26", "1": "Hardware Version 2.06", "2": "HD"}
RANGES = {"f": (10.0, 15000.0), "W": (-70.0, 20.0), "~": (0.0, 360.0), "w": (0, 9), "a": (0, 4000),
          "Z": (0, 3)}
CHANNEL_COMMANDS = "fW~hEraZ"
DEVICE_COMMANDS = "w:C"
IMMEDIATE = "+-pzV"
_NUMERIC = "0123456789."
_POLL_S = 0.05


def _defaults() -> dict[str, Any]:
    return {"f": 1000.0, "W": -10.0, "~": 0.0, "h": 0, "E": 0, "r": 0, "a": 2000, "Z": 3}


class SynthHDFirmware:
    """The instrument's state and command parser (transport-free; thread-safe)."""

    def __init__(self, *, on_change: OnChange | None = None, idle_s: float = 0.01) -> None:
        self.on_change = on_change
        self.idle_s = idle_s
        self._lock = threading.RLock()
        self._channels = [_defaults(), _defaults()]
        self._device: dict[str, Any] = {"w": 0, ":": 0, "C": 0}
        self._pending = ""          # command character waiting for (the rest of) its value
        self._value = ""
        self.received = bytearray()

    # --- state -----------------------------------------------------------------------------------
    def snapshot(self) -> MicrowaveState:
        """Channel A as the virtual lab needs it (Hz, dBm, degrees)."""
        with self._lock:
            a, d = dict(self._channels[0]), dict(self._device)
        gated = d["w"] == 4
        return MicrowaveState(frequency_hz=round(a["f"] * 1e6, 1), level_dbm=a["W"], phase_deg=a["~"],
                              pulse_source="EXT" if gated else "INT",
                              pulse_polarity="INV" if d[":"] else "NORM",
                              pulse_modulation_enabled=gated,
                              output_enabled=bool(a["h"] and a["E"] and a["r"]))

    def state(self) -> dict[str, Any]:
        """``{"A": {...}, "B": {...}, "device": {...}}`` keyed by command character."""
        with self._lock:
            return {"A": dict(self._channels[0]), "B": dict(self._channels[1]), "device": dict(self._device)}

    # --- parser ----------------------------------------------------------------------------------
    def feed(self, data: bytes) -> bytes:
        """Parse received bytes; return the answers they produce."""
        out: list[str] = []
        changed: list[tuple[str, object]] = []
        with self._lock:
            self.received += data
            for ch in data.decode("latin-1"):
                self._char(ch, out, changed)
        self._notify(changed)
        return "".join(out).encode("ascii")

    def idle(self) -> bytes:
        """No input for ``idle_s``: a value still open is complete."""
        changed: list[tuple[str, object]] = []
        with self._lock:
            if self._pending and self._value:
                self._apply(self._pending, self._value, changed)
            self._pending = self._value = ""
        self._notify(changed)
        return b""

    @property
    def open_value(self) -> bool:
        """True while a command waits for the rest of its value (the transport then polls ``idle``)."""
        return bool(self._pending)

    def _char(self, ch: str, out: list[str], changed: list[tuple[str, object]]) -> None:
        if self._pending:
            p = self._pending
            if p == "v":
                self._pending = ""
                if ch in VERSIONS:
                    out.append(VERSIONS[ch] + "\n")
                    return
            elif ch == "?" and not self._value:
                self._pending = ""
                out.append(self._answer(p) + "\n")
                return
            elif ch in _NUMERIC or (ch in "+-" and not self._value):
                self._value += ch
                return
            else:
                if self._value:
                    self._apply(p, self._value, changed)
                self._pending = self._value = ""
        if ch in IMMEDIATE:
            out.append(self._immediate(ch) + "\n")
        elif ch in CHANNEL_COMMANDS or ch in DEVICE_COMMANDS or ch == "v":
            self._pending, self._value = ch, ""
        # anything else (line ends, unknown characters) is ignored

    def _immediate(self, ch: str) -> str:
        c = self._channels[self._device["C"]]
        return {"+": MODEL, "-": SERIAL, "p": "1" if c["E"] else "0", "z": "25.00", "V": "1"}[ch]

    def _answer(self, p: str) -> str:
        table = self._device if p in DEVICE_COMMANDS else self._channels[self._device["C"]]
        value = table[p]
        if p == "f":
            return f"{value:.7f}"
        if p in "W~":
            return f"{value:.3f}"
        return str(int(value))

    def _apply(self, p: str, text: str, changed: list[tuple[str, object]]) -> None:
        try:
            number = float(text)
        except ValueError:
            return
        if p == "C":
            if number in (0, 1):
                self._device["C"] = int(number)
            return
        if p in ("f", "W", "~"):
            lo, hi = RANGES[p]
            if not lo <= number <= hi:
                return
            value: Any = round(number, {"f": 7, "W": 2, "~": 3}[p])
        elif p in RANGES:
            lo, hi = RANGES[p]
            if number != int(number) or not lo <= number <= hi:
                return
            value = int(number)
        else:                                  # h E r : flags
            if number not in (0, 1):
                return
            value = int(number)
        table = self._device if p in DEVICE_COMMANDS else self._channels[self._device["C"]]
        if table[p] != value:
            table[p] = value
            changed.append((p, value))

    def _notify(self, changed: list[tuple[str, object]]) -> None:
        callback = self.on_change
        for name, value in changed if callback else ():
            try:
                callback(name, value)       # type: ignore[misc]
            except Exception:
                log.exception("on_change callback failed for %s=%r", name, value)


class SynthHDEmulator:
    """A SynthHD on ``socket://127.0.0.1:<port>`` (``url``) and, on request, a pty (``attach_pty``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, on_change: OnChange | None = None) -> None:
        self.host = host
        self.firmware = SynthHDFirmware(on_change=on_change)
        self._port = port
        self._server: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._holder: socket.socket | None = None
        self._fds: list[int] = []
        self._lock = threading.Lock()
        self.refused_connections = 0

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> SynthHDEmulator:
        """Listen on ``host:port`` and serve one host at a time; returns self."""
        if self._server is not None:
            raise RuntimeError("SynthHD emulator already started")
        self._stop.clear()
        self._server = socket.create_server((self.host, self._port))
        self._server.settimeout(_POLL_S)
        self._port = self._server.getsockname()[1]
        self._spawn(self._accept_loop, "synthhd-accept")
        return self

    def stop(self) -> None:
        """Close every connection and pty and join all threads."""
        self._stop.set()
        self.drop_connections()
        for t in list(self._threads):
            t.join()
        self._threads.clear()
        if self._server is not None:
            self._server.close()
            self._server = None
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> SynthHDEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """pyserial URL: ``socket://127.0.0.1:<port>``."""
        return f"socket://{self.host}:{self._port}"

    address = url

    def attach_pty(self) -> str:
        """Serve the firmware on a new pseudo-terminal too; returns its path (e.g. /dev/pts/4)."""
        master, slave = os.openpty()
        tty.setraw(slave)
        self._fds += [master, slave]
        self._spawn(lambda: self._serve_fd(master), "synthhd-pty")
        return os.ttyname(slave)

    # --- virtual lab side ------------------------------------------------------------------------
    def snapshot(self) -> MicrowaveState:
        """What channel A really holds (thread-safe)."""
        return self.firmware.snapshot()

    @property
    def on_change(self) -> OnChange | None:
        """``on_change(command character, value)`` after a change (from a server thread)."""
        return self.firmware.on_change

    @on_change.setter
    def on_change(self, callback: OnChange | None) -> None:
        self.firmware.on_change = callback

    def drop_connections(self) -> None:
        """Close the TCP host's connection now (the instrument keeps its settings)."""
        with self._lock:
            conn = self._holder
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # --- threads ---------------------------------------------------------------------------------
    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        server = self._server
        assert server is not None
        while not self._stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                busy = self._holder is not None
                if not busy:
                    self._holder = conn
                else:
                    self.refused_connections += 1
            if busy:
                conn.close()              # one host: the USB port is already open
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._spawn(functools.partial(self._serve_socket, conn), "synthhd-conn")

    def _serve_socket(self, conn: socket.socket) -> None:
        try:
            self._serve(lambda: conn.recv(4096), conn.sendall, conn)
        finally:
            with self._lock:
                self._holder = None
            conn.close()

    def _serve_fd(self, fd: int) -> None:
        def send(data: bytes) -> None:
            os.write(fd, data)
        self._serve(lambda: os.read(fd, 4096), send, fd)

    def _serve(self, recv: Callable[[], bytes], send: Callable[[bytes], Any], handle: Any) -> None:
        fw = self.firmware
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([handle], [], [], fw.idle_s if fw.open_value else _POLL_S)
                if not ready:
                    if fw.open_value:
                        fw.idle()
                    continue
                data = recv()
                if not data:
                    fw.idle()
                    return
                reply = fw.feed(data)
                if reply:
                    send(reply)
            except (OSError, ValueError):
                return
