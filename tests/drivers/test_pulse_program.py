"""Pulse programs: compile (physical -> PrawnDO instructions), decompile, and every compile error."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.pulse_program import (MAX_CYCLES, MEMORY_INSTRUCTIONS, MIN_CYCLES, STOP, ChannelMap,
                                   Instruction, PulseProgramError, compile_program, edges_to_pulses,
                                   instructions_to_edges, program_duration_s, validate_instructions)

CHANNELS = {"mw_gate": 0, "probe": 1, "camera": 2, "tof_marker": 15}


def test_imaging_shot_compiles_to_exact_instructions() -> None:
    prog = {"mw_gate": [(100e-6, 120e-6)],
            "probe": [(2.2e-3, 50e-6), (3.7e-3, 50e-6)],
            "camera": [(2.18e-3, 100e-6), (3.68e-3, 100e-6)]}
    c = compile_program(prog, CHANNELS)
    assert c.instructions == (
        (0, 10_000), (1, 12_000), (0, 196_000), (4, 2_000), (6, 5_000), (4, 3_000), (0, 140_000),
        (4, 2_000), (6, 5_000), (4, 3_000), (0, 0), (0, 0))
    assert c.duration_s == pytest.approx(3.78e-3, abs=1e-15)
    assert c.max_rounding_error_s < 1e-15
    assert c.edges()[:3] == [(0.0, 0), (1e-4, 1), (2.2e-4, 0)]


def test_edges_at_equal_cycles_merge_and_bit15_is_msb() -> None:
    c = compile_program({"probe": [(1e-6, 1e-6)], "tof_marker": [(1e-6, 2e-6)]}, CHANNELS)
    assert c.instructions == ((0, 100), (0x8002, 100), (0x8000, 100), *STOP)


def test_pulse_at_time_zero_has_no_idle_instruction() -> None:
    c = compile_program({"probe": [(0.0, 1e-6)]}, CHANNELS)
    assert c.instructions == ((2, 100), *STOP)
    assert c.edges() == [(0.0, 2), (1e-6, 0)]


def test_rounding_is_reported_in_seconds() -> None:
    c = compile_program({"probe": [(1.0034e-6, 1e-6)]}, CHANNELS)   # 100.34 and 200.34 cycles
    assert c.instructions == ((0, 100), (2, 100), *STOP)
    assert c.max_rounding_error_s == pytest.approx(0.34e-8, rel=1e-6)


def test_rounding_depends_on_the_clock() -> None:
    c = compile_program({"probe": [(1e-6, 1e-6)]}, CHANNELS, clock_hz=125e6)
    assert c.instructions == ((0, 125), (2, 125), *STOP)
    assert c.clock_hz == 125e6


def test_touching_pulses_merge_into_one() -> None:
    c = compile_program({"probe": [(2e-6, 1e-6), (1e-6, 1e-6)]}, CHANNELS)
    assert c.instructions == ((0, 100), (2, 200), *STOP)


def test_long_wait_is_split_into_valid_instructions() -> None:
    c = compile_program({"probe": [(100.0, 1e-6)]}, CHANNELS)
    idle = [i for i in c.instructions if i.word == 0 and i.cycles]
    assert sum(i.cycles for i in idle) == 10_000_000_000
    assert len(idle) == 3 and all(MIN_CYCLES <= i.cycles <= MAX_CYCLES for i in idle)
    assert c.edges() == [(0.0, 0), (100.0, 2), (100.000001, 0)]


def test_empty_program_is_just_the_stop() -> None:
    c = compile_program({}, CHANNELS)
    assert c.instructions == STOP and c.duration_s == 0.0 and c.edges() == [(0.0, 0)]


@pytest.mark.parametrize("prog, message", [
    ({"repump": [(0.0, 1e-6)]}, "unknown channel 'repump'"),
    ({"probe": [(-1e-6, 1e-6)]}, "start_s = -1e-06"),
    ({"probe": [(math.nan, 1e-6)]}, "start_s = nan"),
    ({"probe": [(1e-6, 0.0)]}, "duration_s = 0.0"),
    ({"probe": [(1e-6, -1e-6)]}, "duration_s = -1e-06"),
    ({"probe": [(1e-6, math.inf)]}, "duration_s = inf"),
    ({"probe": [(1e-6,)]}, "expected (start_s, duration_s)"),
    ({"probe": [(1e-6, 2e-6), (2e-6, 1e-6)]}, "pulses overlap"),
    ({"probe": [(1e-6, 4e-9)]}, "rounds to 0 cycles"),
    ({"probe": [(1e-6, 30e-9)]}, "would last 3 cycles"),
    ({"probe": [(1e-6, 1e-6)], "camera": [(1.02e-6, 1e-6)]}, "edges of ['probe'] and ['camera']"),
    ({"probe": [(2e-8, 1e-6)]}, "edges of ['start'] and ['probe']"),
])
def test_compile_errors_name_the_problem(prog: dict, message: str) -> None:
    with pytest.raises(PulseProgramError) as err:
        compile_program(prog, CHANNELS)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)


def test_program_longer_than_memory_is_rejected() -> None:
    pulses = [(k * 1e-6, 0.5e-6) for k in range(1, 15_000)]          # 29 998 + 2 instructions
    assert len(compile_program({"probe": pulses}, CHANNELS).instructions) == 30_000
    with pytest.raises(PulseProgramError, match="needs 30002 instructions.*holds 30000"):
        compile_program({"probe": pulses + [(15_000e-6, 0.5e-6)]}, CHANNELS)
    assert len(compile_program({"probe": pulses + [(15_000e-6, 0.5e-6)]}, CHANNELS,
                               max_instructions=MEMORY_INSTRUCTIONS["pico2"]).instructions) == 30_002


@pytest.mark.parametrize("mapping, message", [
    ({"a": 16}, "expected an output bit"),
    ({"a": -1}, "expected an output bit"),
    ({"a": True}, "expected an output bit"),
    ({"a": "3"}, "expected an output bit"),
    ({"a": 3, "b": 3}, "already assigned to 'a'"),
    ({"": 3}, "non-empty string"),
])
def test_channel_map_errors(mapping: dict, message: str) -> None:
    with pytest.raises(PulseProgramError, match=message):
        ChannelMap.from_config(mapping)


def test_bad_clock_is_rejected() -> None:
    with pytest.raises(PulseProgramError, match="clock_hz"):
        compile_program({}, CHANNELS, clock_hz=0.0)


@pytest.mark.parametrize("ins, message", [
    ([(0x10000, 5)], "word 65536"), ([(-1, 5)], "word -1"), ([(1, 4)], "cycles 4"),
    ([(1, 2**32)], "cycles 4294967296"), ([(1, 5.0)], "cycles 5.0"), ([(1,)], "expected (word, cycles)"),
])
def test_validate_instructions_errors(ins: list, message: str) -> None:
    with pytest.raises(PulseProgramError) as err:
        validate_instructions(ins)
    assert message in str(err.value)


def test_validate_instructions_checks_memory() -> None:
    assert validate_instructions([(1, 5), (0, 0), (0, 0)]) == [(1, 5), (0, 0), (0, 0)]
    with pytest.raises(PulseProgramError, match="holds 2"):
        validate_instructions([(1, 5), (0, 0), (0, 0)], max_instructions=2)


def test_waits_hold_until_the_trigger() -> None:
    ins = [Instruction(1, 100), Instruction(2, 0), Instruction(4, 50), Instruction(0, 0), Instruction(9, 0)]
    assert instructions_to_edges(ins) == [(0.0, 1), (1e-6, 2), (1e-6, 4), (1.5e-6, 0)]
    assert instructions_to_edges(ins, wait_durations_s=[1e-3]) == [
        (0.0, 1), (1e-6, 2), (1e-6 + 1e-3, 4), (1e-6 + 1e-3 + 0.5e-6, 0)]
    assert program_duration_s(ins) == pytest.approx(1.5e-6)
    with pytest.raises(PulseProgramError, match="wait_durations_s"):
        instructions_to_edges(ins, wait_durations_s=[-1.0])


def test_program_without_stop_decodes_to_its_last_instruction() -> None:
    assert instructions_to_edges([(1, 100), (3, 100)]) == [(0.0, 1), (1e-6, 3)]
    assert program_duration_s([(1, 100), (3, 100)]) == pytest.approx(2e-6)


def test_edges_to_pulses_reports_channels_still_high() -> None:
    edges = [(0.0, 0), (1e-6, 3), (2e-6, 1)]
    assert edges_to_pulses(edges, CHANNELS) == {
        "mw_gate": [(1e-6, math.inf)], "probe": [(1e-6, 1e-6)], "camera": [], "tof_marker": []}
    assert edges_to_pulses(edges, CHANNELS, end_s=5e-6)["mw_gate"] == [(1e-6, pytest.approx(4e-6))]


# --- round trips -------------------------------------------------------------------------------
_pulse_lists = st.lists(st.tuples(st.integers(0, 2_000), st.integers(1, 300)), max_size=6)


def _merged_cycles(pulses: list[tuple[int, int]]) -> list[tuple[int, int]] | None:
    """Sorted, touching-merged (start, end) cycle intervals; None if two pulses overlap."""
    out: list[tuple[int, int]] = []
    for s, d in sorted(pulses):
        if out and s < out[-1][1]:
            return None
        if out and s == out[-1][1]:
            out[-1] = (out[-1][0], s + d)
        else:
            out.append((s, s + d))
    return out


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"mw_gate": _pulse_lists, "probe": _pulse_lists, "camera": _pulse_lists}))
def test_compile_decompile_round_trip(cycle_prog: dict[str, list[tuple[int, int]]]) -> None:
    clock = 100e6
    merged = {n: _merged_cycles(p) for n, p in cycle_prog.items()}
    prog = {n: [(s / clock, d / clock) for s, d in p] for n, p in cycle_prog.items()}
    edge_cycles = sorted({c for m in merged.values() if m for iv in m for c in iv} | {0})
    try:
        c = compile_program(prog, CHANNELS, clock_hz=clock)
    except PulseProgramError as err:
        too_close = any(0 < b - a < MIN_CYCLES for a, b in zip(edge_cycles, edge_cycles[1:]))
        assert ("overlap" in str(err) and None in merged.values()) or ("cycles" in str(err) and too_close)
        return
    assert None not in merged.values()
    assert all(0 < b - a and b - a >= MIN_CYCLES for a, b in zip(edge_cycles, edge_cycles[1:]))
    ins = c.instructions
    assert ins[-2:] == STOP and all(i.cycles >= MIN_CYCLES for i in ins[:-2])
    assert all(a.word != b.word for a, b in zip(ins[:-2], ins[1:-2]))      # every instruction is an edge
    assert sum(i.cycles for i in ins) == edge_cycles[-1]
    assert c.max_rounding_error_s < 1e-15
    back = edges_to_pulses(c.edges(), CHANNELS)
    for name, m in merged.items():
        got = [(round(s * clock), round((s + d) * clock)) for s, d in back[name]]
        assert got == m, name
    assert back["tof_marker"] == []


def test_an_idle_word_holds_active_low_outputs_high_outside_their_pulses() -> None:
    from drivers.pulse_program import compile_program, instructions_to_edges
    prog = compile_program({"a": [(1e-6, 2e-6)], "b": [(2e-6, 1e-6)]}, {"a": 0, "b": 3},
                           idle_word=1 << 3)
    edges = instructions_to_edges(prog.instructions)
    assert edges == [(0.0, 0b1000), (1e-6, 0b1001), (2e-6, 0b0001), (3e-6, 0b1000)]
    assert prog.instructions[-2:] == ((0b1000, 0), (0b1000, 0))       # the stop holds the idle word
