"""The emulated SynthHD: byte-exact answers over a plain socket, the public ``windfreak`` package as
a client over a pty, steerlab's driver over socket://, and the state the virtual lab reads."""
from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from windfreak import SynthHD as WindfreakSynthHD

from drivers.errors import DriverError, InstrumentDisconnected
from drivers.simulated.synthhd_emulator import SynthHDEmulator
from drivers.synthhd import SynthHD


@pytest.fixture
def emulator() -> Iterator[SynthHDEmulator]:
    with SynthHDEmulator() as emu:
        yield emu


class Raw:
    def __init__(self, emu: SynthHDEmulator) -> None:
        self.sock = socket.create_connection(("127.0.0.1", emu.port), timeout=2.0)

    def ask(self, data: bytes, expect: bytes) -> None:
        self.sock.sendall(data)
        got = b""
        while len(got) < len(expect):
            got += self.sock.recv(4096)
        assert got == expect
        self.sock.settimeout(0.05)
        try:
            extra = self.sock.recv(4096)
        except TimeoutError:
            extra = b""
        self.sock.settimeout(2.0)
        assert extra == b"", f"unexpected extra answer {extra!r}"

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        time.sleep(0.05)                     # > idle_s: a trailing value is complete


@pytest.fixture
def raw(emulator: SynthHDEmulator) -> Iterator[Raw]:
    r = Raw(emulator)
    yield r
    r.sock.close()


def test_answers_byte_for_byte(raw: Raw) -> None:
    raw.ask(b"+", b"WFT SynthHD 1873\n")
    raw.ask(b"-", b"1873\n")
    raw.ask(b"v0v1v2", b"Firmware Version 3.26\nHardware Version 2.06\nHD\n")
    raw.ask(b"f?W?~?h?E?r?w?:?C?", b"1000.0000000\n-10.000\n0.000\n0\n0\n0\n0\n0\n0\n")
    raw.ask(b"p", b"0\n")                                         # PLL off: not locked
    raw.ask(b"E1p", b"1\n")


def test_commands_need_no_separator_and_a_value_ends_at_the_next_command(raw: Raw,
                                                                          emulator: SynthHDEmulator) -> None:
    raw.ask(b"f6834.68261100W-12.5~90h1E1r1w4f?W?", b"6834.6826110\n-12.500\n")
    raw.send(b"C1f2500")                                          # ends after idle_s
    raw.ask(b"f?C0f?", b"2500.0000000\n6834.6826110\n")
    a = emulator.firmware.state()["A"]
    assert (a["~"], a["h"], a["E"], a["r"]) == (90.0, 1, 1, 1)
    assert emulator.firmware.state()["device"]["w"] == 4


def test_values_out_of_range_are_not_taken(raw: Raw) -> None:
    raw.send(b"W30f5h2w12C7")
    raw.ask(b"W?f?h?w?C?", b"-10.000\n1000.0000000\n0\n0\n0\n")
    raw.ask(b"Q?x", b"")                                          # unknown: ignored, no answer


def test_the_windfreak_package_drives_it_over_a_pty(emulator: SynthHDEmulator) -> None:
    synth = WindfreakSynthHD(emulator.attach_pty())
    try:
        assert synth.model == "SynthHD v2" and synth.serial_number == 1873
        ch = synth[0]
        ch.frequency = 6.834682611e9
        ch.power = -10.0
        ch.phase = 90.0
        ch.enable = True
        synth.trigger_mode = "rf enable"
        assert (ch.frequency, ch.power, ch.phase, ch.enable, ch.lock_status) == (
            6.834682611e9, -10.0, 90.0, True, True)
        assert synth.trigger_mode == "rf enable"
        synth[1].frequency = 3e9
        assert synth[1].frequency == 3e9 and ch.frequency == 6.834682611e9
    finally:
        synth.close()
    snap = emulator.snapshot()
    assert (snap.frequency_hz, snap.level_dbm, snap.phase_deg, snap.output_enabled) == (
        6_834_682_611.0, -10.0, 90.0, True)
    assert (snap.rf_on(True), snap.rf_on(False)) == (True, False)   # the trigger input gates RF


def test_steerlab_driver_against_the_emulator(emulator: SynthHDEmulator) -> None:
    seen: list[tuple[str, object]] = []
    emulator.on_change = lambda name, value: seen.append((name, value))
    with SynthHD(emulator.url, timeout_s=0.5) as mw:
        assert mw.identity.startswith("Windfreak,WFT SynthHD 1873,1873,")
        for name, value in SynthHD.fixed_settings.items():
            setattr(mw, name, value)
        mw.frequency_hz, mw.level_dbm, mw.phase_deg, mw.output_enabled = 6_834_682_611.0, -10.0, 90.0, True
        mw.wait_complete()
        assert mw.settings() == {"pll_enabled": True, "pa_enabled": True, "trigger_function": 4,
                                 "pulse_invert": False, "frequency_hz": 6_834_682_611.0,
                                 "level_dbm": -10.0, "phase_deg": 90.0, "output_enabled": True}
        mw.pulse_invert = True
        assert emulator.snapshot().rf_on(False) is True             # inverted gate
    assert ("w", 4) in seen and ("h", 1) in seen


def test_one_host_at_a_time(emulator: SynthHDEmulator) -> None:
    with SynthHD(emulator.url, timeout_s=0.3) as mw:
        with socket.create_connection(("127.0.0.1", emulator.port), timeout=2.0) as other:
            assert other.recv(16) == b""                             # closed at once
        assert emulator.refused_connections == 1
        assert mw.level_dbm == -10.0
    with SynthHD(emulator.url, timeout_s=0.3) as again:              # released on close
        assert again.identity


def test_a_dropped_connection_then_reconnect_restores(emulator: SynthHDEmulator) -> None:
    with SynthHD(emulator.url, timeout_s=0.3) as mw:
        mw.level_dbm = -5.0
        emulator.drop_connections()
        with pytest.raises(InstrumentDisconnected, match="connection lost at 'W\\?'"):
            mw.level_dbm
        emulator.firmware.feed(b"W-20")                              # meanwhile reset by hand
        emulator.firmware.idle()
        deadline = time.monotonic() + 2.0
        while True:
            try:
                mw.reconnect()
                break
            except DriverError:                                     # until the old one is released
                assert time.monotonic() < deadline
                time.sleep(0.02)
        assert mw.level_dbm == -5.0
