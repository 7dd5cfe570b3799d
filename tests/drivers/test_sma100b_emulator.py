"""The real SMA100B driver over pyvisa-py against the emulated instrument on 127.0.0.1."""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from drivers.errors import InstrumentDisconnected, InstrumentError, InstrumentTimeout, ProtocolError
from drivers.simulated.sma100b_emulator import DEFAULT_IDENTITY, SMA100BEmulator
from drivers.sma100b import SMA100B

TIMEOUT_S = 0.3
DEFAULTS = {"power_unit": "DBM",
            "frequency_hz": 1e9, "level_dbm": -30.0, "phase_deg": 0.0, "pulse_source": "INT",
            "pulse_polarity": "NORM", "pulse_modulation_enabled": False, "output_enabled": False}
RABI = {"power_unit": "DBM",
        "frequency_hz": 6_834_682_611.0, "level_dbm": -10.0, "phase_deg": 90.0, "pulse_source": "EXT",
        "pulse_polarity": "INV", "pulse_modulation_enabled": True, "output_enabled": True}


@pytest.fixture
def emulator() -> Iterator[SMA100BEmulator]:
    with SMA100BEmulator() as emu:
        yield emu


@pytest.fixture
def mw(emulator: SMA100BEmulator) -> Iterator[SMA100B]:
    driver = SMA100B(emulator.address, timeout_s=TIMEOUT_S)
    driver.connect()
    yield driver
    driver.close()


def apply(mw: SMA100B, values: dict[str, object]) -> None:
    for name, value in values.items():
        setattr(mw, name, value)


def test_identify(mw: SMA100B, emulator: SMA100BEmulator) -> None:
    assert mw.identity == DEFAULT_IDENTITY
    assert emulator.received()[:2] == ["*IDN?", "SYST:ERR?"]
    assert emulator.connection_count == 1


def test_every_setting_reads_back_and_is_what_the_lab_sees(mw: SMA100B, emulator: SMA100BEmulator) -> None:
    seen: list[tuple[str, object]] = []
    emulator.on_change = lambda name, value: seen.append((name, value))
    apply(mw, RABI)
    assert mw.settings() == RABI
    assert emulator.state() == RABI
    assert seen == [(k, v) for k, v in RABI.items() if k != "power_unit"]   # DBM already
    apply(mw, {"pulse_source": "INTernal", "pulse_polarity": "normal", "phase_deg": -720.0,
               "level_dbm": 18.0, "frequency_hz": 8e3})
    assert (mw.pulse_source, mw.pulse_polarity, mw.phase_deg, mw.level_dbm, mw.frequency_hz) == (
        "INT", "NORM", -720.0, 18.0, 8e3)


def test_the_instrument_rounds_to_its_resolution(mw: SMA100B, emulator: SMA100BEmulator) -> None:
    mw.phase_deg = 45.123
    mw.frequency_hz = 6_834_682_611.12345
    assert mw.phase_deg == 45.12
    assert mw.frequency_hz == 6_834_682_611.123
    assert emulator.state()["phase_deg"] == 45.12


@pytest.mark.parametrize("command, name, value", [
    ("SOUR:FREQ 6.834682611GHz", "frequency_hz", 6_834_682_611.0),
    (":SOURce1:FREQuency:CW 2 MHz", "frequency_hz", 2e6),
    ("freq:fixed 10 kHz", "frequency_hz", 1e4),
    ("FREQ 3e9 hz", "frequency_hz", 3e9),
    ("SOUR:POW:LEV:IMM:AMPL -12.5 dBm", "level_dbm", -12.5),
    ("power -20DBM", "level_dbm", -20.0),
    ("PHAS 1.5 RAD", "phase_deg", round(math.degrees(1.5), 2)),
    ("source:phase 90 deg", "phase_deg", 90.0),
    ("SOURce:PULM:SOURce EXTernal", "pulse_source", "EXT"),
    ("pulm:pol inverted", "pulse_polarity", "INV"),
    ("PULM:STAT 1", "pulse_modulation_enabled", True),
    ("OUTPut1:STATe ON", "output_enabled", True),
    ("FREQ MAX", "frequency_hz", 12.75e9),
])
def test_long_short_forms_optional_nodes_suffixes_units(mw: SMA100B, command: str, name: str,
                                                        value: object) -> None:
    mw.write(command)
    assert getattr(mw, name) == value


def test_query_answers_without_header_in_short_form(mw: SMA100B) -> None:
    mw.write("FREQ 6.834682611 GHz;:POW -10;:PULM:SOUR EXTernal;:OUTP ON")
    assert mw.query("FREQ?;POW?;PULM:SOUR?;:OUTP?") == "6834682611;-10;EXT;1"
    assert mw.query("*OPC?") == "1"
    assert mw.query("*idn?") == DEFAULT_IDENTITY


def test_chains_follow_the_header_path(mw: SMA100B) -> None:
    mw.write("SOUR:FREQ 3GHz;POW -12;PHAS 30")          # POW and PHAS continue under SOUR:
    assert (mw.frequency_hz, mw.level_dbm, mw.phase_deg) == (3e9, -12.0, 30.0)
    mw.write("SOUR:PULM:SOUR EXT;POL INV;STAT ON")       # ... and under SOUR:PULM:
    assert (mw.pulse_source, mw.pulse_polarity, mw.pulse_modulation_enabled) == ("EXT", "INV", True)
    with pytest.raises(InstrumentError) as info:
        mw.write("SOUR:PULM:STAT OFF;OUTP ON")           # OUTP is not under SOUR:PULM:
    assert info.value.code == -113
    assert (mw.pulse_modulation_enabled, mw.output_enabled) == (False, False)
    mw.write("SOUR:PULM:STAT ON;:OUTP ON")               # a leading colon goes back to the root
    assert (mw.pulse_modulation_enabled, mw.output_enabled) == (True, True)


@pytest.mark.parametrize("command, code, text", [
    ("FROB 1", -113, "Undefined header;FROB"),
    ("SOUR:FREQ:BOGUS 1", -113, "Undefined header"),
    ("FREQ", -109, "Missing parameter"),
    ("FREQ 1,2", -108, "Parameter not allowed"),
    ("POW ON", -104, "Data type error"),
    ("FREQ 1 dBm", -131, "Invalid suffix"),
    ("PULM:SOUR AUTO", -224, "Illegal parameter value"),
    ("OUTP2 ON", -114, "Header suffix out of range"),
    ("FREQ 20GHz", -222, "Data out of range;20GHz"),
    ("PHAS 721", -222, "Data out of range"),
    ("*RST?", -113, "Undefined header"),
])
def test_bad_commands_put_their_standard_error_in_the_queue(mw: SMA100B, emulator: SMA100BEmulator,
                                                            command: str, code: int, text: str) -> None:
    before = emulator.state()
    with pytest.raises(InstrumentError) as info:
        mw.write(command)
    assert info.value.code == code and info.value.text.startswith(text)
    assert info.value.command == command
    assert emulator.state() == before
    mw.write("*CLS")                                     # the queue was emptied by the driver


def test_a_command_error_discards_the_rest_of_the_chain_an_execution_error_does_not(mw: SMA100B) -> None:
    with pytest.raises(InstrumentError, match="-113"):
        mw.write("FROB 1;:PHAS 10")
    assert mw.phase_deg == 0.0
    with pytest.raises(InstrumentError, match="-222"):
        mw.write("PHAS 999;:PHAS 20")
    assert mw.phase_deg == 20.0


def test_out_of_range_for_this_instrument_raises_with_its_text_and_keeps_the_setting() -> None:
    # a 6 GHz unit (frequency option B106): the driver's own range allows 7 GHz, the instrument does not
    with SMA100BEmulator(max_frequency_hz=6e9, max_level_dbm=10.0) as emu, \
            SMA100B(emu.address, timeout_s=TIMEOUT_S) as mw:
        mw.frequency_hz = 5e9
        mw.level_dbm = -5.0
        with pytest.raises(InstrumentError) as info:
            mw.frequency_hz = 7e9
        assert (info.value.code, info.value.text) == (-222, "Data out of range;7000000000 Hz")
        with pytest.raises(InstrumentError, match="Data out of range"):
            mw.level_dbm = 12.0
        assert (mw.frequency_hz, mw.level_dbm) == (5e9, -5.0)
        assert emu.state()["frequency_hz"] == 5e9
        assert mw.last_set() == {"frequency_hz": 5e9, "level_dbm": -5.0}


def test_out_of_the_driver_range_sends_nothing(mw: SMA100B, emulator: SMA100BEmulator) -> None:
    sent = len(emulator.received())
    with pytest.raises(ValueError, match="frequency_hz: 13000000000.0 Hz is outside"):
        mw.frequency_hz = 13e9
    assert len(emulator.received()) == sent


def test_reset_restores_the_rst_defaults(mw: SMA100B, emulator: SMA100BEmulator) -> None:
    apply(mw, RABI)
    mw.reset()
    assert mw.settings() == DEFAULTS
    assert emulator.state() == DEFAULTS
    assert mw.last_set() == {}


def test_cls_empties_the_queue_and_overflow_keeps_the_oldest(mw: SMA100B, emulator: SMA100BEmulator) -> None:
    for k in range(12):                                  # queue size 10
        emulator.push_error(-300 - k, f"error {k}")
    assert mw.query("SYST:ERR:COUN?") == "10"
    answers = [mw.query("SYST:ERR?") for _ in range(11)]
    assert answers[:9] == [f'{-300 - k},"error {k}"' for k in range(9)]
    assert answers[9:] == ['-350,"Queue overflow"', '0,"No error"']
    emulator.push_error(-221, "Settings conflict")
    mw.write("*CLS")
    assert mw.query("SYST:ERR:NEXT?") == '0,"No error"'


def test_two_clients_share_the_instrument(emulator: SMA100BEmulator, mw: SMA100B) -> None:
    with SMA100B(emulator.address, timeout_s=TIMEOUT_S) as other:
        other.phase_deg = 33.0
        assert mw.phase_deg == 33.0
        assert emulator.connection_count == 2


def test_state_is_readable_while_a_driver_writes(mw: SMA100B, emulator: SMA100BEmulator) -> None:
    stop = threading.Event()
    seen: list[object] = []

    def read_state() -> None:
        while not stop.is_set():
            seen.append(emulator.snapshot().phase_deg)

    reader = threading.Thread(target=read_state, name="state-reader")
    reader.start()
    try:
        for phase in (90.0, 180.0, 270.0):
            mw.phase_deg = phase
        deadline = time.monotonic() + 2.0
        while 270.0 not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        reader.join()
    assert set(seen) <= {0.0, 90.0, 180.0, 270.0} and 270.0 in seen


# --- faults: each one raises its own error, then reconnect() restores the last settings -----------

def _drop_now(emu: SMA100BEmulator, mw: SMA100B) -> type[Exception]:
    emu.drop_connections()
    return InstrumentDisconnected


def _drop_at_next_command(emu: SMA100BEmulator, mw: SMA100B) -> type[Exception]:
    emu.drop_at_next_command()
    return InstrumentDisconnected


def _slow(emu: SMA100BEmulator, mw: SMA100B) -> type[Exception]:
    emu.reply_delay_s = 2 * TIMEOUT_S
    return InstrumentTimeout


def _garbage(emu: SMA100BEmulator, mw: SMA100B) -> type[Exception]:
    emu.garbage_replies = True
    return ProtocolError


def _error_reply(emu: SMA100BEmulator, mw: SMA100B) -> type[Exception]:
    emu.push_error(-221, "Settings conflict")
    return InstrumentError


def _clear_faults(emu: SMA100BEmulator) -> None:
    emu.reply_delay_s = 0.0
    emu.garbage_replies = False
    emu.drop_at_next_command(False)
    emu.refuse_connections = False


@pytest.mark.parametrize("inject", [_drop_now, _drop_at_next_command, _slow, _garbage, _error_reply],
                         ids=["dropped", "dropped-at-command", "slow", "garbage", "error-reply"])
def test_fault_then_reconnect_restores_the_last_settings(emulator: SMA100BEmulator, mw: SMA100B,
                                                         inject: Callable[..., type[Exception]]) -> None:
    apply(mw, RABI)
    expected = inject(emulator, mw)
    with pytest.raises(expected):
        mw.phase_deg = 180.0
    _clear_faults(emulator)
    emulator.device.reset()             # meanwhile the instrument was power-cycled
    mw.reconnect()
    restored = mw.last_set()
    assert emulator.state() == restored == mw.settings()
    assert {k: v for k, v in restored.items() if k != "phase_deg"} == \
        {k: v for k, v in RABI.items() if k != "phase_deg"}


def test_unreachable_at_start_then_reachable(emulator: SMA100BEmulator) -> None:
    emulator.refuse_connections = True
    mw = SMA100B(emulator.address, timeout_s=TIMEOUT_S)
    with pytest.raises(InstrumentDisconnected, match="cannot connect.*refused"):
        mw.connect()
    assert not mw.connected
    emulator.refuse_connections = False
    try:
        mw.connect()
        assert mw.identity == DEFAULT_IDENTITY
    finally:
        mw.close()


def test_dropped_and_unreachable_then_back(emulator: SMA100BEmulator, mw: SMA100B) -> None:
    apply(mw, {"phase_deg": 90.0, "output_enabled": True})
    emulator.refuse_connections = True
    emulator.drop_connections()
    t0 = time.monotonic()
    with pytest.raises(InstrumentDisconnected, match="lost at 'SOUR:POW\\?'"):
        mw.level_dbm
    assert time.monotonic() - t0 < TIMEOUT_S + 0.5
    with pytest.raises(InstrumentDisconnected, match="refused"):
        mw.reconnect()
    with pytest.raises(InstrumentDisconnected, match="not connected"):
        mw.level_dbm
    emulator.refuse_connections = False
    mw.reconnect()
    assert (mw.phase_deg, mw.output_enabled) == (90.0, True)


def test_slow_reply_then_in_session_recovery_without_reconnect(emulator: SMA100BEmulator,
                                                              mw: SMA100B) -> None:
    mw.phase_deg = 90.0
    emulator.reply_delay_s = 2 * TIMEOUT_S
    with pytest.raises(InstrumentTimeout, match="no reply to 'SOUR:PHAS\\?' within 0.3 s"):
        mw.phase_deg
    emulator.reply_delay_s = 0.0
    time.sleep(2 * TIMEOUT_S)                # the late "90" is now waiting in the socket
    mw.write("SOUR:PHAS 45")
    assert mw.phase_deg == 45.0              # not the stale 90: the driver resynchronised
    assert emulator.connections_accepted == 1


def test_garbage_then_in_session_recovery(emulator: SMA100BEmulator, mw: SMA100B) -> None:
    emulator.garbage_replies = True
    with pytest.raises(ProtocolError, match="non-ASCII answer to 'SOUR:FREQ\\?'"):
        mw.frequency_hz
    with pytest.raises(ProtocolError, match="non-ASCII answer to 'SYST:ERR\\?'"):
        mw.frequency_hz = 5e9
    emulator.garbage_replies = False
    assert mw.frequency_hz == 5e9            # the setting itself went through
    assert mw.last_set() == {"frequency_hz": 5e9}   # the intent is kept for reconnect()


def test_error_reply_carries_the_instruments_text(emulator: SMA100BEmulator, mw: SMA100B) -> None:
    emulator.push_error(-221, "Settings conflict;pulse source busy")
    with pytest.raises(InstrumentError) as info:
        mw.pulse_source = "EXT"
    assert (info.value.code, info.value.text) == (-221, "Settings conflict;pulse source busy")
    assert "SOUR:PULM:SOUR EXT" in str(info.value)


def test_stop_closes_connections_and_joins_threads() -> None:
    emu = SMA100BEmulator().start()
    mw = SMA100B(emu.address, timeout_s=TIMEOUT_S)
    mw.connect()
    emu.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("sma100b-")]
    with pytest.raises(InstrumentDisconnected):
        mw.output_enabled
    mw.close()


@pytest.mark.hardware
def test_real_instrument_identifies_and_reads_back(request: pytest.FixtureRequest) -> None:
    """Read-only: identifies and reads every setting of a real source (``--device-address``)."""
    address = request.config.getoption("--device-address")
    if "::" not in address:
        pytest.skip(f"{address} is not a VISA resource string")
    with SMA100B(address, timeout_s=2.0) as mw:
        assert mw.identity.count(",") == 3
        values = mw.settings()
        assert 8e3 <= values["frequency_hz"] <= 72e9
        assert -145.0 <= values["level_dbm"] <= 40.0
        assert values["pulse_source"] in ("INT", "EXT") and values["pulse_polarity"] in ("NORM", "INV")
        assert isinstance(values["output_enabled"], bool)
        mw.check_errors("read-back")


def test_snapshot_and_rf_gate_as_the_virtual_lab_reads_them(mw: SMA100B, emulator: SMA100BEmulator) -> None:
    assert emulator.snapshot().rf_on(True) is False            # *RST: output off
    mw.output_enabled = True
    assert emulator.snapshot().rf_on(False) is True            # CW
    apply(mw, {"pulse_source": "EXT", "pulse_modulation_enabled": True, "pulse_polarity": "NORM"})
    snap = emulator.snapshot()
    assert (snap.rf_on(True), snap.rf_on(False)) == (True, False)
    mw.pulse_polarity = "INV"
    assert emulator.snapshot().rf_on(False) is True
    mw.pulse_source = "INT"
    with pytest.raises(ValueError, match="only the external gate"):
        emulator.snapshot().rf_on(True)
    mw.phase_deg = 90.0
    assert emulator.snapshot().phase_deg == 90.0


def test_malformed_command_tables_are_rejected_with_the_culprit() -> None:
    from drivers.simulated.scpi_device import ScpiDevice, ScpiSetting
    from drivers.simulated.scpi_parser import Boolean, HeaderPattern

    with pytest.raises(ValueError, match="unclosed '\\['"):
        HeaderPattern.compile("[:SOURce<hw>:FREQuency")
    with pytest.raises(ValueError, match="bad mnemonic '9FREQ'"):
        HeaderPattern.compile(":9FREQ")
    table = [ScpiSetting(":OUTPut", "output_enabled", Boolean(False)),
             ScpiSetting(":OUTPut:STATe", "output_enabled", Boolean(False))]
    with pytest.raises(ValueError, match="duplicate setting names"):
        ScpiDevice(table, identity="x,y,z,1")
