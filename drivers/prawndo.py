"""Driver for the PrawnDO timing card (labscript-suite ``prawn_digital_output`` firmware) over pyserial.

The card speaks a line protocol on a USB CDC serial port: commands end with ``\\n``, every reply line
ends with ``\\r\\n``. ``address`` is anything ``serial.serial_for_url`` opens: ``/dev/ttyACM0``,
``COM3``, or ``socket://127.0.0.1:PORT`` (the virtual lab's emulator).

Every reply is checked: a known firmware error line raises ``InstrumentError`` (``CardBusyError``
while a sequence runs) carrying the card's text; anything else unexpected raises ``ProtocolError``;
no complete line within ``timeout_s`` raises ``InstrumentTimeout``; a lost or refused link raises
``InstrumentDisconnected``. After a timeout or a protocol error the next exchange first resynchronises
(discards stale input and re-aligns on a sync line); ``reconnect()`` reopens the port.

The firmware echoes the raw command line, terminator included, in ``Invalid command: <cmd>`` and
``Cannot execute command <cmd> during buffered execution.``; the driver reads such a reply as one line.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

import serial

from drivers.errors import (DriverError, InstrumentDisconnected, InstrumentError, InstrumentTimeout,
                            ProtocolError)
from drivers.prawndo_protocol import (ECHO_PREFIXES, HELD_PREFIX, CardBusyError, CardStatus, ClockSource,
                                     ProgramMismatch, RunStatus, firmware_error)
from drivers.lifecycle import Instrument, open_serial
from drivers.patience import Patience, deadline_passed, no_patience
from drivers.pulse_program import (DEFAULT_CLOCK_HZ, MEMORY_INSTRUCTIONS, Instruction, PulseProgramError,
                                   validate_instructions)

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
__all__ = ["PrawnDO", "UploadMode", "CardBusyError", "CardStatus", "ClockSource", "ProgramMismatch",
           "RunStatus"]

UploadMode = Literal["auto", "binary", "text"]
_MAX_LINE_BYTES = 4096
_READ_BLOCK = 65536
_POLL_MIN_S, _POLL_MAX_S = 50e-6, 2e-3   # back-off while no input: low latency, little CPU
_GET_PIPELINE = 64                 # `get` commands in flight during verify()
_UPLOAD_BYTES_PER_S = 200e3        # conservative USB CDC throughput for upload timeouts


def _has_stop(ins: Sequence[Instruction]) -> bool:
    return any(a.cycles == 0 and b.cycles == 0 for a, b in zip(ins, ins[1:]))


class PrawnDO(Instrument):
    """A PrawnDO card at ``address`` (serial port path or pyserial URL); no I/O until ``connect()``.

    ``timeout_s`` bounds every reply (uploads get extra time for their size).
    """

    def __init__(self, address: str, *, timeout_s: float = 1.0, patience: Patience = no_patience) -> None:
        if not (timeout_s > 0):
            raise ValueError(f"timeout_s = {timeout_s!r}: expected a time in s (> 0)")
        self.address = address
        self.timeout_s = float(timeout_s)
        self.patience = patience
        self._name = f"PrawnDO {address}"
        self._port: serial.SerialBase | None = None
        self._rx = bytearray()
        self._lock = threading.RLock()
        self._needs_resync = False
        self._binary_upload_ok = True
        self._version: str | None = None
        self._board: str | None = None
        self._clock_hz = DEFAULT_CLOCK_HZ
        self._sync_prefix = f"#sync-{os.urandom(3).hex()}-"    # unique: stale echoes never match
        self._sync_ids = itertools.count(1)

    # --- connection (the lifecycle itself: drivers/lifecycle.py) -----------------------------
    @property
    def _link_open(self) -> bool:
        return self._port is not None

    def _open(self) -> None:
        """Open the port, resynchronise, switch debug output off and read version and board."""
        self._port = open_serial(self.address, self.timeout_s, self._name)
        self._rx.clear()
        self._resync()
        self._ask_ok("ndb")
        self._version = self.version()
        try:
            self._board = self.board()
        except InstrumentError:   # firmware before 1.3 has no `brd`: assume the smaller memory
            self._board = None
        _log.info("%s: firmware %s, board %s", self._name, self._version, self._board)

    def _discard(self) -> None:
        """Close the port (the card keeps its program and state)."""
        self._close_port()

    @property
    def max_instructions(self) -> int:
        """Instruction memory of the connected board (30 000 when unknown)."""
        return MEMORY_INSTRUCTIONS.get(self._board or "pico1", MEMORY_INSTRUCTIONS["pico1"])

    @property
    def clock_hz(self) -> float:
        """Clock the driver assumes for the card, in Hz (100 MHz unless ``set_clock`` changed it)."""
        return self._clock_hz

    # --- queries ----------------------------------------------------------------------------
    def version(self) -> str:
        """Measure the firmware version (``ver``), e.g. ``"1.3.0"``."""
        return self._exchange("ver", lambda nxt: self._match("ver", nxt(), r"Version: (\S+)")[0])

    def board(self) -> str:
        """Measure the board (``brd``): ``"pico1"`` or ``"pico2"``."""
        return self._exchange("brd", lambda nxt: self._match("brd", nxt(), r"board: (pico[12])")[0])

    def status(self) -> CardStatus:
        """Measure run-status and clock-status (``sts``)."""
        def parse(nxt: Callable[[], str]) -> CardStatus:
            line = nxt()
            run, clk = self._match("sts", line, r"run-status:(\d+) clock-status:(\d+)")
            try:
                return CardStatus(RunStatus(int(run)), ClockSource(int(clk)))
            except ValueError:
                raise ProtocolError("status out of range", reply=line, instrument=self._name) from None
        return self._exchange("sts", parse)

    def wait_until_stopped(self, timeout_s: float, *, poll_s: float = 0.01) -> CardStatus:
        """Poll ``sts`` until the card is STOPPED or ABORTED; InstrumentTimeout after ``timeout_s``."""
        t_start = time.monotonic()
        while True:
            st = self.status()
            if st.idle:
                return st
            if deadline_passed(t_start, timeout_s, time.monotonic(), self.patience):
                raise InstrumentTimeout(f"sts (still {st.run.name})", timeout_s, instrument=self._name)
            time.sleep(poll_s)

    def program_length(self) -> int:
        """Measure the number of instructions in the card's memory (``len``)."""
        def parse(nxt: Callable[[], str]) -> int:
            lines = self._match("len", nxt(), r"Number of command lines: (\d+)")[0]
            n = int(self._match("len", nxt(), r"Number of instructions: (\d+)")[0])
            if int(lines) != 2 * n:
                raise ProtocolError(f"len: {lines} command lines for {n} instructions",
                                    instrument=self._name)
            return n
        return self._exchange("len", parse)

    def read_instruction(self, address: int) -> Instruction:
        """Read the instruction at ``address`` (``get``)."""
        cmd = f"get {address:x}"
        return self._exchange(cmd, lambda nxt: self._parse_get(cmd, nxt()))

    def outputs(self) -> int:
        """Measure the current output word (``gto``)."""
        return self._exchange("gto", lambda nxt: int(self._match("gto", nxt(), r"([0-9a-f]+)")[0], 16))

    def measure_clock_hz(self) -> float:
        """Measure the system clock (``frq``, line ``clk_sys``), in Hz."""
        n_lines = 7 if self._board == "pico2" else 8     # clk_rtc exists on the RP2040 only
        def parse(nxt: Callable[[], str]) -> float:
            found = [self._match("frq", nxt(), r"(\w+) = (\d+)kHz") for _ in range(n_lines)]
            values = {k: int(v) for k, v in found}
            if "clk_sys" not in values:
                raise ProtocolError("frq: no clk_sys line", reply=str(found), instrument=self._name)
            return values["clk_sys"] * 1e3
        return self._exchange("frq", parse)

    # --- programming ------------------------------------------------------------------------
    def program(self, instructions: Sequence[Instruction | tuple[int, int]], *,
                upload: UploadMode = "auto") -> Literal["binary", "text"]:
        """Write ``instructions`` as the card's program; return the upload used.

        ``upload``: ``"binary"`` (``adm``), ``"text"`` (``cls`` + ``add``) or ``"auto"`` (binary, and
        text from then on if the firmware refuses ``adm``). The program must contain a stop (two
        successive 0-cycle instructions). Bad instructions raise PulseProgramError before any I/O.
        """
        ins = validate_instructions(instructions, max_instructions=self.max_instructions)
        if not _has_stop(ins):
            raise PulseProgramError("program has no stop (two successive 0-cycle instructions): "
                                    "the card would never return to STOPPED")
        if upload not in ("auto", "binary", "text"):
            raise ValueError(f"upload = {upload!r}: expected 'auto', 'binary' or 'text'")
        with self._lock:
            if upload == "binary" or (upload == "auto" and self._binary_upload_ok):
                if self._upload_binary(ins, fallback_allowed=(upload == "auto")):
                    return "binary"
                _log.warning("%s refused `adm`: using text upload from now on", self._name)
                self._binary_upload_ok = False
            self._upload_text(ins)
            return "text"

    def verify(self, instructions: Sequence[Instruction | tuple[int, int]]) -> None:
        """Read the program back (``len``, ``get``) and raise ProgramMismatch unless it equals ``instructions``."""
        expected = validate_instructions(instructions)
        with self._lock:
            n = self.program_length()
            if n != len(expected):
                raise ProgramMismatch(f"card holds {n} instructions, expected {len(expected)}",
                                      instrument=self._name)
            for start in range(0, n, _GET_PIPELINE):
                addrs = range(start, min(n, start + _GET_PIPELINE))
                cmds = [f"get {a:x}" for a in addrs]
                try:
                    got = self._exchange(
                        "\n".join(cmds), lambda nxt: [self._parse_get(c, nxt()) for c in cmds])
                except InstrumentError:
                    self._needs_resync = True      # replies to the rest of the batch are pending
                    raise
                for a, g in zip(addrs, got):
                    if g != expected[a]:
                        raise ProgramMismatch(
                            f"instruction {a}: card holds (word {g.word:#06x}, {g.cycles} cycles), "
                            f"expected (word {expected[a].word:#06x}, {expected[a].cycles} cycles)",
                            instrument=self._name)

    def clear(self) -> None:
        """Clear the program (``cls``)."""
        self._ask_ok("cls")

    def arm(self) -> None:
        """Arm (``run``): the program starts on the next hardware trigger (pin 16)."""
        self._ask_ok("run")

    @property
    def software_start_supported(self) -> bool:
        """False for firmware 1.3.0, whose ``swr`` waits for a hardware trigger like ``run``
        (fixed in 1.3.1); True otherwise (and before ``connect()``)."""
        return self._version != "1.3.0"

    def start(self) -> None:
        """Start the program by software (``swr``): at once, except on firmware 1.3.0, where it
        waits for a hardware trigger (see ``software_start_supported``; the sequencer refuses
        software-started runs on such a card)."""
        self._ask_ok("swr")

    def abort(self) -> bool:
        """Abort a running or armed program (``abt``); False if nothing was running."""
        reply = self._exchange("abt", lambda nxt: nxt())
        if reply == "ok":
            return True
        if reply == "Can only abort when status is 1 or 2":
            return False
        raise self._error("abt", reply)

    def set_outputs(self, word: int) -> None:
        """Control the outputs manually (``man``): 16-bit word, bit 15 = output 15."""
        if isinstance(word, bool) or not isinstance(word, int) or not 0 <= word <= 0xFFFF:
            raise ValueError(f"word = {word!r}: expected an integer 0..0xFFFF")
        self._ask_ok(f"man {word:x}")

    def set_clock(self, *, source: ClockSource, frequency_hz: int) -> None:
        """Control the clock (``clk``): internal PLL or external (pin 20) at ``frequency_hz`` (Hz)."""
        if isinstance(frequency_hz, bool) or not isinstance(frequency_hz, int) or frequency_hz <= 0:
            raise ValueError(f"frequency_hz = {frequency_hz!r}: expected a positive integer in Hz")
        self._ask_ok(f"clk {int(ClockSource(source))} {frequency_hz}")
        self._clock_hz = float(frequency_hz)

    def resync(self) -> None:
        """Discard stale input and re-align replies with commands (done automatically after errors)."""
        with self._lock:
            self._require_port()
            self._resync()

    # --- uploads ----------------------------------------------------------------------------
    def _upload_binary(self, ins: list[Instruction], *, fallback_allowed: bool) -> bool:
        cmd = f"adm 0 {len(ins):x}"
        first = self._exchange(cmd, lambda nxt: nxt())
        if first != "ready":
            refused = first == "ok" or first.startswith("Invalid command: ") or first == "Invalid request"
            if refused and fallback_allowed:
                return False
            raise self._error(cmd, first)
        payload = b"".join(struct.pack("<HI", i.word, i.cycles) for i in ins)
        timeout = self.timeout_s + len(payload) / _UPLOAD_BYTES_PER_S
        reply = self._exchange(f"<{len(payload)} bytes of adm data>", lambda nxt: nxt(),
                               raw=payload, timeout_s=timeout)
        if reply != "ok":
            raise self._error(cmd, reply)
        return True

    def _upload_text(self, ins: list[Instruction]) -> None:
        # the firmware leaves add mode (before reading `end`) once memory - 1 instructions are stored
        if len(ins) > self.max_instructions - 2:
            raise PulseProgramError(f"{len(ins)} instructions: text upload holds at most "
                                    f"{self.max_instructions - 2} on this card")
        self.clear()                               # `add` appends to the current program
        body = "".join(f"{i.word:x} {i.cycles:x}\n" for i in ins)
        raw = f"add\n{body}end\n".encode("ascii")
        timeout = self.timeout_s + len(raw) / _UPLOAD_BYTES_PER_S
        reply = self._exchange(f"add <{len(ins)} instructions> end", lambda nxt: nxt(),
                               raw=raw, timeout_s=timeout)
        if reply != "ok":
            self._needs_resync = True              # the card left add mode: the rest became commands
            raise self._error("add", reply)

    # --- exchanges --------------------------------------------------------------------------
    def _ask_ok(self, command: str) -> None:
        reply = self._exchange(command, lambda nxt: nxt())
        if reply != "ok":
            raise self._error(command, reply)

    def _exchange(self, command: str, parse: Callable[[Callable[[], str]], _T], *,
                  raw: bytes | None = None, timeout_s: float | None = None) -> _T:
        """Send ``command`` (or ``raw`` bytes) and let ``parse`` read the reply lines it expects."""
        with self._lock:
            self._require_port()
            if self._needs_resync:
                self._resync()
            data = raw if raw is not None else (command + "\n").encode("ascii")
            try:
                self._write(data, command, timeout_s or self.timeout_s)
                return parse(lambda: self._read_reply(command, timeout_s or self.timeout_s))
            except InstrumentError:
                raise
            except DriverError:
                self._needs_resync = True
                raise

    def _require_port(self) -> serial.SerialBase:
        if self._port is None:
            raise InstrumentDisconnected("not connected: call connect() or reconnect()",
                                         instrument=self._name)
        return self._port

    def _io(self, op: Callable[[serial.SerialBase], _T], command: str) -> _T:
        port = self._require_port()
        try:
            return op(port)
        except serial.SerialTimeoutException as exc:
            self._needs_resync = True
            raise InstrumentTimeout(command, self.timeout_s, instrument=self._name) from exc
        except (serial.SerialException, OSError) as exc:
            self._close_port()
            raise InstrumentDisconnected(f"connection lost during {command!r}: {exc}",
                                         instrument=self._name) from exc

    def _write(self, data: bytes, command: str, timeout_s: float | None = None) -> None:
        _log.debug("%s <- %r", self._name, data[:200])
        port = self._require_port()
        if timeout_s is not None and timeout_s != port.write_timeout:    # long uploads
            self._io(lambda p: setattr(p, "write_timeout", timeout_s), command)
        self._io(lambda p: p.write(data), command)

    def _read_raw_line(self, command: str, timeout_s: float) -> bytes:
        t_start = time.monotonic()
        deadline = t_start + timeout_s
        pause = _POLL_MIN_S
        while True:
            i = self._rx.find(b"\n")
            if i >= 0:
                line = bytes(self._rx[:i + 1])
                del self._rx[:i + 1]
                return line
            if len(self._rx) > _MAX_LINE_BYTES:
                raise ProtocolError(f"no line end in {len(self._rx)} bytes after {command!r}",
                                    reply=bytes(self._rx[:80]), instrument=self._name)
            now = time.monotonic()
            if now >= deadline:                   # the host was late, not the card: keep reading
                deadline = max(deadline, t_start + timeout_s + self.patience(t_start, now))
            if now >= deadline:
                if self._rx:
                    _log.warning("%s: partial line at timeout: %r", self._name, bytes(self._rx))
                raise InstrumentTimeout(command, timeout_s, instrument=self._name)
            chunk = self._io(lambda p: p.read(_READ_BLOCK), command)
            if chunk:
                self._rx += chunk
                pause = _POLL_MIN_S
            else:
                time.sleep(min(pause, deadline - now))
                pause = min(2 * pause, _POLL_MAX_S)

    def _read_reply(self, command: str, timeout_s: float) -> str:
        """One reply line without its ``\\r\\n`` (echo replies joined); ProtocolError if malformed."""
        raw = self._read_raw_line(command, timeout_s)
        if raw.startswith(ECHO_PREFIXES) and not raw.endswith(b"\r\n"):
            raw = raw[:-1] + self._read_raw_line(command, timeout_s)   # the echoed command's "\n"
        _log.debug("%s -> %r", self._name, raw)
        if not raw.endswith(b"\r\n"):
            raise ProtocolError(f"reply to {command!r} not terminated by \\r\\n", reply=raw,
                                instrument=self._name)
        try:
            return raw[:-2].decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError(f"garbage in reply to {command!r}", reply=raw,
                                instrument=self._name) from None

    def _resync(self) -> None:
        """Drop stale input, leave any half-done text upload and read up to a fresh sync echo."""
        port = self._require_port()
        self._rx.clear()
        self._drop_stale_input()
        token = f"{self._sync_prefix}{next(self._sync_ids)}".encode("ascii")
        self._write(b"\nend\n" + token + b"\n", "resync")
        deadline = time.monotonic() + self.timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise InstrumentTimeout("resync", self.timeout_s, instrument=self._name)
            raw = self._read_raw_line("resync", left)
            if raw.startswith(HELD_PREFIX):
                raise self._refused(raw)
            if token in raw:
                if not raw.endswith(b"\r\n"):
                    self._read_raw_line("resync", max(left, 0.01))
                break
            _log.debug("%s: resync discards %r", self._name, raw)
        self._needs_resync = False
        _log.debug("%s: resynchronised on %s", self._name, port.name)

    def _drop_stale_input(self) -> None:
        """Read and drop what is waiting (replies to an abandoned exchange). A card held by another
        host sends its refusal at once and closes, so the refusal is looked for in what is dropped:
        pyserial's ``reset_input_buffer`` would discard it unseen and leave only the end of file."""
        stale = bytearray()
        lost: InstrumentDisconnected | None = None
        try:
            while len(stale) < 16 * _READ_BLOCK:
                chunk = self._io(lambda p: p.read(_READ_BLOCK), "resync")
                if not chunk:
                    break
                stale += chunk
        except InstrumentDisconnected as exc:
            lost = exc
        i = stale.find(HELD_PREFIX)
        if i >= 0:
            raise self._refused(bytes(stale[i:]).split(b"\n", 1)[0]) from lost
        if lost is not None:
            raise lost
        if stale:
            _log.debug("%s: resync drops %d stale bytes", self._name, len(stale))

    def _refused(self, line: bytes) -> InstrumentDisconnected:
        """Close the port; the error naming the card's refusal ``line`` (held by another host)."""
        self._close_port()
        return InstrumentDisconnected(f"cannot connect to {self.address}: "
                                      f"{line.decode('ascii', 'replace').strip()}", instrument=self._name)

    def _close_port(self) -> None:
        port, self._port = self._port, None
        self._rx.clear()
        self._needs_resync = False
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as exc:
                _log.debug("%s: close: %s", self._name, exc)

    # --- reply parsing ----------------------------------------------------------------------
    def _match(self, command: str, line: str, pattern: str) -> tuple[str, ...]:
        m = re.fullmatch(pattern, line)
        if m is None:
            raise self._error(command, line)
        return m.groups()

    def _parse_get(self, command: str, line: str) -> Instruction:
        word, cycles = self._match(command, line, r"([0-9a-f]+) ([0-9a-f]+)")
        return Instruction(int(word, 16), int(cycles, 16))

    def _error(self, command: str, line: str) -> DriverError:
        """The exception for an unexpected reply: InstrumentError for firmware errors, else ProtocolError."""
        error = firmware_error(command, line, instrument=self._name)
        if error is not None:
            return error
        self._needs_resync = True
        return ProtocolError(f"unexpected reply to {command!r}", reply=line, instrument=self._name)
