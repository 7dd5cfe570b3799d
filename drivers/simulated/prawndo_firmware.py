"""The PrawnDO firmware (labscript-suite prawn_do.c, v1.3.0) as a Python state machine.

It reads commands from a *console* (a byte stream: TCP socket or pty, see prawndo_emulator.py),
answers exactly as the firmware prints (``\\r\\n`` line ends; ``Invalid command: %s`` and ``Cannot
execute command %s during buffered execution.`` echo the raw command line, its ``\\n`` included,
unless ``echo_raw_command=False``), keeps its memory, mode (command / ``add`` / ``adm`` binary) and run
state across reconnections, and runs programs on a thread in simulated time.

Running a program produces its edge record: ``(time_s, word)`` for every change of the outputs, time
from the start (trigger for ``run``, the command for ``swr``), ``cycles / clock_hz`` per instruction;
a wait holds until a trigger. Listeners registered with ``on_sequence`` get the edges when the
program stops or is aborted, before the status leaves RUNNING. The run lasts ``time_scale`` x its
simulated duration in real time (0: instantly).

Not emulated: ``edt``, ``cur``, ``prg`` (answered as invalid commands), clock resuscitation.
One documented difference: when ``add`` fills the memory the firmware leaves add mode silently (its
``Too many DO commands`` check never fires); the emulator prints that message, as the facts sheet says.
"""
from __future__ import annotations

import collections
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

_log = logging.getLogger(__name__)

STOPPED, TRANSITION_TO_RUNNING, RUNNING, ABORT_REQUESTED, ABORTING, ABORTED, TRANSITION_TO_STOP = range(7)
MEMORY = {"pico1": 30_000, "pico2": 60_000}
MAX_CLOCK_HZ = {"pico1": 133_000_000, "pico2": 150_000_000}
_LINE_MAX = 255                      # SERIAL_BUFFER_SIZE - 1
_HWSTART = 2 << 16                   # the firmware's HWSTART flag, printed by `hwstart: %d`
_HEX = re.compile(rb"\s*([+-]?)(?:0[xX])?([0-9a-fA-F]+)")
_DEC = re.compile(rb"\s*\+?([0-9]+)")
_TOKEN = re.compile(rb"\s*\S+")

Edges = list[tuple[float, int]]


class Console(Protocol):
    """A byte stream to the host."""

    def read_line(self, max_bytes: int) -> bytes | None:
        """Bytes up to and including ``\\n`` (or ``max_bytes``); None once closed."""

    def read_some(self, max_bytes: int) -> bytes | None:
        """1..max_bytes bytes; None once closed."""

    def send(self, data: bytes) -> None:
        """Write ``data`` (errors of a closed stream are swallowed)."""


@dataclass(frozen=True)
class SequenceRecord:
    """One execution: its edges, how it started and ended (times in s of simulated time)."""

    edges: Edges
    hardware_start: bool
    aborted: bool
    clock_hz: float
    end_s: float


def _scan(data: bytes, kinds: str, skip_command: bool) -> list[int]:
    """C ``sscanf``: ``%*s`` (if ``skip_command``) then ``x`` (hex) / ``u`` (decimal) conversions."""
    pos, out = 0, []
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

    def __init__(self, *, board: str = "pico2", version: str = "1.3.0", binary_upload: bool = True,
                 echo_raw_command: bool = True, time_scale: float = 1.0) -> None:
        if board not in MEMORY:
            raise ValueError(f"board = {board!r}: expected one of {sorted(MEMORY)}")
        self.board, self.version = board, version
        self.binary_upload, self.echo_raw_command = binary_upload, echo_raw_command
        self.time_scale = time_scale
        self.max_instructions = MEMORY[board]
        self._mem: list[tuple[int, int]] = [(0, 0)] * self.max_instructions
        self._count = 0                            # instructions in the program (do_cmd_count / 2)
        self._mode = "cmd"                         # "cmd" | "add" | "adm"
        self._adm_left, self._adm_buf = 0, bytearray()
        self._status, self._clk_external, self._clock_hz = STOPPED, False, 100e6
        self._debug, self._outputs = False, 0
        self._cmd_lock = threading.RLock()         # one command at a time
        self._cv = threading.Condition()           # run state, triggers, abort
        self._triggers: collections.deque[tuple[float | None, float]] = collections.deque()
        self._runner: threading.Thread | None = None
        self._shutdown = False
        self._console: Console | None = None
        self._listeners: list[Callable[[Edges], None]] = []
        self.records: list[SequenceRecord] = []

    # --- state seen by the virtual lab ------------------------------------------------------
    @property
    def status(self) -> int:
        with self._cv:
            return self._status

    @property
    def outputs(self) -> int:
        return self._outputs

    @property
    def clock_hz(self) -> float:
        return self._clock_hz

    @property
    def instructions(self) -> list[tuple[int, int]]:
        """The program in memory as (word, cycles)."""
        with self._cmd_lock:
            return list(self._mem[:self._count])

    def on_sequence(self, callback: Callable[[Edges], None]) -> Callable[[], None]:
        """Call ``callback(edges)`` after every execution; returns a function that unregisters it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def trigger(self, at_s: float | None = None) -> bool:
        """Pulse the trigger input (pin 16); False (ignored) unless a program is running.

        ``at_s``: simulated time of the pulse from the sequence start (None: now). A pulse that
        arrives while the card is not waiting for one is ignored, as by the hardware.
        """
        with self._cv:
            if self._status not in (TRANSITION_TO_RUNNING, RUNNING):
                return False
            self._triggers.append((at_s, time.monotonic()))
            self._cv.notify_all()
            return True

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until STOPPED or ABORTED; False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: self._status in (STOPPED, ABORTED), timeout_s)

    def shutdown(self) -> None:
        """Stop the runner thread (no record is delivered for an interrupted run)."""
        with self._cv:
            self._shutdown = True
            self._cv.notify_all()
        if self._runner is not None:
            self._runner.join()

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
        status = self.status
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
            if status in (RUNNING, TRANSITION_TO_RUNNING):
                with self._cv:
                    self._status = ABORT_REQUESTED
                    self._cv.notify_all()
                self._say("ok")
            else:
                self._say("Can only abort when status is 1 or 2")
        elif status not in (STOPPED, ABORTED):
            self._say(b"Cannot execute command " + self._echo(line) + b" during buffered execution.")
        elif cmd == b"cls":
            self._count = 0
            self._say("ok")
        elif cmd in (b"run", b"swr"):
            self._start(hardware_start=cmd == b"run")
            self._say("ok")
        elif cmd == b"man":
            self._man(line)
        elif cmd == b"gto":
            self._say(f"{self._outputs:x}")
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
        self._outputs = v[0] & 0xFFFF
        self._say("ok")
        if self._debug:
            self._say(f"Output commanded: {v[0]:x}")

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

    # --- execution --------------------------------------------------------------------------
    def _start(self, *, hardware_start: bool) -> None:
        if self._runner is not None:
            self._runner.join()                  # finished: the status is already idle
        with self._cv:
            self._status = RUNNING
            self._triggers.clear()
        if self._debug:
            self._say(f"hwstart: {_HWSTART if hardware_start else 0}")
        program = list(self._mem[:self._count])
        self._runner = threading.Thread(target=self._execute, args=(program, hardware_start),
                                        name="prawndo-emulator-run", daemon=True)
        self._runner.start()

    def _aborting(self) -> bool:
        return self._status == ABORT_REQUESTED or self._shutdown

    def _sleep_until(self, real_t: float) -> bool:
        """Sleep until monotonic time ``real_t``; False if an abort came first."""
        with self._cv:
            while not self._aborting():
                left = real_t - time.monotonic()
                if left <= 0:
                    return True
                self._cv.wait(None if left == float("inf") else left)
            return False

    def _await_trigger(self, t_wait: float, real_wait: float, *, start: bool) -> float | None:
        """Simulated time of the trigger that ends a wait begun at ``t_wait`` (None: aborted)."""
        scale = self.time_scale
        with self._cv:
            while True:
                if self._aborting():
                    return None
                while self._triggers:
                    at_s, real_q = self._triggers.popleft()
                    if start:
                        return 0.0
                    if at_s is not None:
                        if at_s >= t_wait:
                            return float(at_s)
                    elif real_q >= real_wait or scale == 0:
                        return t_wait + (max(0.0, real_q - real_wait) / scale if scale > 0 else 0.0)
                self._cv.wait()

    def _execute(self, program: list[tuple[int, int]], hardware_start: bool) -> None:
        clock, scale = self._clock_hz, self.time_scale
        edges: Edges = []
        seg_start, seg_cycles, real_seg = 0.0, 0, time.monotonic()
        aborted, i = True, 0
        t = 0.0
        if not hardware_start or self._await_trigger(0.0, real_seg, start=True) is not None:
            real_seg = time.monotonic()
            while True:
                t = seg_start + seg_cycles / clock
                if i >= len(program):
                    self._sleep_until(float("inf"))          # out of instructions: hold until aborted
                    break
                word, cycles = program[i]
                if not self._sleep_until(real_seg + scale * seg_cycles / clock):
                    break
                if not edges or edges[-1][1] != word:
                    edges.append((t, word))
                self._outputs = word
                if cycles:
                    seg_cycles += cycles
                    i += 1
                    continue
                if i + 1 >= len(program):
                    self._sleep_until(float("inf"))          # a wait with nothing after it stalls
                    break
                if program[i + 1][1] == 0:
                    aborted = False                          # the stop
                    break
                real_wait = time.monotonic()
                t_trig = self._await_trigger(t, real_wait, start=False)
                if t_trig is None:
                    break
                seg_start, seg_cycles = t_trig, 0
                real_seg = real_wait + scale * (t_trig - t)
                i += 1
        if aborted and scale > 0 and edges:      # simulated time of the abort
            t = seg_start + (time.monotonic() - real_seg) / scale
        self._finish(SequenceRecord(edges, hardware_start, aborted, clock, t))

    def _finish(self, record: SequenceRecord) -> None:
        with self._cv:
            if self._shutdown:
                self._status = ABORTED
                return
            self._status = ABORTING if record.aborted else TRANSITION_TO_STOP
        if self._debug:
            self._say("Tight execution loop ended")
            self._say(f"Program ended at instr {6 if record.aborted else 16}")
        self.records.append(record)
        for callback in list(self._listeners):
            try:
                callback(list(record.edges))
            except Exception:                        # a listener's bug must not kill the card
                _log.exception("PrawnDO emulator: sequence listener %r failed", callback)
        with self._cv:
            self._status = ABORTED if record.aborted else STOPPED
            self._cv.notify_all()
        if self._debug:
            self._say("Aborted execution" if record.aborted else "Execution stopped")
            self._say("Core1 loop ended")
