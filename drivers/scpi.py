"""A message-based SCPI instrument over pyvisa, with the fault handling every steerlab SCPI driver needs.

- No I/O in the constructor; ``connect()`` opens the VISA resource and identifies with ``*IDN?``
  (pyvisa-py opens a refused socket without complaint: the probe is what finds out).
- Setting commands produce no reply, so after each one the error queue is read
  (``SYST:ERR?`` until ``0,...``) and an ``InstrumentError`` carries the instrument's own code and text.
- Timeouts raise ``InstrumentTimeout``; the session is then out of step (a late reply may still
  come), so it is cleared and, before the next exchange, resynchronised on a fresh ``*IDN?`` answer.
- A refused, reset or closed connection raises ``InstrumentDisconnected`` and closes the resource;
  ``reconnect()`` reopens and re-applies the last value set for every control.
All public methods are serialised by a lock, so one driver may be shared between threads.
"""
from __future__ import annotations

import logging
import re
import select
import socket
import threading
import time
from typing import Any, ClassVar

import pyvisa
import pyvisa.constants
import pyvisa.errors
import pyvisa.rname

from drivers.lifecycle import Instrument
from drivers.patience import Patience, deadline_passed, no_patience
from drivers.errors import InstrumentDisconnected, InstrumentError, InstrumentTimeout, ProtocolError
from drivers.scpi_controls import Control

log = logging.getLogger(__name__)

_ERROR_REPLY = re.compile(r'\s*([+-]?\d+)\s*,\s*"(.*)"\s*')
_MAX_QUEUED_ERRORS = 100
_MISSING = object()
_BAD_ADDRESS_CODES = (pyvisa.constants.StatusCode.error_invalid_resource_name,
                      pyvisa.constants.StatusCode.error_resource_not_found)


class ScpiInstrument(Instrument):
    """Base class: subclasses declare ``Control`` class attributes and set ``model``."""

    model: ClassVar[str] = "SCPI instrument"
    error_query: ClassVar[str] = "SYST:ERR?"

    def __init__(self, address: str, *, backend: str = "@py", timeout_s: float = 2.0,
                 patience: Patience = no_patience) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 s, got {timeout_s!r}")
        self.address = address
        self.patience = patience
        self.backend = backend
        self._timeout_s = float(timeout_s)
        self._lock = threading.RLock()
        self._rm: Any = None
        self._inst: Any = None
        self._identity: str | None = None
        self._out_of_step = False
        self._last_set: dict[str, object] = {}

    # --- lifecycle (connect/close/reconnect: drivers/lifecycle.py) --------------------------------

    @property
    def _link_open(self) -> bool:
        return self._inst is not None

    def _open(self) -> None:
        """Open the resource and identify (``*IDN?``).

        Raises ValueError for a malformed address, InstrumentDisconnected if nothing answers the
        connection, InstrumentTimeout if it connects but does not answer in time.
        """
        self._open_resource()
        try:
            self._identity = self._identify()
            self._drain_old_errors()
        except InstrumentDisconnected as e:
            raise InstrumentDisconnected(f"cannot connect to {self.address}: {e.__cause__ or e}",
                                         instrument=self.model) from e
        log.info("%s: connected to %s (%s)", self.model, self.address, self._identity)

    def _restore(self) -> None:
        """Re-apply the last value set for each control (declaration order)."""
        for control in self.controls():
            if control.name in self._last_set:
                self.write_control(control, self._last_set[control.name])

    # --- information -----------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        """The ``*IDN?`` answer of the last connect (InstrumentDisconnected if never connected)."""
        if self._identity is None:
            raise InstrumentDisconnected(f"not connected to {self.address}: call connect()",
                                         instrument=self.model)
        return self._identity

    @property
    def timeout_s(self) -> float:
        """Timeout of every exchange, in seconds."""
        return self._timeout_s

    @timeout_s.setter
    def timeout_s(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"timeout_s must be > 0 s, got {seconds!r}")
        with self._lock:
            self._timeout_s = float(seconds)
            if self._inst is not None:
                self._inst.timeout = self._timeout_s * 1000.0

    @classmethod
    def controls(cls) -> list[Control[Any]]:
        """The declared controls, in declaration order (base classes first)."""
        seen: dict[str, Control[Any]] = {}
        for klass in reversed(cls.__mro__):
            for name, attr in vars(klass).items():
                if isinstance(attr, Control):
                    seen[name] = attr
        return list(seen.values())

    def settings(self) -> dict[str, object]:
        """Read back every control from the instrument: name -> value (for run files)."""
        with self._lock:
            return {c.name: self.read_control(c) for c in self.controls()}

    def last_set(self) -> dict[str, object]:
        """The values last set through this driver (what ``reconnect()`` restores)."""
        with self._lock:
            return dict(self._last_set)

    # --- SCPI exchanges --------------------------------------------------------------------------

    def write(self, command: str) -> None:
        """Send a setting command, then check the error queue (InstrumentError with its text)."""
        with self._lock:
            self._exchange(command, expect_reply=False)
            self.check_errors(command)

    def query(self, command: str) -> str:
        """Send a query and return its answer (one line, terminator removed)."""
        with self._lock:
            reply = self._exchange(command, expect_reply=True)
            assert reply is not None
            return reply

    def wait_complete(self) -> None:
        """``*OPC?``: block until the instrument has finished every pending operation (answer ``1``).

        ProtocolError for any other answer; InstrumentTimeout if it does not finish in time.
        """
        with self._lock:
            reply = self.query("*OPC?")
            if reply.strip().lstrip("+") != "1":
                raise ProtocolError("answer to '*OPC?' is not 1", reply=reply, instrument=self.model)

    def check_errors(self, command: str = "") -> None:
        """Empty the error queue; raise InstrumentError for the first entry (others are logged)."""
        with self._lock:
            errors = self.drain_errors()
            for code, text in errors[1:]:
                log.warning("%s: further error %d,%r after %r", self.model, code, text, command)
            if errors:
                raise InstrumentError(errors[0][0], errors[0][1], command=command, instrument=self.model)

    def drain_errors(self) -> list[tuple[int, str]]:
        """Read the error queue until ``0,...``: every queued ``(code, text)``, oldest first."""
        with self._lock:
            errors: list[tuple[int, str]] = []
            for _ in range(_MAX_QUEUED_ERRORS):
                reply = self.query(self.error_query)
                m = _ERROR_REPLY.fullmatch(reply)
                if not m:
                    raise ProtocolError(f"answer to {self.error_query!r} is not 'code,\"text\"'",
                                        reply=reply, instrument=self.model)
                code, text = int(m.group(1)), m.group(2)
                if code == 0:
                    break
                errors.append((code, text))
            else:
                raise ProtocolError(f"error queue did not empty after {_MAX_QUEUED_ERRORS} reads",
                                    instrument=self.model)
            return errors

    def read_control(self, control: Control[Any]) -> Any:
        """Query one control and parse its answer (ProtocolError if it does not parse)."""
        with self._lock:
            return control.decode(self.query(control.query_text))

    def write_control(self, control: Control[Any], value: Any) -> None:
        """Validate (ValueError, before any I/O), write, check errors, remember for ``reconnect()``.

        The value is remembered unless the instrument refuses it (InstrumentError); after a link
        fault (timeout, lost connection, garbled reply) the intended value stays remembered, so
        ``reconnect()`` applies it.
        """
        checked = control.check(value)
        with self._lock:
            previous = self._last_set.get(control.name, _MISSING)
            self._last_set[control.name] = checked
            try:
                self.write(control.command_text(checked))
            except InstrumentError:
                if previous is _MISSING:
                    del self._last_set[control.name]
                else:
                    self._last_set[control.name] = previous
                raise

    # --- internals -------------------------------------------------------------------------------

    def _open_resource(self) -> None:
        try:
            parsed = pyvisa.rname.parse_resource_name(self.address)
        except pyvisa.rname.InvalidResourceName as e:
            raise ValueError(f"{self.model}: invalid VISA address {self.address!r}: {e}") from None
        if parsed.resource_class not in ("INSTR", "SOCKET"):
            raise ValueError(f"{self.model}: {self.address!r} is a {parsed.resource_class} resource, "
                             "expected a message-based INSTR or SOCKET resource")
        ms = self._timeout_s * 1000.0
        try:
            self._rm = pyvisa.ResourceManager(self.backend)
            self._inst = self._rm.open_resource(self.address, read_termination="\n",
                                                write_termination="\n", timeout=ms, open_timeout=ms)
            self._set_nodelay()
        except pyvisa.errors.VisaIOError as e:
            self._discard()
            if e.error_code in _BAD_ADDRESS_CODES:
                raise ValueError(f"{self.model}: invalid VISA address {self.address!r}: {e}") from e
            raise InstrumentDisconnected(f"cannot open {self.address}: {e}", instrument=self.model) from e
        except Exception as e:  # pyvisa-py raises a bare Exception("could not connect: ...")
            self._discard()
            raise InstrumentDisconnected(f"cannot open {self.address}: {e}", instrument=self.model) from e

    def _set_nodelay(self) -> None:
        """Disable Nagle's algorithm on a raw TCP socket: a command followed at once by ``SYST:ERR?``
        otherwise waits for the peer's delayed ACK (44 ms instead of 0.1 ms: benchmarks/sma100b_settings.py).
        pyvisa-py 0.8.1 does not route VI_ATTR_TCPIP_NODELAY to its socket, hence the direct call."""
        sock = self._raw_socket()
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as e:
                log.debug("%s: TCP_NODELAY not set on %s: %s", self.model, self.address, e)

    def _identify(self) -> str:
        idn = self._exchange("*IDN?", expect_reply=True)
        assert idn is not None
        fields = [f.strip() for f in idn.split(",")]
        if len(fields) != 4 or not fields[0] or not fields[1]:
            raise ProtocolError("*IDN? answer is not 'maker,model,serial,firmware'", reply=idn,
                                instrument=self.model)
        if fields[1].upper() != self.model.upper():
            log.warning("%s driver connected to a %s (%s): same SCPI subset assumed",
                        self.model, fields[1], self.address)
        return idn

    def _drain_old_errors(self) -> None:
        try:
            self.check_errors("(before connect)")
        except InstrumentError as e:
            log.warning("%s: errors queued before this connection: %s", self.model, e)

    def _discard(self) -> None:
        inst, rm = self._inst, self._rm
        self._inst = self._rm = None
        self._out_of_step = False
        for closable in (inst, rm):
            if closable is not None:
                try:
                    closable.close()
                except Exception as e:  # closing a broken session must not mask the original error
                    log.debug("%s: ignoring error on close: %s", self.model, e)

    def _exchange(self, command: str, *, expect_reply: bool) -> str | None:
        inst = self._inst
        if inst is None:
            raise InstrumentDisconnected(f"not connected to {self.address}: call connect() or reconnect()",
                                         instrument=self.model)
        try:
            if self._out_of_step:
                self._resync()
            inst.write(command)
            return self._read_line(command) if expect_reply else None
        except pyvisa.errors.VisaIOError as e:
            if e.error_code == pyvisa.constants.StatusCode.error_timeout:
                raise self._timed_out(command) from e
            raise self._lost(command, e) from e
        except OSError as e:
            raise self._lost(command, e) from e

    def _read_line(self, command: str) -> str:
        t_start = time.monotonic()
        raw = b""
        while True:
            try:
                raw += bytes(self._inst.read_raw())
            except pyvisa.errors.VisaIOError as e:
                # a late answer stays in the socket: read on while the host, not the instrument, is late
                if (e.error_code == pyvisa.constants.StatusCode.error_timeout
                        and not deadline_passed(t_start, self._timeout_s, time.monotonic(), self.patience)):
                    continue
                raise
            if raw.endswith(b"\n"):      # a backend may end a read without the terminator
                break
            if deadline_passed(t_start, self._timeout_s, time.monotonic(), self.patience):
                raise pyvisa.errors.VisaIOError(pyvisa.constants.StatusCode.error_timeout)
        try:
            return raw[:-1].decode("ascii").rstrip("\r")
        except UnicodeDecodeError:
            raise ProtocolError(f"non-ASCII answer to {command!r}", reply=raw, instrument=self.model) from None

    def _resync(self) -> None:
        """Discard late replies until a fresh ``*IDN?`` answer arrives (raises on timeout)."""
        deadline = time.monotonic() + self._timeout_s
        self._inst.write("*IDN?")
        while True:
            try:
                line = self._read_line("*IDN?")
            except ProtocolError as e:
                line = repr(e.reply)
            if line == self._identity:
                self._out_of_step = False
                return
            log.info("%s: discarded a late reply %r", self.model, line)
            if time.monotonic() > deadline:
                raise pyvisa.errors.VisaIOError(pyvisa.constants.StatusCode.error_timeout)

    def _timed_out(self, command: str) -> Exception:
        if self._peer_closed():
            return self._lost(command, ConnectionResetError("connection closed by the instrument"))
        self._out_of_step = True
        try:
            self._inst.clear()
        except (pyvisa.errors.VisaIOError, OSError) as e:
            return self._lost(command, e)
        return InstrumentTimeout(command, self._timeout_s, instrument=self.model)

    def _lost(self, command: str, cause: BaseException) -> InstrumentDisconnected:
        self._discard()
        return InstrumentDisconnected(f"connection to {self.address} lost at {command!r} "
                                      f"({type(cause).__name__}: {cause}); call reconnect()",
                                      instrument=self.model)

    def _raw_socket(self) -> socket.socket | None:
        """The TCP socket under a pyvisa-py SOCKET resource, else None (other backends/resources)."""
        try:
            session = self._inst.visalib.sessions[self._inst.session]
        except (AttributeError, KeyError, TypeError, pyvisa.errors.InvalidSession):
            return None
        sock = getattr(session, "interface", None)
        return sock if isinstance(sock, socket.socket) else None

    def _peer_closed(self) -> bool:
        """True if the underlying TCP socket (pyvisa-py SOCKET resources) was closed by the peer.

        pyvisa-py reports a closed socket as a read timeout, and its ``clear()`` would then spin
        forever, so the socket is peeked at before anything else is done with it.
        """
        sock = self._raw_socket()
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True
