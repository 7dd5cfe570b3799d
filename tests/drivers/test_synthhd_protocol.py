"""SynthHD driver, byte-exact: scripted exchanges on a real socket (socket://); an unused step or a
byte beyond the script fails (tests/drivers/prawndo_script.py's peer, which is protocol-neutral)."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from drivers.errors import InstrumentDisconnected, InstrumentError, InstrumentTimeout, ProtocolError
from drivers.synthhd import SynthHD

from .prawndo_script import ACCEPT, ScriptedPeer, Step

IDENT = [Step(b"C0+", b"WFT SynthHD 1873\n"), Step(b"C0-", b"1873\n"),
         Step(b"C0v0", b"Firmware Version 3.26\n"), Step(b"C0v1", b"Hardware Version 2.06\n")]
IDENTITY = "Windfreak,WFT SynthHD 1873,1873,Firmware Version 3.26 / Hardware Version 2.06"


@pytest.fixture
def peers() -> Iterator[list[ScriptedPeer]]:
    made: list[ScriptedPeer] = []
    yield made
    for p in made:
        p.stop()


def session(peers: list[ScriptedPeer], steps: list[Step], *, connect: bool = True,
            timeout_s: float = 0.3, channel: int = 0) -> tuple[ScriptedPeer, SynthHD]:
    ident = [Step(s.expect.replace(b"C0", f"C{channel}".encode()), s.reply) for s in IDENT]  # type: ignore[union-attr]
    peer = ScriptedPeer((ident if connect else []) + steps).start()
    peers.append(peer)
    mw = SynthHD(peer.url, timeout_s=timeout_s, channel=channel)
    if connect:
        mw.connect()
    return peer, mw


def done(peer: ScriptedPeer, mw: SynthHD) -> None:
    mw.close()
    peer.assert_done()


def test_connect_identifies(peers) -> None:
    peer, mw = session(peers, [])
    assert mw.identity == IDENTITY and mw.connected
    done(peer, mw)


def test_channel_b_prefixes_every_command(peers) -> None:
    peer, mw = session(peers, [Step(b"C1W?", b"-3.000\n")], channel=1)
    assert mw.level_dbm == -3.0
    done(peer, mw)


def test_a_non_synthhd_answer_fails_connect(peers) -> None:
    peer, mw = session(peers, [Step(b"C0+", b"SMA100B\n"), Step(b"C0-", b"1\n"), Step(b"C0v0", b"x\n"),
                               Step(b"C0v1", b"y\n")], connect=False)
    with pytest.raises(ProtocolError, match="does not name a SynthHD"):
        mw.connect()
    assert not mw.connected
    done(peer, mw)


@pytest.mark.parametrize("name, value, write, query, answer", [
    ("frequency_hz", 6_834_682_611.0, b"C0f6834.68261100", b"C0f?", b"6834.6826110\n"),
    ("level_dbm", -10.0, b"C0W-10.000", b"C0W?", b"-10.000\n"),
    ("level_dbm", 20, b"C0W20.000", b"C0W?", b"20.000\n"),
    ("phase_deg", 90.0, b"C0~90.000", b"C0~?", b"90.000\n"),
    ("output_enabled", True, b"C0h1", b"C0h?", b"1\n"),
    ("pll_enabled", False, b"C0E0", b"C0E?", b"0\n"),
    ("pa_enabled", True, b"C0r1", b"C0r?", b"1\n"),
    ("trigger_function", 4, b"C0w4", b"C0w?", b"4\n"),
    ("pulse_invert", False, b"C0:0", b"C0:?", b"0\n"),
])
def test_a_setting_is_written_then_read_back(peers, name, value, write, query, answer) -> None:
    peer, mw = session(peers, [Step(write), Step(query, answer)])
    setattr(mw, name, value)
    assert mw.last_set() == {name: value}
    done(peer, mw)


def test_a_value_the_instrument_did_not_take_raises_with_both_values(peers) -> None:
    peer, mw = session(peers, [Step(b"C0W15.000"), Step(b"C0W?", b"-10.000\n")])
    with pytest.raises(InstrumentError) as info:
        mw.level_dbm = 15.0
    assert (info.value.code, info.value.text) == ("refused", "level_dbm: sent 15.000, reads -10.0")
    done(peer, mw)


def test_the_read_back_tolerance_is_the_resolution(peers) -> None:
    peer, mw = session(peers, [Step(b"C0f6834.68261105"), Step(b"C0f?", b"6834.6826111\n")])
    mw.frequency_hz = 6_834_682_611.05              # read 6834682611.1: within 0.1 Hz
    done(peer, mw)


def test_settings_reads_every_setting_in_order(peers) -> None:
    answers = [(b"E", b"1"), (b"r", b"1"), (b"w", b"4"), (b":", b"0"), (b"f", b"6834.6826110"),
               (b"W", b"-10.000"), (b"~", b"0.000"), (b"h", b"1")]
    peer, mw = session(peers, [Step(b"C0" + c + b"?", a + b"\n") for c, a in answers])
    assert mw.settings() == {"pll_enabled": True, "pa_enabled": True, "trigger_function": 4,
                             "pulse_invert": False, "frequency_hz": 6_834_682_611.0, "level_dbm": -10.0,
                             "phase_deg": 0.0, "output_enabled": True}
    done(peer, mw)


def test_wait_complete_polls_the_pll_lock(peers) -> None:
    peer, mw = session(peers, [Step(b"C0p", b"0\n"), Step(b"C0p", b"1\n")])
    mw.wait_complete()
    assert mw.drain_errors() == []                   # no error queue: nothing sent
    done(peer, mw)


@pytest.mark.parametrize("name, value, match", [
    ("frequency_hz", 9e6, "outside the range 1e\\+07 to 1.5e\\+10 Hz"),
    ("level_dbm", 20.5, "outside the range -70 to 20 dBm"),
    ("phase_deg", -90.0, "outside the range 0 to 360 deg"),
    ("output_enabled", 1, "expected True or False"),
    ("trigger_function", 10, "expected an integer 0..9"),
])
def test_bad_values_raise_before_any_io(peers, name, value, match) -> None:
    peer, mw = session(peers, [])
    with pytest.raises(ValueError, match=f"{name}: .*{match}" if name != "trigger_function" else match):
        setattr(mw, name, value)
    with pytest.raises(ValueError, match="unknown SynthHD setting 'power'"):
        mw.set("power", 1.0)
    done(peer, mw)


def test_garbage_and_a_late_answer_are_flushed_before_the_next_exchange(peers) -> None:
    peer, mw = session(peers, [Step(b"C0W?", b"\xff\xfe\n"), Step(b"C0W?", b"-10.000\n", delay_s=0.4),
                               Step(b"C0W?", b"-11.000\n")], timeout_s=0.2)
    with pytest.raises(ProtocolError, match="garbage"):
        mw.level_dbm
    with pytest.raises(InstrumentTimeout, match="no reply to 'W\\?' within 0.2 s"):
        mw.level_dbm
    time.sleep(0.3)                                  # the late "-10.000" is waiting now
    assert mw.level_dbm == -11.0                     # flushed, not taken for this answer
    done(peer, mw)


def test_reconnect_reapplies_the_last_settings(peers) -> None:
    steps = [Step(b"C0h1"), Step(b"C0h?", b"1\n"), Step(b"C0W-10.000"), Step(b"C0W?", b"-10.000\n"),
             ACCEPT] + IDENT + [Step(b"C0W-10.000"), Step(b"C0W?", b"-10.000\n"),
                                Step(b"C0h1"), Step(b"C0h?", b"1\n")]
    peer, mw = session(peers, steps)
    mw.output_enabled = True
    mw.level_dbm = -10.0
    mw.reconnect()                                   # level before output: the table's order
    done(peer, mw)


def test_a_closed_connection_is_disconnected(peers) -> None:
    peer, mw = session(peers, [Step(b"C0W?", close=True)])
    with pytest.raises(InstrumentDisconnected, match="connection lost at 'W\\?'"):
        mw.level_dbm
    assert not mw.connected
    done(peer, mw)


def test_constructor_does_no_io() -> None:
    mw = SynthHD("socket://127.0.0.1:9", timeout_s=0.2)
    assert not mw.connected
    with pytest.raises(InstrumentDisconnected, match="not connected"):
        mw.level_dbm
    with pytest.raises(ValueError, match="channel must be 0"):
        SynthHD("socket://127.0.0.1:9", channel=2)
