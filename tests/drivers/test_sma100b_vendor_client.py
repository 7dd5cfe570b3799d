"""Rohde & Schwarz's own Python drivers (RsSmab on RsInstrument) against the SMA100B emulator.

Both connect with their default options (``*CLS``, ``*ESE 1``, ``*SRE 0``, ``*CLS``, ``*OPC?``,
``*STB?`` at connect; ``*STB?`` after every command) through pyvisa-py on a raw socket.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from RsInstrument import RsInstrument
from RsSmab.Internal.InstrumentErrors import StatusException
from RsSmab import RsSmab, enums

from drivers.simulated.sma100b_emulator import DEFAULT_IDENTITY, SMA100BEmulator

CONNECT = ["*CLS", "*ESE 1", "*SRE 0", "*CLS", "*OPC?", "*STB?"]


@pytest.fixture
def emulator() -> Iterator[SMA100BEmulator]:
    with SMA100BEmulator() as emu:
        yield emu


def resource(emu: SMA100BEmulator) -> str:
    return f"TCPIP::127.0.0.1::{emu.port}::SOCKET"


@pytest.fixture
def smab(emulator: SMA100BEmulator) -> Iterator[RsSmab]:
    driver = RsSmab(resource(emulator), True, False, "SelectVisa='@py'")
    yield driver
    driver.close()


@pytest.fixture
def rs(emulator: SMA100BEmulator) -> Iterator[RsInstrument]:
    driver = RsInstrument(resource(emulator), True, False, "SelectVisa='@py'")
    yield driver
    driver.close()


def test_rssmab_connects_with_default_options(smab: RsSmab, emulator: SMA100BEmulator) -> None:
    assert emulator.received()[:len(CONNECT)] == CONNECT
    assert smab.utilities.idn_string == DEFAULT_IDENTITY
    assert smab.utilities.query_str("*OPT?") == "SMAB-B112,SMAB-K22"
    assert sorted(smab.utilities.instrument_options) == ["B112", "K22"]   # prefix stripped by RsInstrument
    assert smab.utilities.query_opc() == 1
    assert smab.utilities.self_test()[0] == 0
    assert emulator.device.status() == {"esr": 0, "ese": 1, "sre": 0, "stb": 0}


def test_rssmab_sets_and_queries_every_setting_steerlab_uses(smab: RsSmab,
                                                            emulator: SMA100BEmulator) -> None:
    smab.source.frequency.fixed.set_value(6_834_682_611.0)
    smab.source.power.level.immediate.set_amplitude(-10.0)
    smab.source.phase.set_value(90.0)
    smab.source.pulm.set_source(enums.SourceInt.EXTernal)
    smab.source.pulm.set_polarity(enums.NormalInverted.INVerted)
    smab.source.pulm.set_state(True)
    smab.output.state.set_value(True)
    assert smab.source.frequency.fixed.get_value() == 6_834_682_611.0
    assert smab.source.power.level.immediate.get_amplitude() == -10.0
    assert smab.source.phase.get_value() == 90.0
    assert smab.source.pulm.get_source() is enums.SourceInt.EXTernal
    assert smab.source.pulm.get_polarity() is enums.NormalInverted.INVerted
    assert smab.source.pulm.get_state() is True
    assert smab.output.state.get_value() is True
    snap = emulator.snapshot()
    assert (snap.frequency_hz, snap.level_dbm, snap.phase_deg, snap.pulse_source,
            snap.pulse_polarity, snap.pulse_modulation_enabled, snap.output_enabled) == (
        6_834_682_611.0, -10.0, 90.0, "EXT", "INV", True, True)
    smab.utilities.reset()                                   # *RST: RF off again
    assert smab.output.state.get_value() is False
    assert smab.source.frequency.fixed.get_value() == 1e9


def test_rssmab_power_unit_and_levels_in_dbuv_and_volts(smab: RsSmab) -> None:
    smab.unit.set_power(enums.UnitPower.DBUV)
    assert smab.unit.get_power() is enums.UnitPower.DBUV
    smab.source.power.level.immediate.set_amplitude(96.99)    # dBuV
    assert smab.source.power.level.immediate.get_amplitude() == pytest.approx(96.99, abs=0.01)
    smab.unit.set_power(enums.UnitPower.DBM)
    assert smab.source.power.level.immediate.get_amplitude() == -10.0
    smab.unit.set_power(enums.UnitPower.V)
    assert smab.source.power.level.immediate.get_amplitude() == pytest.approx(0.07071, rel=1e-3)


def test_rssmab_raises_the_instruments_error_found_through_the_status_byte(smab: RsSmab,
                                                                           emulator: SMA100BEmulator) -> None:
    with pytest.raises(StatusException, match="-222"):
        smab.source.frequency.fixed.set_value(20e9)           # beyond the B112 option
    assert emulator.state()["frequency_hz"] == 1e9
    assert smab.utilities.query_all_errors() is None          # the driver emptied the queue
    emulator.push_error(-221, "Settings conflict")
    with pytest.raises(StatusException, match="Settings conflict"):
        smab.source.phase.set_value(10.0)


def test_rsinstrument_status_model(rs: RsInstrument, emulator: SMA100BEmulator) -> None:
    rs.instrument_status_checking = False
    assert rs.query_str("*ESE?") == "1" and rs.query_str("*SRE?") == "0"
    assert rs.query_str("*STB?") == "0"
    rs.write_str("FROB 1")                                    # command error: CME (32), EAV
    assert rs.query_str("*STB?") == "4"                       # EAV; ESE=1 does not enable CME
    rs.write_str("*ESE 33")
    assert rs.query_str("*STB?") == str(4 | 32)               # ESB; SRE=0: no MSS
    rs.write_str("*SRE 36")
    assert rs.query_str("*STB?") == str(4 | 32 | 64)
    assert rs.query_str("*ESR?") == "32" and rs.query_str("*ESR?") == "0"
    assert rs.query_str("SYST:ERR:COUN?") == "1"
    assert rs.query_str("SYST:ERR:CODE?") == "-113"
    assert rs.query_str("*STB?") == "0"
    rs.write_str("*OPC")
    assert rs.query_str("*ESR?") == "1"
    rs.write_str("*WAI")
    assert rs.query_str("*IDN?;*STB?") == f"{DEFAULT_IDENTITY};16"   # MAV: an answer is queued
    rs.write_str("*SRE 255")
    assert rs.query_str("*SRE?") == "191"                     # bit 6 cannot be enabled
    rs.write_str("*ESE 256")
    assert rs.query_str("SYST:ERR?") == '-222,"Data out of range;256"'
    rs.write_str("*CLS")
    assert rs.query_str("*OPC?") == "1"        # the write has no reply: wait until it was processed
    assert emulator.device.status()["esr"] == 0 and emulator.device.status()["ese"] == 33


def test_rsinstrument_error_queue_forms(rs: RsInstrument, emulator: SMA100BEmulator) -> None:
    rs.instrument_status_checking = False
    assert rs.query_str("SYST:ERR:ALL?") == '0,"No error"'
    assert rs.query_str("SYST:ERR:CODE:ALL?") == "0"
    rs.write_str("FROB;:FREQ 30GHz")
    rs.write_str("PHAS 999")
    assert rs.query_str(":SYSTem:ERRor:ALL?") == \
        '-113,"Undefined header;FROB",-222,"Data out of range;999"'
    rs.write_str("FROB")
    rs.write_str("PHAS 999")
    assert rs.query_str("SYST:ERR:CODE:ALL?") == "-113,-222"
    assert rs.query_str("SYST:ERR:CODE:NEXT?") == "0"
    assert rs.query_all_errors() is None


@pytest.mark.parametrize("query, answer", [
    ("FREQ? MAX", "12750000000"), ("FREQ? MIN", "8000"), ("FREQ? DEF", "1000000000"),
    ("SOUR:POW? MAXimum", "18"), ("POW? min", "-145"), ("PHAS? MAX", "720"),
])
def test_min_max_def_as_query_parameters(rs: RsInstrument, query: str, answer: str) -> None:
    assert rs.query_str(query) == answer


@pytest.mark.parametrize("command, level_dbm", [
    ("POW MAX", 18.0), ("POW MIN", -145.0), ("POW DEF", -30.0),
    ("POW 96.99 dBuV", -10.0), ("POW 0.2236068 V", 0.0), ("POW 70.71068 mV", -10.0),
    ("POW 1 uV", -106.99), ("POW -10 DBM", -10.0),
])
def test_level_suffixes_and_keywords(rs: RsInstrument, emulator: SMA100BEmulator, command: str,
                                     level_dbm: float) -> None:
    rs.write_str(command)
    assert emulator.state()["level_dbm"] == pytest.approx(level_dbm, abs=0.005)


@pytest.mark.parametrize("unit, typed, level_dbm, answer", [
    ("DBUV", "96.99", -10.0, "96.99"), ("V", "0.2236068", 0.0, "0.2236068"), ("DBM", "-10", -10.0, "-10"),
])
def test_unit_power_sets_the_unit_of_bare_numbers_and_answers(rs: RsInstrument, emulator: SMA100BEmulator,
                                                             unit: str, typed: str, level_dbm: float,
                                                             answer: str) -> None:
    rs.write_str(f"UNIT:POW {unit}")
    assert rs.query_str("UNIT:POW?") == unit
    rs.write_str(f"POW {typed}")
    assert emulator.state()["level_dbm"] == pytest.approx(level_dbm, abs=0.005)
    assert math.isclose(float(rs.query_str("POW?")), float(answer), rel_tol=1e-4)
    rs.write_str("*RST")
    assert rs.query_str("UNIT:POW?") == "DBM"


@pytest.mark.parametrize("command, code", [
    ("POW 0 V", -222), ("POW -1 V", -222), ("POW 10 V", -222), ("FREQ? 5", -224),
    ("OUTP? MAX", -108), ("*ESE", -109), ("*ESE ON", -104), ("*TST", -113), ("*OPT? 1", -108),
    ("UNIT:POW WATT", -224),
])
def test_bad_status_and_unit_commands_queue_their_error(rs: RsInstrument, command: str, code: int) -> None:
    rs.instrument_status_checking = False
    rs.write_str(command)                  # a refused query gives no answer, only an error
    assert rs.query_str("SYST:ERR:CODE?") == str(code)


def test_rsinstrument_opc_synchronised_writes_and_queries(rs: RsInstrument, emulator: SMA100BEmulator) -> None:
    rs.write_str_with_opc("SOUR:FREQ 2 GHz")
    assert rs.query_str_with_opc("SOUR:FREQ?") == "2000000000"
    rs.opc_query_after_write = True
    rs.write_str("SOUR:POW -7")
    assert emulator.state()["level_dbm"] == -7.0
    assert rs.query_float("SOUR:POW?") == -7.0
    rs.check_status()                                          # *STB?: nothing queued
