"""PrawnDO driver, byte-exact: scripted exchanges on a real socket; an unused exchange fails the test."""
from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from drivers.errors import InstrumentDisconnected, InstrumentError, InstrumentTimeout, ProtocolError
from drivers.prawndo import CardBusyError, CardStatus, ClockSource, PrawnDO, ProgramMismatch, RunStatus
from drivers.pulse_program import Instruction, PulseProgramError

from .prawndo_script import ACCEPT, ScriptedPeer, Step, handshake, sync_step

PROG = [Instruction(0x1, 100), Instruction(0x0, 0), Instruction(0x0, 0)]
PROG_BYTES = struct.pack("<HI", 1, 100) + struct.pack("<HI", 0, 0) * 2


class Session:
    """A driver connected to a scripted peer; ``done()`` checks every step was used."""

    def __init__(self, steps: list[Step], *, timeout_s: float = 0.3, connect: bool = True,
                 prefix: list[Step] | None = None) -> None:
        self.peer = ScriptedPeer((handshake() if prefix is None else prefix) + steps).start()
        self.card = PrawnDO(self.peer.url, timeout_s=timeout_s)
        if connect:
            self.card.connect()

    def done(self) -> None:
        self.card.close()
        self.peer.assert_done()


@pytest.fixture
def session() -> Iterator[list[Session]]:
    made: list[Session] = []
    yield made
    for s in made:            # cleanup even when the test failed half-way
        s.card.close()
        s.peer.stop()


def open_session(made: list[Session], steps: list[Step], *, timeout_s: float = 0.3,
                 connect: bool = True, prefix: list[Step] | None = None) -> Session:
    s = Session(steps, timeout_s=timeout_s, connect=connect, prefix=prefix)
    made.append(s)
    return s


def test_constructor_does_no_io_and_unconnected_calls_raise() -> None:
    card = PrawnDO("socket://127.0.0.1:9", timeout_s=0.2)
    assert not card.connected
    with pytest.raises(InstrumentDisconnected, match="not connected"):
        card.status()


def test_unreachable_card_raises_disconnected() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]          # closed again: nothing listens there
    card = PrawnDO(f"socket://127.0.0.1:{port}", timeout_s=0.2)
    with pytest.raises(InstrumentDisconnected, match="cannot open"):
        card.connect()
    assert not card.connected


def test_connect_handshake_and_queries(session: list[Session]) -> None:
    s = open_session(session, [
        Step(b"sts\n", b"run-status:2 clock-status:1\r\n"),
        Step(b"ver\n", b"Version: 1.3.0\r\n"),
        Step(b"gto\n", b"8001\r\n"),
        Step(b"man 1f\n", b"ok\r\n"),
        Step(b"clk 0 125000000\n", b"ok\r\n"),
        Step(b"frq\n", b"pll_sys = 125000kHz\r\npll_usb = 48000kHz\r\nrosc = 6500kHz\r\n"
             b"clk_sys = 125000kHz\r\nclk_peri = 125000kHz\r\nclk_usb = 48000kHz\r\nclk_adc = 48000kHz\r\n"),
        Step(b"len\n", b"Number of command lines: 6\r\nNumber of instructions: 3\r\n"),
        Step(b"get 2\n", b"ffff 1f4\r\n"),
    ])
    assert s.card.max_instructions == 60_000
    assert s.card.status() == CardStatus(RunStatus.RUNNING, ClockSource.EXTERNAL)
    assert s.card.version() == "1.3.0"
    assert s.card.outputs() == 0x8001
    s.card.set_outputs(0x1F)
    s.card.set_clock(source=ClockSource.INTERNAL, frequency_hz=125_000_000)
    assert s.card.clock_hz == 125e6
    assert s.card.measure_clock_hz() == 125e6
    assert s.card.program_length() == 3
    assert s.card.read_instruction(2) == Instruction(0xFFFF, 500)
    s.done()


def test_connect_discards_banner_and_stale_replies(session: list[Session]) -> None:
    s = open_session(session, [], prefix=[
        sync_step(stale=b"Prawn Digital Output online\r\nok\r\nrun-sta"), *handshake()[1:]])
    assert s.card.connected and s.card.max_instructions == 60_000
    s.done()


def test_old_firmware_without_brd_assumes_small_memory(session: list[Session]) -> None:
    s = open_session(session, [], prefix=handshake()[:3] + [Step(b"brd\n", b"Invalid command: brd\n\r\n")])
    assert s.card.max_instructions == 30_000
    s.done()


def test_binary_upload_bytes(session: list[Session]) -> None:
    s = open_session(session, [Step(b"adm 0 3\n", b"ready\r\n"), Step(PROG_BYTES, b"ok\r\n")])
    assert s.card.program(PROG) == "binary"
    s.done()


def test_text_upload_bytes(session: list[Session]) -> None:
    s = open_session(session, [Step(b"cls\n", b"ok\r\n"), Step(b"add\n1 64\n0 0\n0 0\nend\n", b"ok\r\n")])
    assert s.card.program(PROG, upload="text") == "text"
    s.done()


def test_refused_adm_falls_back_to_text_and_stays_there(session: list[Session]) -> None:
    s = open_session(session, [
        Step(b"adm 0 3\n", b"Invalid command: adm 0 3\n\r\n"),
        Step(b"cls\n", b"ok\r\n"), Step(b"add\n1 64\n0 0\n0 0\nend\n", b"ok\r\n"),
        Step(b"cls\n", b"ok\r\n"), Step(b"add\n1 64\n0 0\n0 0\nend\n", b"ok\r\n"),
    ])
    assert s.card.program(PROG) == "text"
    assert s.card.program(PROG) == "text"
    s.done()


def test_explicit_binary_refused_raises_with_card_text(session: list[Session]) -> None:
    s = open_session(session, [Step(b"adm 0 3\n", b"Invalid command: adm 0 3\n\r\n")])
    with pytest.raises(InstrumentError) as err:
        s.card.program(PROG, upload="binary")
    assert err.value.code == "invalid-command" and err.value.text == "Invalid command: adm 0 3"
    s.done()


def test_memory_error_is_an_instrument_error(session: list[Session]) -> None:
    s = open_session(session, [Step(b"adm 0 3\n", b"Invalid address and/or too many instructions (0 + 3).\r\n")])
    with pytest.raises(InstrumentError, match="too many instructions") as err:
        s.card.program(PROG)
    assert err.value.code == "memory"
    s.done()


def test_invalid_reps_reply_after_binary_upload(session: list[Session]) -> None:
    text = (b"Invalid number of reps in 1 instructions, most recent error at instruction 1. "
            b"Setting reps to zero for these instructions.")
    s = open_session(session, [Step(b"adm 0 3\n", b"ready\r\n"), Step(PROG_BYTES, text + b"\r\n")])
    with pytest.raises(InstrumentError) as err:
        s.card.program(PROG)
    assert err.value.code == "invalid-cycles" and err.value.text == text.decode()
    s.done()


def test_text_upload_error_triggers_resync(session: list[Session]) -> None:
    s = open_session(session, [
        Step(b"cls\n", b"ok\r\n"),
        Step(b"add\n1 64\n0 0\n0 0\nend\n", b"Too many DO commands (60000). Please use resources more "
             b"efficiently or increase MAX_DO_CMDS and recompile.\r\nInvalid command: end\n\r\n"),
        sync_step(), Step(b"sts\n", b"run-status:0 clock-status:0\r\n"),
    ])
    with pytest.raises(InstrumentError, match="Too many DO commands"):
        s.card.program(PROG, upload="text")
    assert s.card.status().idle
    s.done()


def test_invalid_programs_are_refused_before_any_io(session: list[Session]) -> None:
    s = open_session(session, [])
    with pytest.raises(PulseProgramError, match="no stop"):
        s.card.program([(1, 100), (0, 100)])
    with pytest.raises(PulseProgramError, match="cycles 3"):
        s.card.program([(1, 3), (0, 0), (0, 0)])
    with pytest.raises(PulseProgramError, match="holds 60000"):
        s.card.program([(1, 5)] * 59_999 + [(0, 0), (0, 0)])
    with pytest.raises(ValueError, match="upload"):
        s.card.program(PROG, upload="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="word"):
        s.card.set_outputs(0x10000)
    s.done()


def test_verify_reads_back_with_len_and_get(session: list[Session]) -> None:
    s = open_session(session, [
        Step(b"len\n", b"Number of command lines: 6\r\nNumber of instructions: 3\r\n"),
        Step(b"get 0\nget 1\nget 2\n", b"1 64\r\n0 0\r\n0 0\r\n"),
        Step(b"len\n", b"Number of command lines: 6\r\nNumber of instructions: 3\r\n"),
        Step(b"get 0\nget 1\nget 2\n", b"1 63\r\n0 0\r\n0 0\r\n"),
        Step(b"len\n", b"Number of command lines: 4\r\nNumber of instructions: 2\r\n"),
    ])
    s.card.verify(PROG)
    with pytest.raises(ProgramMismatch, match="instruction 0: card holds .*99 cycles.*expected.*100 cycles"):
        s.card.verify(PROG)
    with pytest.raises(ProgramMismatch, match="holds 2 instructions, expected 3"):
        s.card.verify(PROG)
    s.done()


def test_run_control_commands(session: list[Session]) -> None:
    s = open_session(session, [
        Step(b"cls\n", b"ok\r\n"), Step(b"run\n", b"ok\r\n"), Step(b"abt\n", b"ok\r\n"),
        Step(b"swr\n", b"ok\r\n"), Step(b"abt\n", b"Can only abort when status is 1 or 2\r\n"),
    ])
    s.card.clear()
    s.card.arm()
    assert s.card.abort() is True
    s.card.start()
    assert s.card.abort() is False
    s.done()


@pytest.mark.parametrize("reply", [
    b"Cannot execute command cls\n during buffered execution.\r\n",      # firmware: raw echo
    b"Cannot execute command cls during buffered execution.\r\n",        # facts sheet form
])
def test_busy_reply_raises_card_busy_with_card_text(session: list[Session], reply: bytes) -> None:
    s = open_session(session, [Step(b"cls\n", reply), Step(b"sts\n", b"run-status:2 clock-status:0\r\n")])
    with pytest.raises(CardBusyError) as err:
        s.card.clear()
    assert err.value.text == "Cannot execute command cls during buffered execution."
    assert err.value.code == "busy" and err.value.command == "cls"
    assert s.card.status().run is RunStatus.RUNNING          # no resync needed: replies in step
    s.done()


def test_wait_until_stopped_polls_status(session: list[Session]) -> None:
    s = open_session(session, [Step(b"sts\n", b"run-status:2 clock-status:0\r\n"),
                               Step(b"sts\n", b"run-status:6 clock-status:0\r\n"),
                               Step(b"sts\n", b"run-status:0 clock-status:0\r\n"),
                               Step(b"sts\n", b"run-status:2 clock-status:0\r\n")])
    assert s.card.wait_until_stopped(1.0, poll_s=0.001).run is RunStatus.STOPPED
    with pytest.raises(InstrumentTimeout, match="still RUNNING"):
        s.card.wait_until_stopped(0.0)
    s.done()


@pytest.mark.parametrize("reply, error, message", [
    (b"", InstrumentTimeout, "no reply to 'sts' within 0.3 s"),
    (b"run-status:0 clo", InstrumentTimeout, "no reply to 'sts'"),            # partial line
    (b"run-status:0 clock-status:0\n", ProtocolError, "not terminated"),
    (b"\xff\xferun-status:0 clock-status:0\r\n", ProtocolError, "garbage"),
    (b"run-status:9 clock-status:0\r\n", ProtocolError, "out of range"),
    (b"hello\r\n", ProtocolError, "unexpected reply to 'sts'"),
])
def test_bad_replies_raise_specific_errors_then_resync(session: list[Session], reply: bytes,
                                                       error: type[Exception], message: str) -> None:
    s = open_session(session, [Step(b"sts\n", reply), sync_step(stale=b"ck-status:0\r\n"),
                               Step(b"sts\n", b"run-status:0 clock-status:0\r\n")])
    with pytest.raises(error, match=message):
        s.card.status()
    assert s.card.status().run is RunStatus.STOPPED
    s.done()


def test_late_reply_after_timeout_is_discarded(session: list[Session]) -> None:
    s = open_session(session, [Step(b"ver\n", b"Version: 1.3.0\r\n", delay_s=0.6),
                               sync_step(), Step(b"brd\n", b"board: pico2\r\n")], timeout_s=0.4)
    with pytest.raises(InstrumentTimeout):
        s.card.version()
    assert s.card.board() == "pico2"        # the late "Version" line is not taken as the reply
    s.done()


def test_dropped_connection_raises_and_reconnect_restores(session: list[Session]) -> None:
    s = open_session(session, [Step(b"sts\n", b"", close=True), ACCEPT, *handshake(),
                               Step(b"sts\n", b"run-status:5 clock-status:0\r\n")])
    with pytest.raises(InstrumentDisconnected, match="connection lost during 'sts'"):
        s.card.status()
    assert not s.card.connected
    with pytest.raises(InstrumentDisconnected, match="not connected"):
        s.card.status()
    s.card.reconnect()
    assert s.card.status().run is RunStatus.ABORTED
    s.done()


def test_context_manager_connects_and_closes(session: list[Session]) -> None:
    s = open_session(session, [Step(b"brd\n", b"board: pico1\r\n")], connect=False)
    with PrawnDO(s.peer.url, timeout_s=0.3) as card:
        assert card.board() == "pico1"
    assert not card.connected
    s.done()
