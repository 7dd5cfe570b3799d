"""The PrawnDO emulator: firmware replies byte for byte, and the real driver against it over socket:// and a pty."""
from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from drivers.errors import InstrumentDisconnected, InstrumentError, InstrumentTimeout, ProtocolError
from drivers.prawndo import CardBusyError, PrawnDO, RunStatus
from drivers.pulse_program import (STOP, CompiledProgram, Instruction, compile_program, edges_to_pulses,
                                   instructions_to_edges)
from drivers.simulated.prawndo_emulator import BUSY_LINE, PrawnDOEmulator

CHANNELS = {"mw_gate": 0, "probe": 1, "camera": 2}
SHOT = {"mw_gate": [(100e-6, 120e-6)], "probe": [(2.2e-3, 50e-6), (3.7e-3, 50e-6)],
        "camera": [(2.18e-3, 100e-6), (3.68e-3, 100e-6)]}


@pytest.fixture
def emulator() -> Iterator[PrawnDOEmulator]:
    emu = PrawnDOEmulator(time_scale=0.0)
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def card(emulator: PrawnDOEmulator) -> Iterator[PrawnDO]:
    drv = PrawnDO(emulator.url, timeout_s=0.3)
    drv.connect()
    yield drv
    drv.close()


def shot() -> CompiledProgram:
    return compile_program(SHOT, CHANNELS, max_instructions=60_000)


class Raw:
    """A plain socket to the emulator, for byte-exact firmware replies."""

    def __init__(self, emu: PrawnDOEmulator) -> None:
        self.sock = socket.create_connection(("127.0.0.1", emu.port), timeout=2.0)
        self.buf = b""

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self.sock.recv(4096)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def ask(self, data: bytes, expect: bytes) -> None:
        self.sock.sendall(data)
        assert self.read(len(expect)) == expect
        self.sock.settimeout(0.02)
        try:
            self.buf += self.sock.recv(4096)
        except TimeoutError:
            pass
        self.sock.settimeout(2.0)
        assert self.buf == b"", f"unexpected extra reply {self.buf!r}"


@pytest.fixture
def raw(emulator: PrawnDOEmulator) -> Iterator[Raw]:
    r = Raw(emulator)
    yield r
    r.sock.close()


# --- the firmware, byte for byte ---------------------------------------------------------------
def test_firmware_replies_byte_for_byte(raw: Raw, emulator: PrawnDOEmulator) -> None:
    raw.ask(b"ver\n", b"Version: 1.3.1\r\n")
    raw.ask(b"brd\n", b"board: pico2\r\n")
    raw.ask(b"sts\n", b"run-status:0 clock-status:0\r\n")
    raw.ask(b"xyz\n", b"Invalid command: xyz\n\r\n")
    raw.ask(b"x\n", b"Invalid command: x\n\r\n")
    raw.ask(b"abt\n", b"Can only abort when status is 1 or 2\r\n")
    raw.ask(b"get 0\n", b"Invalid address\r\n")
    raw.ask(b"set 0 1 64\n", b"ok\r\n")
    raw.ask(b"set 1 0 0\n", b"ok\r\n")
    raw.ask(b"set 2 0 0\n", b"ok\r\n")
    raw.ask(b"set 3 0 4\n", b"Reps must be 0 or greater than 4, got 4\r\n")
    raw.ask(b"set 3 10000 5\n", b"Invalid output specification 10000\r\n")
    raw.ask(b"set ea60 0 5\n", b"Invalid instruction address ea60\r\n")
    raw.ask(b"set 1\n", b"Invalid instruction\r\n")
    raw.ask(b"get 0\n", b"1 64\r\n")
    raw.ask(b"len\n", b"Number of command lines: 6\r\nNumber of instructions: 3\r\n")
    raw.ask(b"dmp\n", b"do_cmd: 0001\r\n\treps: 64\r\ndo_cmd: 0000\r\n\tWait\r\ndo_cmd: 0000\r\n\tWait\r\n")
    raw.ask(b"man 8001\n", b"ok\r\n")
    raw.ask(b"gto\n", b"8001\r\n")
    raw.ask(b"man\n", b"invalid request\r\n")
    raw.ask(b"clk 0 125000000\n", b"ok\r\n")
    raw.ask(b"clk 0 100000001\n", b"ok\r\n")                     # kHz resolution, like the SDK
    raw.ask(b"clk 0 99999000\n", b"Failure. Cannot exactly achieve that clock frequency\r\n")
    raw.ask(b"clk 3 1000\n", b"invalid clock source request\r\n")
    raw.ask(b"clk 0 150000001\n", b"invalid clock frequency request\r\n")
    raw.ask(b"clk 0\n", b"invalid clock request\r\n")
    raw.ask(b"clk 1 10000000\n", b"ok\r\n")
    raw.ask(b"sts\n", b"run-status:0 clock-status:1\r\n")
    raw.ask(b"deb\n", b"ok\r\n")
    raw.ask(b"ndb\n", b"ok\r\n")
    raw.ask(b"cls\n", b"ok\r\n")
    raw.ask(b"len\n", b"Number of command lines: 0\r\nNumber of instructions: 0\r\n")
    assert emulator.firmware.clock_hz == 10e6


def test_text_mode_add_and_its_errors(raw: Raw, emulator: PrawnDOEmulator) -> None:
    raw.sock.sendall(b"add\n1 64\n\nnot numbers\n0x2 5\n0 0\n0 0\n")
    raw.ask(b"end\n", b"ok\r\n")
    assert emulator.firmware.instructions == [(1, 100), (2, 5), (0, 0), (0, 0)]
    raw.sock.sendall(b"add\n")
    raw.ask(b"3 4\n", b"Reps must be 0 or greater than 4, got 4\r\n")
    raw.ask(b"end\n", b"Invalid command: end\n\r\n")              # add mode was left on the error
    raw.sock.sendall(b"add\n")
    raw.ask(b"10000 5\n", b"Invalid output specification 10000\r\n")
    assert len(emulator.firmware.instructions) == 4             # `add` appends


def test_binary_mode_adm_and_its_errors(raw: Raw, emulator: PrawnDOEmulator) -> None:
    raw.ask(b"adm 0 2\n", b"ready\r\n")
    raw.ask(struct.pack("<HI", 0xBEEF, 7) + struct.pack("<HI", 0, 0), b"ok\r\n")
    assert emulator.firmware.instructions == [(0xBEEF, 7), (0, 0)]
    raw.ask(b"adm 1 2\n", b"ready\r\n")
    raw.ask(struct.pack("<HI", 1, 3) + struct.pack("<HI", 2, 4),
            b"Invalid number of reps in 2 instructions, most recent error at instruction 3. "
            b"Setting reps to zero for these instructions.\r\n")
    assert emulator.firmware.instructions == [(0xBEEF, 7), (1, 0), (2, 0)]
    raw.ask(b"adm 0 ea60\n", b"ready\r\n")
    raw.ask(b"\0" * 6 * 60_000, b"ok\r\n")
    raw.ask(b"adm 1 ea60\n", b"Invalid address and/or too many instructions (1 + 60000).\r\n")
    raw.ask(b"adm 5\n", b"Invalid request\r\n")


def test_busy_replies_echo_the_raw_command(raw: Raw, emulator: PrawnDOEmulator) -> None:
    raw.ask(b"set 0 1 5\n", b"ok\r\n")                            # no stop: runs until aborted
    raw.ask(b"run\n", b"ok\r\n")
    raw.ask(b"sts\n", b"run-status:2 clock-status:0\r\n")
    raw.ask(b"cls\n", b"Cannot execute command cls\n during buffered execution.\r\n")
    raw.ask(b"len\r\n", b"Cannot execute command len\r\n during buffered execution.\r\n")
    raw.ask(b"brd\n", b"board: pico2\r\n")
    raw.ask(b"abt\n", b"ok\r\n")
    assert emulator.wait_idle(2.0)
    raw.ask(b"sts\n", b"run-status:5 clock-status:0\r\n")


# --- the driver against the emulator -----------------------------------------------------------
@pytest.mark.parametrize("upload", ["binary", "text"])
def test_program_verify_arm_trigger_gives_the_compiled_edges(
        emulator: PrawnDOEmulator, card: PrawnDO, upload: str) -> None:
    prog = shot()
    seen: list[list[tuple[float, int]]] = []
    emulator.on_sequence(seen.append)
    assert card.program(prog.instructions, upload=upload) == upload  # type: ignore[arg-type]
    card.verify(prog.instructions)
    card.arm()
    assert card.status().run is RunStatus.RUNNING
    time.sleep(0.05)
    assert seen == [] and card.status().run is RunStatus.RUNNING    # armed: waits for the trigger
    assert emulator.trigger()
    assert card.wait_until_stopped(2.0).run is RunStatus.STOPPED
    assert seen == [prog.edges()]
    pulses = edges_to_pulses(seen[0], CHANNELS)
    assert [round(s * 1e8) for s, _ in pulses["probe"]] == [220_000, 370_000]
    assert not emulator.records[-1].aborted and emulator.records[-1].hardware_start
    assert emulator.trigger() is False                                # stopped: trigger ignored


def test_software_start_runs_in_scaled_real_time(emulator: PrawnDOEmulator, card: PrawnDO) -> None:
    emulator.time_scale = 1.0
    prog = compile_program({"probe": [(0.05, 0.05)]}, CHANNELS)     # lasts 0.1 s
    card.program(prog.instructions)
    t0 = time.monotonic()
    card.start()
    assert card.status().run is RunStatus.RUNNING
    card.wait_until_stopped(2.0, poll_s=0.005)
    elapsed = time.monotonic() - t0
    assert 0.1 <= elapsed < 0.6
    assert emulator.records[-1].edges == prog.edges() and not emulator.records[-1].hardware_start


def test_waits_hold_until_the_next_trigger(emulator: PrawnDOEmulator, card: PrawnDO) -> None:
    prog = [Instruction(1, 100), Instruction(2, 0), Instruction(4, 50), *STOP]
    card.program(prog)
    card.start()
    time.sleep(0.05)
    assert card.status().run is RunStatus.RUNNING and emulator.outputs == 2
    assert emulator.trigger(at_s=0.5e-6) is True       # before the wait began: ignored, as by the pin
    assert emulator.trigger(at_s=1e-3)
    assert card.wait_until_stopped(2.0).run is RunStatus.STOPPED
    assert emulator.records[-1].edges == instructions_to_edges(prog, wait_durations_s=[1e-3 - 1e-6])


def test_abort_stops_a_running_program(emulator: PrawnDOEmulator, card: PrawnDO) -> None:
    emulator.time_scale = 1.0
    prog = compile_program({"probe": [(0.01, 10.0)]}, CHANNELS)
    card.program(prog.instructions)
    card.start()
    time.sleep(0.05)
    assert emulator.outputs == 2
    with pytest.raises(CardBusyError, match="Cannot execute command adm 0 4 during buffered execution"):
        card.program(prog.instructions)
    with pytest.raises(CardBusyError):
        card.clear()
    assert card.abort() is True
    assert card.wait_until_stopped(2.0).run is RunStatus.ABORTED
    rec = emulator.records[-1]
    assert rec.aborted and rec.edges == [(0.0, 0), (0.01, 2)] and 0.05 <= rec.end_s < 1.0
    assert card.abort() is False
    card.verify(prog.instructions)                      # abort keeps the program


@pytest.mark.parametrize("echo_raw_command", [True, False])
def test_firmware_without_adm_falls_back_to_text(echo_raw_command: bool) -> None:
    with PrawnDOEmulator(time_scale=0.0, binary_upload=False, echo_raw_command=echo_raw_command) as emu:
        with PrawnDO(emu.url, timeout_s=0.3) as card:
            prog = shot()
            with pytest.raises(InstrumentError, match="Invalid command: adm 0 c"):
                card.program(prog.instructions, upload="binary")
            assert card.program(prog.instructions) == "text"
            card.verify(prog.instructions)
            card.start()
            card.wait_until_stopped(2.0)
            assert emu.records[-1].edges == prog.edges()


def test_listener_errors_do_not_stop_the_card(emulator: PrawnDOEmulator, card: PrawnDO) -> None:
    def broken(edges: list[tuple[float, int]]) -> None:
        raise RuntimeError("listener bug")
    unregister = emulator.on_sequence(broken)
    card.program(shot().instructions)
    card.start()
    assert card.wait_until_stopped(2.0).run is RunStatus.STOPPED
    unregister()


def test_clock_change_changes_the_emitted_times(emulator: PrawnDOEmulator, card: PrawnDO) -> None:
    card.set_clock(source=0, frequency_hz=125_000_000)       # type: ignore[arg-type]
    assert card.measure_clock_hz() == 125e6
    prog = compile_program({"probe": [(1e-6, 1e-6)]}, CHANNELS)   # compiled for 100 MHz: wrong
    card.program(prog.instructions)
    card.start()
    card.wait_until_stopped(2.0)
    assert emulator.records[-1].edges == [(0.0, 0), (0.8e-6, 2), (1.6e-6, 0)]


# --- faults ------------------------------------------------------------------------------------
def test_unreachable_then_reachable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    card = PrawnDO(f"socket://127.0.0.1:{port}", timeout_s=0.3)
    with pytest.raises(InstrumentDisconnected):
        card.connect()
    with PrawnDOEmulator(port=port, time_scale=0.0):
        card.reconnect()
        assert card.version() == "1.3.1"
        card.close()


def test_emulator_restart_on_the_same_port(emulator: PrawnDOEmulator, card: PrawnDO) -> None:
    emulator.time_scale = 1.0
    card.program(compile_program({"probe": [(0.0, 5.0)]}, CHANNELS).instructions)
    card.start()
    port = emulator.port
    emulator.stop()                                    # interrupts the 5 s run, joins its thread
    with pytest.raises(InstrumentDisconnected):
        card.status()
    emulator.start()
    assert emulator.port == port
    card.reconnect()
    assert card.status().run is RunStatus.ABORTED
    emulator.time_scale = 0.0
    card.start()
    assert card.wait_until_stopped(2.0).run is RunStatus.STOPPED
    assert emulator.records[-1].edges == [(0.0, 2), (5.0, 0)]


def test_dropped_connection_mid_run(emulator: PrawnDOEmulator, card: PrawnDO) -> None:
    emulator.time_scale = 1.0
    prog = compile_program({"probe": [(0.01, 0.2)]}, CHANNELS)
    card.program(prog.instructions)
    card.start()
    emulator.drop_connections()
    with pytest.raises(InstrumentDisconnected, match="connection lost"):
        card.status()
    card.reconnect()
    assert card.wait_until_stopped(2.0).run is RunStatus.STOPPED   # the card ran on meanwhile
    card.verify(prog.instructions)
    assert emulator.records[-1].edges == prog.edges()


def test_drop_on_a_command(emulator: PrawnDOEmulator, card: PrawnDO) -> None:
    emulator.faults.drop_on = "len"
    with pytest.raises(InstrumentDisconnected):
        card.verify([(1, 5), *STOP])
    emulator.faults.drop_on = None
    card.reconnect()
    assert card.program_length() == 0


def test_slow_replies_beyond_the_timeout(emulator: PrawnDOEmulator, card: PrawnDO) -> None:
    emulator.faults.reply_delay_s = 0.45
    with pytest.raises(InstrumentTimeout, match="no reply to 'sts' within 0.3 s"):
        card.status()
    emulator.faults.reply_delay_s = 0.0
    assert card.status().idle                  # resynchronised: the late reply is discarded
    emulator.faults.reply_delay_s = 0.45
    with pytest.raises(InstrumentTimeout):
        card.board()
    emulator.faults.reply_delay_s = 0.0
    card.reconnect()
    assert card.board() == "pico2"


def test_garbage_on_the_line(emulator: PrawnDOEmulator, card: PrawnDO) -> None:
    emulator.faults.garbage = b"\x00\xff\x13garbage"
    with pytest.raises(ProtocolError, match="garbage in reply to 'ver'"):
        card.version()
    assert card.version() == "1.3.1"
    emulator.faults.garbage = b"noise\r\n"
    with pytest.raises(ProtocolError, match="unexpected reply to 'brd'") as err:
        card.board()
    assert err.value.reply == "noise"
    card.reconnect()
    assert card.board() == "pico2"


def test_wrong_replies(emulator: PrawnDOEmulator, card: PrawnDO) -> None:
    emulator.faults.wrong_replies["sts"] = "run-status:7 clock-status:0"
    with pytest.raises(ProtocolError, match="status out of range"):
        card.status()
    emulator.faults.wrong_replies["sts"] = "ok"
    with pytest.raises(ProtocolError, match="unexpected reply to 'sts'"):
        card.status()
    emulator.faults.wrong_replies.clear()
    card.reconnect()
    assert card.status().idle


def test_driver_works_on_a_serial_port_path(emulator: PrawnDOEmulator) -> None:
    path = emulator.attach_pty()
    assert path.startswith("/dev/")
    prog = shot()
    with PrawnDO(path, timeout_s=0.5) as card:
        assert card.board() == "pico2"
        assert card.program(prog.instructions) == "binary"
        card.verify(prog.instructions)
        card.start()
        card.wait_until_stopped(2.0)
    assert emulator.records[-1].edges == prog.edges()
    with PrawnDO(path, timeout_s=0.5) as card:                       # the port can be reopened
        card.verify(prog.instructions)


def test_concurrent_status_polls_share_one_driver(emulator: PrawnDOEmulator, card: PrawnDO) -> None:
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            for _ in range(30):
                card.status()
        except BaseException as exc:     # collected for the assertion below
            errors.append(exc)
    threads = [threading.Thread(target=poll) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
