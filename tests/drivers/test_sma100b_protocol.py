"""SMA100B driver, byte-exact: scripted SCPI exchanges on a real socket; an unused exchange fails."""
from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from drivers.errors import InstrumentDisconnected, InstrumentError, InstrumentTimeout, ProtocolError
from drivers.sma100b import SMA100B

from .scpi_script import ACCEPT, IDN, NO_ERROR, Exchange, ScriptedPeer, handshake, setting


class Session:
    """A driver connected to a scripted peer; ``done()`` closes it and checks the whole script ran."""

    def __init__(self, script: list[Exchange], *, timeout_s: float, connect: bool) -> None:
        self.peer = ScriptedPeer((handshake() if connect else []) + script).start()
        self.mw = SMA100B(self.peer.address, timeout_s=timeout_s)
        if connect:
            self.mw.connect()

    def done(self) -> None:
        self.mw.close()
        self.peer.assert_done()


@pytest.fixture
def sessions() -> Iterator[list[Session]]:
    made: list[Session] = []
    yield made
    for s in made:            # cleanup even when the test failed half-way
        s.mw.close()
        s.peer.stop()


@pytest.fixture
def session(sessions: list[Session]):
    def open_session(script: list[Exchange], *, timeout_s: float = 0.3, connect: bool = True) -> Session:
        s = Session(script, timeout_s=timeout_s, connect=connect)
        sessions.append(s)
        return s
    return open_session


def test_connect_identifies_then_empties_the_error_queue(session) -> None:
    s = session([])
    assert s.mw.identity == IDN.decode()
    assert s.mw.connected
    s.done()
    assert not s.mw.connected


def test_context_manager_connects_and_closes(session) -> None:
    s = session(handshake(), connect=False)
    with s.mw as mw:
        assert mw.identity.startswith("Rohde&Schwarz,SMA100B,")
    assert not s.mw.connected
    s.done()


def test_errors_queued_before_connect_are_drained_and_logged(session, caplog) -> None:
    script = [Exchange(b"*IDN?\n", IDN + b"\n"),
              Exchange(b"SYST:ERR?\n", b'-113,"Undefined header;FOO"\n'),
              Exchange(b"SYST:ERR?\n", NO_ERROR)]
    s = session(script, connect=False)
    with caplog.at_level(logging.WARNING, logger="drivers.scpi"):
        s.mw.connect()
    assert "Undefined header;FOO" in caplog.text
    s.done()


@pytest.mark.parametrize("name, value, wire", [
    ("frequency_hz", 6_834_682_611.0, b"SOUR:FREQ 6834682611 Hz"),
    ("frequency_hz", 6_834_682_611.125, b"SOUR:FREQ 6834682611.125 Hz"),
    ("level_dbm", -10, b"SOUR:POW -10 dBm"),
    ("level_dbm", -12.5, b"SOUR:POW -12.5 dBm"),
    ("phase_deg", 90.0, b"SOUR:PHAS 90 DEG"),
    ("phase_deg", -0.25, b"SOUR:PHAS -0.25 DEG"),
    ("pulse_source", "EXT", b"SOUR:PULM:SOUR EXT"),
    ("pulse_source", "internal", b"SOUR:PULM:SOUR INT"),
    ("pulse_polarity", "INVerted", b"SOUR:PULM:POL INV"),
    ("pulse_modulation_enabled", True, b"SOUR:PULM:STAT ON"),
    ("output_enabled", False, b"OUTP OFF"),
    ("power_unit", "DBM", b"UNIT:POW DBM"),
])
def test_setting_writes_the_command_then_checks_the_error_queue(session, name, value, wire) -> None:
    s = session(setting(wire))
    setattr(s.mw, name, value)
    assert s.mw.last_set() == {name: getattr(SMA100B, name).check(value)}
    s.done()


@pytest.mark.parametrize("name, reply, value", [
    ("frequency_hz", b"6834682611", 6_834_682_611.0),
    ("frequency_hz", b"6.834682611E+09", 6_834_682_611.0),
    ("level_dbm", b"-10", -10.0),
    ("phase_deg", b"90.5", 90.5),
    ("pulse_source", b"EXT", "EXT"),
    ("pulse_polarity", b"NORM", "NORM"),
    ("pulse_modulation_enabled", b"1", True),
    ("output_enabled", b"0", False),
])
def test_reading_queries_and_parses_the_answer(session, name, reply, value) -> None:
    query = getattr(SMA100B, name).query_text.encode()
    s = session([Exchange(query + b"\n", reply + b"\n")])
    got = getattr(s.mw, name)
    assert got == value and type(got) is type(value)
    s.done()


def test_settings_reads_every_control_in_declaration_order(session) -> None:
    answers = [(b"UNIT:POW?", b"DBM"), (b"SOUR:FREQ?", b"6834682611"), (b"SOUR:POW?", b"-10"), (b"SOUR:PHAS?", b"90"),
               (b"SOUR:PULM:SOUR?", b"EXT"), (b"SOUR:PULM:POL?", b"NORM"), (b"SOUR:PULM:STAT?", b"1"),
               (b"OUTP?", b"1")]
    s = session([Exchange(q + b"\n", a + b"\n") for q, a in answers])
    assert s.mw.settings() == {"power_unit": "DBM", "frequency_hz": 6834682611.0, "level_dbm": -10.0, "phase_deg": 90.0,
                               "pulse_source": "EXT", "pulse_polarity": "NORM",
                               "pulse_modulation_enabled": True, "output_enabled": True}
    s.done()


def test_instrument_error_carries_its_code_and_text_and_is_not_remembered(session) -> None:
    s = session(setting(b"SOUR:FREQ 6000000000 Hz") + [
        Exchange(b"SOUR:FREQ 7000000000 Hz\n"),
        Exchange(b"SYST:ERR?\n", b'-222,"Data out of range;7000000000 Hz"\n'),
        Exchange(b"SYST:ERR?\n", NO_ERROR)])
    s.mw.frequency_hz = 6e9
    with pytest.raises(InstrumentError) as info:
        s.mw.frequency_hz = 7e9
    assert (info.value.code, info.value.text) == (-222, "Data out of range;7000000000 Hz")
    assert info.value.command == "SOUR:FREQ 7000000000 Hz"
    assert "Data out of range" in str(info.value)
    assert s.mw.last_set() == {"frequency_hz": 6e9}
    s.done()


def test_every_queued_error_is_read_and_the_first_raised(session, caplog) -> None:
    s = session([Exchange(b"SOUR:PHAS 10 DEG\n"),
                 Exchange(b"SYST:ERR?\n", b'-221,"Settings conflict"\n'),
                 Exchange(b"SYST:ERR?\n", b'-350,"Queue overflow"\n'),
                 Exchange(b"SYST:ERR?\n", NO_ERROR)])
    with caplog.at_level(logging.WARNING, logger="drivers.scpi"), pytest.raises(InstrumentError) as info:
        s.mw.phase_deg = 10
    assert (info.value.code, info.value.text) == (-221, "Settings conflict")
    assert "Queue overflow" in caplog.text
    s.done()


@pytest.mark.parametrize("name, value, match", [
    ("frequency_hz", 13e9, "outside the range"),
    ("frequency_hz", 7e3, "outside the range"),
    ("frequency_hz", float("nan"), "outside the range"),
    ("level_dbm", 18.01, "outside the range"),
    ("phase_deg", -721, "outside the range"),
    ("phase_deg", "90", "expected a number"),
    ("level_dbm", True, "expected a number"),
    ("pulse_source", "EXTERN", "expected one of INT, EXT"),
    ("pulse_polarity", 1, "expected one of NORM, INV"),
    ("output_enabled", "ON", "expected True or False"),
    ("pulse_modulation_enabled", 2, "expected True or False"),
])
def test_invalid_values_raise_before_any_io(session, name, value, match) -> None:
    s = session([])
    with pytest.raises(ValueError, match=f"{name}: .*{match}"):
        setattr(s.mw, name, value)
    assert s.mw.last_set() == {}
    s.done()                      # no bytes beyond the handshake were sent


@pytest.mark.parametrize("query, reply, match", [
    (b"SOUR:POW?", b"abc\n", "cannot parse"),
    (b"SOUR:POW?", b"\xff\xfe\x00\n", "non-ASCII"),
    (b"SOUR:POW?", b"nan\n", "cannot parse"),
    (b"SOUR:PULM:SOUR?", b"AUTO\n", "expected one of INT, EXT"),
    (b"OUTP?", b"2\n", "expected 0 or 1"),
])
def test_garbage_answers_raise_protocol_error(session, query, reply, match) -> None:
    names = {b"SOUR:POW?": "level_dbm", b"SOUR:PULM:SOUR?": "pulse_source", b"OUTP?": "output_enabled"}
    s = session([Exchange(query + b"\n", reply)])
    with pytest.raises(ProtocolError, match=match):
        getattr(s.mw, names[query])
    s.done()


def test_malformed_error_queue_answer_raises_protocol_error(session) -> None:
    s = session([Exchange(b"OUTP ON\n"), Exchange(b"SYST:ERR?\n", b"OK\n")])
    with pytest.raises(ProtocolError, match="SYST:ERR"):
        s.mw.output_enabled = True
    assert s.mw.last_set() == {"output_enabled": True}     # a link fault keeps the intent
    s.done()


def test_bad_identity_fails_connect_and_closes(session) -> None:
    s = session([Exchange(b"*IDN?\n", b"hello\n")], connect=False)
    with pytest.raises(ProtocolError, match="maker,model,serial,firmware"):
        s.mw.connect()
    assert not s.mw.connected
    s.done()


def test_a_reply_split_by_a_pause_within_the_timeout_is_one_answer(session) -> None:
    s = session([Exchange(b"SOUR:FREQ?\n", (b"68346", b"82611\n"), pause_s=0.3)], timeout_s=0.4)
    assert s.mw.frequency_hz == 6834682611.0
    s.done()


def test_a_reply_trickling_beyond_the_timeout_times_out_then_resyncs(session) -> None:
    s = session([Exchange(b"SOUR:FREQ?\n", (b"1", b"2", b"3\n"), pause_s=0.2),
                 Exchange(b"*IDN?\n", IDN + b"\n"),
                 Exchange(b"SOUR:FREQ?\n", b"5e9\n")], timeout_s=0.3)
    with pytest.raises(InstrumentTimeout, match="SOUR:FREQ"):
        s.mw.frequency_hz
    s.peer.wait_used(len(handshake()) + 1)
    assert s.mw.frequency_hz == 5e9
    s.done()


def test_timeout_then_late_reply_is_discarded_by_resync(session) -> None:
    s = session([Exchange(b"SOUR:PHAS?\n", b"90\n", delay_s=0.45),
                 Exchange(b"*IDN?\n", IDN + b"\n"),
                 Exchange(b"SOUR:PHAS?\n", b"45\n")], timeout_s=0.2)
    with pytest.raises(InstrumentTimeout, match="SOUR:PHAS.*0.2 s"):
        s.mw.phase_deg
    s.peer.wait_used(len(handshake()) + 1)    # the late "90" is now on its way
    assert s.mw.phase_deg == 45.0
    s.done()


def test_connection_closed_by_the_instrument_raises_disconnected(session) -> None:
    s = session([Exchange(b"SOUR:PHAS?\n", close=True)], timeout_s=0.2)
    with pytest.raises(InstrumentDisconnected, match="lost at 'SOUR:PHAS\\?'"):
        s.mw.phase_deg
    assert not s.mw.connected
    with pytest.raises(InstrumentDisconnected, match="not connected"):
        s.mw.phase_deg
    s.done()


def test_reconnect_restores_last_settings_in_declaration_order(session) -> None:
    s = session(setting(b"OUTP ON") + setting(b"SOUR:PHAS 90 DEG") + setting(b"SOUR:FREQ 6834682611 Hz")
                + [ACCEPT] + handshake()
                + setting(b"SOUR:FREQ 6834682611 Hz") + setting(b"SOUR:PHAS 90 DEG") + setting(b"OUTP ON"))
    s.mw.output_enabled = True
    s.mw.phase_deg = 90
    s.mw.frequency_hz = 6834682611.0
    s.mw.reconnect()
    s.done()


def test_wait_complete_sends_opc_query_and_wants_1(session) -> None:
    s = session([Exchange(b"*OPC?\n", b"1\n"), Exchange(b"*OPC?\n", b"0\n")])
    s.mw.wait_complete()
    with pytest.raises(ProtocolError, match="OPC"):
        s.mw.wait_complete()
    s.done()


def test_drain_errors_returns_every_entry_without_raising(session) -> None:
    s = session([Exchange(b"SYST:ERR?\n", b'-221,"Settings conflict"\n'),
                 Exchange(b"SYST:ERR?\n", b'-113,"Undefined header;X"\n'),
                 Exchange(b"SYST:ERR?\n", NO_ERROR), Exchange(b"SYST:ERR?\n", NO_ERROR)])
    assert s.mw.drain_errors() == [(-221, "Settings conflict"), (-113, "Undefined header;X")]
    assert s.mw.drain_errors() == []
    s.done()


def test_reset_sends_rst_and_forgets_remembered_settings(session) -> None:
    s = session(setting(b"SOUR:PHAS 90 DEG") + setting(b"*RST"))
    s.mw.phase_deg = 90
    s.mw.reset()
    assert s.mw.last_set() == {}
    s.done()


def test_constructor_does_no_io_and_unconnected_calls_raise() -> None:
    mw = SMA100B("TCPIP0::127.0.0.1::9::SOCKET", timeout_s=0.2)
    assert not mw.connected
    with pytest.raises(InstrumentDisconnected, match="not connected"):
        mw.phase_deg
    with pytest.raises(InstrumentDisconnected, match="not connected"):
        mw.identity


def test_refused_connection_raises_disconnected_at_connect() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]              # closed again: nothing listens there
    mw = SMA100B(f"TCPIP0::127.0.0.1::{port}::SOCKET", timeout_s=0.2)
    with pytest.raises(InstrumentDisconnected, match="cannot connect.*refused"):
        mw.connect()
    assert not mw.connected


def test_malformed_address_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid VISA address 'nonsense::x'"):
        SMA100B("nonsense::x").connect()
    with pytest.raises(ValueError, match="timeout_s"):
        SMA100B("TCPIP0::127.0.0.1::9::SOCKET", timeout_s=0)


def test_declarations_document_unit_and_range() -> None:
    assert SMA100B.frequency_hz.__doc__ == "Control the carrier frequency (Hz, 8 kHz to 12.75 GHz)."
    assert SMA100B.level_dbm.__doc__ == "Control the RF output level (dBm, -145 dBm to 18 dBm)."
    for control in SMA100B.controls():
        assert control.__doc__.startswith("Control ") and control.__doc__.endswith(").")
    assert [c.name for c in SMA100B.controls()] == [
        "power_unit", "frequency_hz", "level_dbm", "phase_deg", "pulse_source", "pulse_polarity",
        "pulse_modulation_enabled", "output_enabled"]


def test_the_scripted_peer_fails_on_unused_or_unexpected_exchanges(session) -> None:
    unused = session([Exchange(b"OUTP?\n", b"1\n")])
    unused.mw.close()
    with pytest.raises(AssertionError, match="connection closed, expected b'OUTP\\?"):
        unused.peer.assert_done()
    wrong = session(setting(b"OUTP ON"))
    with pytest.raises(InstrumentDisconnected):
        wrong.mw.output_enabled = False    # sends OUTP OFF: the peer hangs up
    wrong.mw.close()
    with pytest.raises(AssertionError, match="expected b'OUTP ON.*got b'OUTP OFF"):
        wrong.peer.assert_done()
