"""The PrawnDO emulator as one firmware version (1.3.0 or 1.3.1, prawn_do.c at those tags), and
the card's single host: byte-exact replies over a plain socket, the real driver beside them."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import serial

from drivers.errors import InstrumentDisconnected
from drivers.lifecycle import open_serial
from drivers.prawndo import PrawnDO, RunStatus
from drivers.simulated.prawndo_emulator import BUSY_LINE, PrawnDOEmulator

from .test_prawndo_emulator import Raw, shot


@pytest.fixture(params=["1.3.0", "1.3.1"])
def versioned(request: pytest.FixtureRequest) -> Iterator[PrawnDOEmulator]:
    emu = PrawnDOEmulator(time_scale=0.0, version=request.param)
    emu.start()
    yield emu
    emu.stop()


def load(raw: Raw) -> None:
    """A 3-instruction program: word 1 for 10 cycles, word 0, stop."""
    raw.ask(b"set 0 1 a\n", b"ok\r\n")
    raw.ask(b"set 1 0 0\n", b"ok\r\n")
    raw.ask(b"set 2 0 0\n", b"ok\r\n")


def wait_status(raw: Raw, status: int, timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    want = f"run-status:{status} clock-status:0\r\n".encode()
    while True:
        raw.sock.sendall(b"sts\n")
        line = raw.read(len(want))
        if line == want:
            return
        assert time.monotonic() < deadline, f"status {line!r}, expected {want!r}"
        time.sleep(0.01)


def test_ver_states_the_emulated_version(versioned: PrawnDOEmulator) -> None:
    raw = Raw(versioned)
    raw.ask(b"ver\n", f"Version: {versioned.firmware.version}\r\n".encode())
    raw.sock.close()


def test_swr_waits_for_a_trigger_in_1_3_0_and_starts_at_once_in_1_3_1(versioned: PrawnDOEmulator) -> None:
    raw = Raw(versioned)
    load(raw)
    raw.ask(b"swr\n", b"ok\r\n")
    if versioned.firmware.version == "1.3.0":
        raw.ask(b"sts\n", b"run-status:2 clock-status:0\r\n")
        assert versioned.records == []                         # nothing emitted before the trigger
        assert versioned.trigger()
    assert versioned.wait_idle(2.0)
    assert [r.edges for r in versioned.records] == [[(0.0, 1), (1e-7, 0)]]
    raw.sock.close()


@pytest.mark.parametrize("command", [b"run", b"swr"])
def test_debug_output_prints_the_versions_hwstart_flag(versioned: PrawnDOEmulator, command: bytes) -> None:
    raw = Raw(versioned)
    load(raw)
    raw.ask(b"deb\n", b"ok\r\n")
    flags = {("1.3.0", b"run"): 3 << 16, ("1.3.0", b"swr"): 1 << 16,
             ("1.3.1", b"run"): 2 << 16, ("1.3.1", b"swr"): 0}
    expect = f"hwstart: {flags[versioned.firmware.version, command]}\r\n".encode()
    raw.sock.sendall(command + b"\n")
    assert raw.read(len(expect)) == expect               # then "ok" and, if it ran, the run's lines
    raw.sock.close()


def test_man_with_bit_16_starts_a_buffered_run_as_the_firmware_does(versioned: PrawnDOEmulator) -> None:
    raw = Raw(versioned)
    load(raw)
    raw.ask(b"man 10000\n", b"ok\r\n")                      # BUFFERED: not a manual update
    if versioned.firmware.version == "1.3.0":
        raw.ask(b"sts\n", b"run-status:2 clock-status:0\r\n")  # waits for a trigger
        raw.ask(b"cls\n", b"Cannot execute command cls\n during buffered execution.\r\n")
        assert versioned.trigger()
    assert versioned.wait_idle(2.0)
    assert [r.edges for r in versioned.records] == [[(0.0, 1), (1e-7, 0)]]
    raw.ask(b"man 30000\n", b"ok\r\n")                      # BUFFERED | HWSTART: waits in both
    raw.ask(b"sts\n", b"run-status:2 clock-status:0\r\n")
    raw.ask(b"abt\n", b"ok\r\n")
    assert versioned.wait_idle(2.0)
    raw.sock.close()


def test_man_without_bit_16_sets_the_low_16_bits(versioned: PrawnDOEmulator) -> None:
    raw = Raw(versioned)
    raw.ask(b"man 20001\n", b"ok\r\n")
    raw.ask(b"gto\n", b"1\r\n")
    raw.ask(b"sts\n", b"run-status:0 clock-status:0\r\n")
    raw.ask(b"man fffe0001\n", b"ok\r\n")                   # bit 16 clear: still manual
    raw.ask(b"gto\n", b"1\r\n")
    assert versioned.records == []
    raw.sock.close()


def test_the_driver_refuses_words_beyond_16_bits_before_any_io(versioned: PrawnDOEmulator) -> None:
    with PrawnDO(versioned.url, timeout_s=0.3) as card:
        with pytest.raises(ValueError, match="0x10000|65536"):
            card.set_outputs(0x10000)
        assert card.status().run is RunStatus.STOPPED


def test_only_known_versions_are_emulated() -> None:
    with pytest.raises(ValueError, match="version = '1.2.0': the emulated firmware versions are 1.3.0, 1.3.1"):
        PrawnDOEmulator(version="1.2.0")


def test_the_driver_knows_that_1_3_0_cannot_software_start() -> None:
    with PrawnDOEmulator(time_scale=0.0, version="1.3.0") as emu, PrawnDO(emu.url, timeout_s=0.3) as card:
        assert card.software_start_supported is False
        card.program(shot().instructions)
        card.start()
        assert card.status().run is RunStatus.RUNNING            # waiting for a trigger
        assert card.abort()
    with PrawnDOEmulator(time_scale=0.0) as emu, PrawnDO(emu.url, timeout_s=0.3) as card:
        assert card.software_start_supported is True


# --- one host -----------------------------------------------------------------------------------

def _second_host(emu: PrawnDOEmulator) -> bytes:
    """What a second connection receives before the card closes it."""
    with socket.create_connection(("127.0.0.1", emu.port), timeout=2.0) as s:
        s.sendall(b"abt\n")
        got = b""
        while chunk := s.recv(4096):
            got += chunk
        return got


def test_a_second_connection_is_refused_and_the_holder_keeps_the_card() -> None:
    with PrawnDOEmulator(time_scale=0.0, handover_s=0.05) as emu, PrawnDO(emu.url, timeout_s=0.3) as card:
        card.program(shot().instructions)
        assert _second_host(emu) == BUSY_LINE                  # its `abt` was never executed
        assert emu.refused_connections == 1
        card.verify(shot().instructions)
        assert card.version() == "1.3.1"


def test_the_driver_names_a_held_card() -> None:
    with PrawnDOEmulator(time_scale=0.0, handover_s=0.05) as emu, PrawnDO(emu.url, timeout_s=0.3):
        other = PrawnDO(emu.url, timeout_s=0.3)
        with pytest.raises(InstrumentDisconnected, match="held by another host"):
            other.connect()
        assert not other.connected


def test_the_refusal_is_named_when_it_arrived_before_the_driver_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The card's refusal and its end of file are already waiting when the driver first reads
    (a slow host): they must not be dropped as stale input (CI failure of stop 24)."""
    import drivers.prawndo as prawndo

    def slow_open(address: str, write_timeout_s: float, instrument: str) -> serial.SerialBase:
        port = open_serial(address, write_timeout_s, instrument)
        time.sleep(0.2)
        return port

    with PrawnDOEmulator(time_scale=0.0, handover_s=0.05) as emu, PrawnDO(emu.url, timeout_s=0.3):
        monkeypatch.setattr(prawndo, "open_serial", slow_open)
        other = PrawnDO(emu.url, timeout_s=0.3)
        with pytest.raises(InstrumentDisconnected, match="held by another host"):
            other.connect()
        assert not other.connected


def test_the_refusal_is_named_when_it_arrived_while_the_port_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal arrives before pyserial's open has finished (its ``socket://`` open ends with
    ``reset_input_buffer``, which discarded it and left a bare "socket disconnected": the CI
    failure of stop 25). The connection is made to wait until the card's line is readable."""
    import select

    import serial.urlhandler.protocol_socket as protocol_socket

    real = socket.create_connection

    def connect_and_wait(*args: object, **kwargs: object) -> socket.socket:
        s = real(*args, **kwargs)        # type: ignore[arg-type]
        select.select([s], [], [], 2.0)
        return s

    with PrawnDOEmulator(time_scale=0.0, handover_s=0.05) as emu, PrawnDO(emu.url, timeout_s=0.3):
        monkeypatch.setattr(protocol_socket.socket, "create_connection", connect_and_wait)
        for _ in range(3):
            other = PrawnDO(emu.url, timeout_s=0.3)
            with pytest.raises(InstrumentDisconnected, match="held by another host"):
                other.connect()
            assert not other.connected


def test_eighty_connection_attempts_during_a_run_do_not_disturb_it() -> None:
    with PrawnDOEmulator(time_scale=1.0, handover_s=0.0) as emu, PrawnDO(emu.url, timeout_s=0.5) as card:
        card.program(shot().instructions)
        card.arm()
        stop = threading.Event()
        replies: list[bytes] = []

        def storm() -> None:
            while not stop.is_set() and len(replies) < 80:
                replies.append(_second_host(emu))

        t = threading.Thread(target=storm, name="connect-storm")
        t.start()
        t.join(20.0)
        stop.set()
        assert set(replies) == {BUSY_LINE} and len(replies) == 80
        assert card.status().run is RunStatus.RUNNING          # still armed, never aborted
        assert emu.trigger()
        assert card.wait_until_stopped(2.0).run is RunStatus.STOPPED
        assert len(emu.records) == 1 and not emu.records[0].aborted


def test_reconnect_gets_the_card_back_at_once() -> None:
    with PrawnDOEmulator(time_scale=0.0) as emu, PrawnDO(emu.url, timeout_s=0.3) as card:
        for _ in range(20):
            card.reconnect()                                   # close, then a new connection
            assert card.version() == "1.3.1"
        assert emu.refused_connections == 0
