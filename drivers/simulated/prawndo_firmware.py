"""The PrawnDO firmware (labscript-suite prawn_do.c, v1.3.0 or v1.3.1) as a Python state machine.

The emulated card states one firmware version (``ver``) and behaves as that version. The main core
hands commands to the second core through its FIFO as 32-bit words: bit 16 (BUFFERED) starts a
buffered run, anything else is a manual update of the outputs. ``run`` pushes BUFFERED_HWSTART
(``3 << 16``), ``swr`` pushes BUFFERED, ``man <x>`` pushes ``x`` unmasked. The second core decides
"wait for a hardware trigger" from ``command & HWSTART_MASK[version]``:

- 1.3.0: mask ``3 << 16``, so ``swr`` *also* waits for a trigger (the bug fixed in 1.3.1, commit
  c9f811a "Fix bug where software starts required hardware triggers"), and ``man`` with bit 16
  set starts a buffered run that waits for a trigger;
- 1.3.1: mask ``2 << 16``: ``swr`` starts at once; ``man 10000`` starts a buffered run at once,
  ``man 30000`` one that waits for a trigger.

A ``man`` word without bit 16 sets the outputs to its low 16 bits (the PIO drives pins 0-15 only).
Both versions answer ``ok`` to such a ``man`` (the firmware does not check the word).
Not emulated: 1.3.0's stale manual update after an abort (fixed in 1.3.1 by commit eaebfc5).

It reads commands from a *console* (a byte stream: TCP socket or pty, see prawndo_emulator.py),
answers exactly as the firmware prints (``\\r\\n`` line ends; ``Invalid command: %s`` and ``Cannot
execute command %s during buffered execution.`` echo the raw command line, its ``\\n`` included,
unless ``echo_raw_command=False``), keeps its memory, mode (command / ``add`` / ``adm`` binary) and run
state across reconnections. Program execution, the run states, the trigger input and the edge
record are the SequenceEngine's (prawndo_engine.py), reachable as ``firmware.engine``.

Not emulated: ``edt``, ``cur``, ``prg`` (answered as invalid commands), clock resuscitation.
One documented difference: when ``add`` fills the memory the firmware leaves add mode silently (its
``Too many DO commands`` check never fires); the emulator prints that message, as the facts sheet says.
"""
from __future__ import annotations

import re
import threading
from typing import Protocol

from drivers.simulated.prawndo_engine import ABORTED, STOPPED, SequenceEngine

MEMORY = {"pico1": 30_000, "pico2": 60_000}
BUFFERED, BUFFERED_HWSTART = 1 << 16, 3 << 16
HWSTART_MASK = {"1.3.0": 3 << 16, "1.3.1": 2 << 16}
"""Per firmware version: the bits of a core-1 command that make a buffered run wait for a trigger."""
MAX_CLOCK_HZ = {"pico1": 133_000_000, "pico2": 150_000_000}
_LINE_MAX = 255                      # SERIAL_BUFFER_SIZE - 1
_HEX = re.compile(rb"\s*([+-]?)(?:0[xX])?([0-9a-fA-F]+)")
_DEC = re.compile(rb"\s*\+?([0-9]+)")
_TOKEN = re.compile(rb"\s*\S+")


class Console(Protocol):
    """A byte stream to the host."""

    def read_line(self, max_bytes: int) -> bytes | None:
        """Bytes up to and including ``\\n`` (or ``max_bytes``); None once closed."""

    def read_some(self, max_bytes: int) -> bytes | None:
        """1..max_bytes bytes; None once closed."""

    def send(self, data: bytes) -> None:
        """Write ``data`` (errors of a closed stream are swallowed)."""


def _scan(data: bytes, kinds: str, skip_command: bool) -> list[int]:
    """C ``sscanf``: ``%*s`` (if ``skip_command``) then ``x`` (hex) / ``u`` (decimal) conversions."""
    pos, out = 0, []  # type: int, list[int]
    if skip_command:
        m = _TOKEN.match(data)
        if m is None:
            return out
        pos = m.end()
    for kind in kinds:
        m = (_HEX if kind == "x" else _DEC).match(data, pos)
        if m is None:
            break
        if kind == "x":
            value = int(m.group(2), 16) & 0xFFFFFFFF
            value = (-value) & 0xFFFFFFFF if m.group(1) == b"-" else value
        else:
            value = int(m.group(1)) & 0xFFFFFFFF
        out.append(value)
        pos = m.end()
    return out


def pll_achievable(freq_khz: int) -> bool:
    """pico-sdk ``check_sys_clock_khz``: 12 MHz x fbdiv (VCO 750-1600 MHz) / postdiv1 / postdiv2."""
    freq_hz = freq_khz * 1000
    for fbdiv in range(16, 321):
        vco = fbdiv * 12_000_000
        if not 750_000_000 <= vco <= 1_600_000_000:
            continue
        for pd1 in range(1, 8):
            for pd2 in range(1, pd1 + 1):
                if vco % (pd1 * pd2) == 0 and vco // (pd1 * pd2) == freq_hz:
                    return True
    return False


class PrawnDOFirmware:
    """The card's state and command interpreter; ``serve(console, stop)`` runs one host connection."""

    def __init__(self, *, board: str = "pico2", version: str = "1.3.1", binary_upload: bool = True,
                 echo_raw_command: bool = True, time_scale: float = 1.0) -> None:
        if board not in MEMORY:
            raise ValueError(f"board = {board!r}: expected one of {sorted(MEMORY)}")
        if version not in HWSTART_MASK:
            raise ValueError(f"version = {version!r}: the emulated firmware versions are "
                             f"{', '.join(sorted(HWSTART_MASK))}")
        self.board, self.version = board, version
        self.binary_upload, self.echo_raw_command = binary_upload, echo_raw_command
        self.engine = SequenceEngine(time_scale=time_scale)
        self.max_instructions = MEMORY[board]
        self._mem: list[tuple[int, int]] = [(0, 0)] * self.max_instructions
        self._count = 0                            # instructions in the program (do_cmd_count / 2)
        self._mode = "cmd"                         # "cmd" | "add" | "adm"
        self._adm_left, self._adm_buf = 0, bytearray()
        self._clk_external, self._clock_hz, self._debug = False, 100e6, False
        self._cmd_lock = threading.RLock()         # one command at a time
        self._console: Console | None = None

    @property
    def clock_hz(self) -> float:
        return self._clock_hz

    @property
    def instructions(self) -> list[tuple[int, int]]:
        """The program in memory as (word, cycles)."""
        with self._cmd_lock:
            return list(self._mem[:self._count])

    # --- host connection --------------------------------------------------------------------
    def serve(self, console: Console, stop: threading.Event) -> None:
        """Read and execute commands from ``console`` until it closes or ``stop`` is set."""
        self._console = console
        while not stop.is_set():
            if self._mode == "adm":
                data = console.read_some(self._adm_left)
                if data is None:
                    return
                with self._cmd_lock:
                    self._adm_data(data)
                continue
            line = console.read_line(_LINE_MAX)
            if line is None:
                return
            with self._cmd_lock:
                if self._mode == "add":
                    self._add_line(line)
                else:
                    self._command(line)

    def _say(self, text: str | bytes) -> None:
        console = self._console
        if console is not None:
            console.send((text.encode("latin-1") if isinstance(text, str) else text) + b"\r\n")

    def _echo(self, line: bytes) -> bytes:
        return line if self.echo_raw_command else line.rstrip(b"\r\n")

    # --- commands ---------------------------------------------------------------------------
    def _command(self, line: bytes) -> None:
        cmd = line[:3]
        if len(line) < 3:
            self._say(b"Invalid command: " + self._echo(line))
            return
        status = self.engine.status
        if cmd == b"ver":
            self._say(f"Version: {self.version}")
        elif cmd == b"brd":
            self._say(f"board: {self.board}")
        elif cmd == b"sts":
            self._say(f"run-status:{status} clock-status:{int(self._clk_external)}")
        elif cmd in (b"deb", b"ndb"):
            self._debug = cmd == b"deb"
            self._say("ok")
        elif cmd == b"abt":
            self._say("ok" if self.engine.request_abort() else "Can only abort when status is 1 or 2")
        elif status not in (STOPPED, ABORTED):
            self._say(b"Cannot execute command " + self._echo(line) + b" during buffered execution.")
        elif cmd == b"cls":
            self._count = 0
            self._say("ok")
        elif cmd in (b"run", b"swr"):
            self._core1(BUFFERED_HWSTART if cmd == b"run" else BUFFERED)
            self._say("ok")
        elif cmd == b"man":
            self._man(line)
        elif cmd == b"gto":
            self._say(f"{self.engine.outputs:x}")
        elif cmd == b"set":
            self._set(line)
        elif cmd == b"get":
            self._get(line)
        elif cmd == b"add":
            self._enter_add()
        elif cmd == b"adm" and self.binary_upload:
            self._enter_adm(line)
        elif cmd == b"dmp":
            for word, cycles in self._mem[:self._count]:
                self._say(f"do_cmd: {word:04x}")
                self._say("\tWait" if cycles == 0 else f"\treps: {cycles:x}")
        elif cmd == b"len":
            self._say(f"Number of command lines: {2 * self._count}")
            self._say(f"Number of instructions: {self._count}")
        elif cmd == b"clk":
            self._clk(line)
        elif cmd == b"frq":
            self._frq()
        else:
            self._say(b"Invalid command: " + self._echo(line))

    def _man(self, line: bytes) -> None:
        v = _scan(line, "x", True)
        if len(v) != 1:
            self._say("invalid request")
            return
        self._say("ok")
        self._core1(v[0])

    def _core1(self, command: int) -> None:
        """What the second core does with a FIFO word (see the module docstring)."""
        if command & BUFFERED:
            hwstart = command & HWSTART_MASK[self.version]
            self.engine.start(list(self._mem[:self._count]), clock_hz=self._clock_hz,
                              hardware_start=bool(hwstart), say=self._say, debug=self._debug,
                              hwstart_flag=hwstart)
            return
        self.engine.outputs = command & 0xFFFF
        if self._debug:
            self._say(f"Output commanded: {command:x}")

    def _set(self, line: bytes) -> None:
        v = _scan(line, "xxx", True)
        if len(v) < 3:
            self._say("Invalid instruction")
            return
        addr, word, cycles = v
        if addr >= self.max_instructions:
            self._say(f"Invalid instruction address {addr:x}")
        elif word & ~0xFFFF:
            self._say(f"Invalid output specification {word:x}")
        elif 0 < cycles < 5:
            self._say(f"Reps must be 0 or greater than 4, got {cycles:x}")
        else:
            self._mem[addr] = (word, cycles)
            if addr >= self._count:
                self._count = addr + 1
            elif cycles == 0 and addr != 0 and self._mem[addr - 1][1] == 0:
                self._count = addr + 1           # a stop written: the program ends here
            self._say("ok")

    def _get(self, line: bytes) -> None:
        v = _scan(line, "x", True)
        if len(v) < 1:
            self._say("Invalid request")
        elif v[0] >= self._count:
            self._say("Invalid address")
        else:
            word, cycles = self._mem[v[0]]
            self._say(f"{word:x} {cycles:x}")

    def _too_many(self) -> None:
        self._say(f"Too many DO commands ({2 * self.max_instructions}). Please use resources more "
                  "efficiently or increase MAX_DO_CMDS and recompile.")

    def _add_room(self) -> bool:
        return 2 * self._count < 2 * self.max_instructions - 3

    def _enter_add(self) -> None:
        if self._add_room():
            self._mode = "add"
        else:
            self._too_many()

    def _add_line(self, line: bytes) -> None:
        if len(line) >= 3 and line.startswith(b"end"):
            self._mode = "cmd"
            self._say("ok")
            return
        v = _scan(line, "xx", False)
        if len(v) < 2:
            return                                   # the firmware re-reads until two numbers parse
        word, cycles = v
        if self._debug:
            self._say(f"Output: {word:x}")
            self._say(f"Number of Reps: {cycles}")
            if cycles == 0:
                self._say("Wait")
        if word & ~0xFFFF:
            self._mode = "cmd"
            self._say(f"Invalid output specification {word:x}")
        elif 0 < cycles < 5:
            self._mode = "cmd"
            self._say(f"Reps must be 0 or greater than 4, got {cycles:x}")
        else:
            self._mem[self._count] = (word, cycles)
            self._count += 1
            if not self._add_room():
                self._mode = "cmd"
                self._too_many()

    def _enter_adm(self, line: bytes) -> None:
        v = _scan(line, "xx", True)
        if len(v) < 2:
            self._say("Invalid request")
            return
        start, n = v
        if start + n > self.max_instructions:
            self._say(f"Invalid address and/or too many instructions ({start} + {n}).")
            return
        self._say("ready")
        self._count = start
        self._adm_left, self._adm_buf = 6 * n, bytearray()
        if n:
            self._mode = "adm"
        else:
            self._adm_data(b"")

    def _adm_data(self, data: bytes) -> None:
        self._adm_buf += data
        self._adm_left -= len(data)
        if self._adm_left > 0:
            return
        self._mode = "cmd"
        buf, errors, last = self._adm_buf, 0, 0
        for k in range(0, len(buf), 6):
            word = buf[k] | buf[k + 1] << 8
            cycles = int.from_bytes(buf[k + 2:k + 6], "little")
            if 0 < cycles < 5:
                errors, last, cycles = errors + 1, self._count + 1, 0
            self._mem[self._count] = (word, cycles)
            self._count += 1
        self._adm_buf = bytearray()
        if errors:
            self._say(f"Invalid number of reps in {errors} instructions, most recent error at "
                      f"instruction {last}. Setting reps to zero for these instructions.")
        else:
            self._say("ok")

    def _clk(self, line: bytes) -> None:
        v = _scan(line, "uu", True)
        if len(v) < 2:
            self._say("invalid clock request")
        elif v[0] > 2:
            self._say("invalid clock source request")
        elif v[1] > MAX_CLOCK_HZ[self.board]:
            self._say("invalid clock frequency request")
        elif v[0] == 0:
            if pll_achievable(v[1] // 1000):
                self._clock_hz, self._clk_external = float(v[1] // 1000 * 1000), False
                self._say("ok")
            else:
                self._say("Failure. Cannot exactly achieve that clock frequency")
        else:
            self._clock_hz, self._clk_external = float(v[1]), True
            self._say("ok")

    def _frq(self) -> None:
        sys_khz = int(self._clock_hz // 1000)
        lines = [("pll_sys", sys_khz), ("pll_usb", 48000), ("rosc", 6500), ("clk_sys", sys_khz),
                 ("clk_peri", sys_khz), ("clk_usb", 48000), ("clk_adc", 48000)]
        if self.board == "pico1":
            lines.append(("clk_rtc", 46))
        for name, khz in lines:
            self._say(f"{name} = {khz}kHz")
