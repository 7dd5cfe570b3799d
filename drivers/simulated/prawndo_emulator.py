"""Emulated PrawnDO timing card: the firmware (prawndo_firmware.py) behind a TCP port or a pty.

The driver reaches it with ``PrawnDO(emulator.url)`` (``socket://127.0.0.1:PORT``), or on a serial
device path from ``attach_pty()``. The virtual lab pulses the hardware trigger with ``trigger()`` and
learns what the card emitted through ``on_sequence(callback)``: ``callback(edges)`` with ``edges`` a
list of ``(time_s, output_word)`` (simulated time from the sequence start, one entry per change of the
outputs), called when the program stops or is aborted.

Fault switches (``faults``, plus ``drop_connections()``): slow replies, garbage bytes before the next
reply, wrong reply lines for a command, dropping the connection when a command arrives.
``stop()`` joins every thread.

The card has one host (a USB CDC port): while a TCP client holds it, a second connection gets one
line, ``BUSY_LINE``, and is closed; the current client is never disturbed. A client that has
closed its end is released first (the emulator waits up to ``handover_s`` while its connection
winds down), so a driver's ``reconnect()`` gets the card back.
"""
from __future__ import annotations

import functools
import logging
import os
import select
import socket
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from drivers.simulated.prawndo_engine import Edges, SequenceRecord
from drivers.simulated.prawndo_firmware import PrawnDOFirmware

_log = logging.getLogger(__name__)
_POLL_S = 0.05
BANNER = b"Prawn Digital Output online\r\n"
BUSY_LINE = b"Error: the card is held by another host (one connection at a time)\r\n"


@dataclass
class PrawnDOFaults:
    """Faults the emulator injects; change them at any time.

    ``reply_delay_s``: delay before every reply line (s). ``garbage``: bytes sent once, before the
    next reply. ``wrong_replies``: command (3 letters, e.g. ``"sts"``) -> line sent instead of each
    reply line to it. ``drop_on``: command (3 letters) on whose arrival the connection is closed.
    """

    reply_delay_s: float = 0.0
    garbage: bytes = b""
    wrong_replies: dict[str, str] = field(default_factory=dict)
    drop_on: str | None = None


class _StreamConsole:
    """A console over a socket or a pty master fd, applying the emulator's faults to replies."""

    def __init__(self, emulator: PrawnDOEmulator, *, sock: socket.socket | None = None,
                 fd: int | None = None) -> None:
        self._emu, self._sock, self._fd = emulator, sock, fd
        self._buf = bytearray()
        self._send_lock = threading.Lock()
        self._closed = threading.Event()
        self._last_command = ""

    @property
    def closed(self) -> bool:
        """True once this console was closed (by either side)."""
        return self._closed.is_set()

    def input_pending(self) -> bool:
        """True if the host's socket has unread bytes or its end of file."""
        if self._sock is None:
            return False
        try:
            ready, _, _ = select.select([self._sock], [], [], 0)
            return bool(ready)
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        self._closed.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()

    def _fill(self) -> bool:
        """Read more input into the buffer; False once closed or stopping."""
        stop = self._emu._stop_event
        while not (stop.is_set() or self._closed.is_set()):
            fd = self._fd if self._fd is not None else -1         # exactly one of socket / pty is set
            handle: socket.socket | int = self._sock if self._sock is not None else fd
            try:
                ready, _, _ = select.select([handle], [], [], _POLL_S)
                if not ready:
                    continue
                data = self._sock.recv(4096) if self._sock is not None else os.read(fd, 4096)
            except (OSError, ValueError):
                return False
            if not data:
                return False
            self._buf += data
            return True
        return False

    def read_line(self, max_bytes: int) -> bytes | None:
        while True:
            i = self._buf.find(b"\n", 0, max_bytes)
            if i >= 0 or len(self._buf) >= max_bytes:
                n = i + 1 if i >= 0 else max_bytes
                line = bytes(self._buf[:n])
                del self._buf[:n]
                self._last_command = line[:3].decode("latin-1")
                if self._emu.faults.drop_on and line.startswith(self._emu.faults.drop_on.encode()):
                    _log.info("PrawnDO emulator: dropping the connection on %r", line)
                    self.close()
                    return None
                return line
            if not self._fill():
                return None

    def read_some(self, max_bytes: int) -> bytes | None:
        if not self._buf and not self._fill():
            return None
        data = bytes(self._buf[:max_bytes])
        del self._buf[:len(data)]
        return data

    def send(self, data: bytes) -> None:
        faults = self._emu.faults
        if faults.reply_delay_s > 0 and self._emu._stop_event.wait(faults.reply_delay_s):
            return
        wrong = faults.wrong_replies.get(self._last_command)
        if wrong is not None:
            data = wrong.encode("latin-1") + b"\r\n"
        with self._send_lock:
            if faults.garbage:
                data, faults.garbage = faults.garbage + data, b""
            try:
                if self._sock is not None:
                    self._sock.sendall(data)
                else:
                    os.write(self._fd, data)        # type: ignore[arg-type]
            except OSError as exc:
                _log.debug("PrawnDO emulator: reply lost: %s", exc)


class PrawnDOEmulator:
    """A PrawnDO card on 127.0.0.1:``port`` (0: chosen by the OS) running the emulated firmware.

    ``time_scale``: real seconds per simulated second while a program runs (0: instant).
    ``binary_upload=False`` emulates firmware without ``adm``; ``echo_raw_command=False`` prints
    echoed commands without their line end (the facts sheet's simplified form).
    ``version``: ``"1.3.1"`` or ``"1.3.0"`` (with its ``swr`` bug, see prawndo_firmware.py).
    ``banner=True`` greets the first connection with ``BANNER`` (the firmware prints nothing
    unsolicited; this tests a driver's resynchronisation).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, board: str = "pico2",
                 version: str = "1.3.1", time_scale: float = 1.0, binary_upload: bool = True,
                 echo_raw_command: bool = True, banner: bool = False, handover_s: float = 0.5) -> None:
        if not time_scale >= 0:
            raise ValueError(f"time_scale = {time_scale!r}: expected a factor >= 0")
        self.host, self._port = host, port
        self.firmware = PrawnDOFirmware(board=board, version=version, binary_upload=binary_upload,
                                        echo_raw_command=echo_raw_command, time_scale=time_scale)
        self.faults = PrawnDOFaults()
        self._banner = banner
        self.handover_s = handover_s
        self.refused_connections = 0
        self._holder: _StreamConsole | None = None
        self._server: socket.socket | None = None
        self._stop_event = threading.Event()
        self._threads: list[threading.Thread] = []
        self._consoles: list[_StreamConsole] = []
        self._lock = threading.Lock()
        self._ptys: list[int] = []

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Listen on the TCP port and serve connections on a thread."""
        if self._server is not None:
            raise RuntimeError("PrawnDO emulator already started")
        self._stop_event.clear()
        server = socket.create_server((self.host, self._port))
        server.settimeout(_POLL_S)
        self._server = server
        self._port = server.getsockname()[1]
        self._spawn(self._accept_loop, "prawndo-emulator-accept")

    def stop(self) -> None:
        """Close every connection and pty, stop the program runner and join all threads."""
        self._stop_event.set()
        self.drop_connections()
        while True:
            with self._lock:
                if not self._threads:
                    break
                t = self._threads.pop()
            t.join()
        self.firmware.engine.shutdown()      # after the connections: no command can start a new run
        if self._server is not None:
            self._server.close()
            self._server = None
        for fd in self._ptys:
            os.close(fd)
        self._ptys.clear()

    def __enter__(self) -> PrawnDOEmulator:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """TCP port (known after ``start()``)."""
        return self._port

    @property
    def url(self) -> str:
        """pyserial URL of the card, ``socket://127.0.0.1:PORT``."""
        return f"socket://{self.host}:{self._port}"

    def attach_pty(self) -> str:
        """Serve the firmware on a new pseudo-terminal too; returns its device path (e.g. /dev/pts/3)."""
        master, slave = os.openpty()
        tty.setraw(slave)
        self._ptys += [master, slave]          # keep the slave open: the host may close and reopen it
        console = _StreamConsole(self, fd=master)
        self._spawn(lambda: self._serve(console), "prawndo-emulator-pty")
        return os.ttyname(slave)

    # --- the virtual lab's side -------------------------------------------------------------
    def trigger(self, at_s: float | None = None) -> bool:
        """Pulse the hardware trigger (pin 16); see ``SequenceEngine.trigger``."""
        return self.firmware.engine.trigger(at_s)

    def on_sequence(self, callback: Callable[[Edges], None]) -> Callable[[], None]:
        """Register ``callback(edges)`` for every executed sequence; returns the unregister function."""
        return self.firmware.engine.on_sequence(callback)

    @property
    def records(self) -> list[SequenceRecord]:
        """The executions so far, the last 1000 (edges, start kind, aborted, clock, end time)."""
        return list(self.firmware.engine.records)

    @property
    def status(self) -> int:
        """Run status (0 STOPPED ... 6 TRANSITION_TO_STOP)."""
        return self.firmware.engine.status

    @property
    def outputs(self) -> int:
        """The current 16-bit output word."""
        return self.firmware.engine.outputs

    @property
    def time_scale(self) -> float:
        return self.firmware.engine.time_scale

    @time_scale.setter
    def time_scale(self, value: float) -> None:
        if not value >= 0:
            raise ValueError(f"time_scale = {value!r}: expected a factor >= 0")
        self.firmware.engine.time_scale = value

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until the card is STOPPED or ABORTED; False on timeout."""
        return self.firmware.engine.wait_idle(timeout_s)

    # --- faults -----------------------------------------------------------------------------
    def drop_connections(self) -> None:
        """Close every open host connection now (the card keeps its state)."""
        with self._lock:
            consoles, self._consoles = self._consoles, []
        for c in consoles:
            c.close()

    # --- internals --------------------------------------------------------------------------
    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        server = self._server
        assert server is not None
        first = True
        while not self._stop_event.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not self._holder_released():
                self._refuse(conn)
                continue
            console = _StreamConsole(self, sock=conn)
            with self._lock:
                self._holder = console
                self._consoles.append(console)
                self._threads = [t for t in self._threads if t.is_alive()]
            if first and self._banner:
                console.send(BANNER)
            first = False
            self._spawn(functools.partial(self._serve, console), "prawndo-emulator-conn")

    def _holder_released(self) -> bool:
        """True once no TCP client holds the card; a holder with unread input (its closing bytes,
        or its end of file) is given up to ``handover_s`` to wind down."""
        deadline = time.monotonic() + self.handover_s
        while True:
            with self._lock:
                holder = self._holder
            if holder is None or holder.closed:
                return True
            if time.monotonic() >= deadline or not holder.input_pending():
                return False
            self._stop_event.wait(0.005)

    def _refuse(self, conn: socket.socket) -> None:
        with self._lock:
            self.refused_connections += 1
        _log.info("PrawnDO emulator: refused a second host (the card is held)")
        self._spawn(lambda: self._send_busy(conn), "prawndo-emulator-refuse")

    def _send_busy(self, conn: socket.socket) -> None:
        """``BUSY_LINE`` and end of file, then read (and drop) what the host sends until it closes
        (at most 1 s): closing with unread input would reset the connection, and a reset can
        discard the line before the host has read it."""
        try:
            conn.sendall(BUSY_LINE)
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(_POLL_S)
            deadline = time.monotonic() + 1.0
            while not self._stop_event.is_set() and time.monotonic() < deadline:
                try:
                    if not conn.recv(4096):
                        break                    # the host closed: nothing unread
                except TimeoutError:
                    continue
        except OSError:
            pass
        finally:
            conn.close()

    def _serve(self, console: _StreamConsole) -> None:
        try:
            self.firmware.serve(console, self._stop_event)
        finally:
            console.close()
            with self._lock:
                if self._holder is console:
                    self._holder = None
