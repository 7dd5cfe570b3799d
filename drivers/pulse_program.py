"""Pulse programs for the PrawnDO timing card: physical times <-> card instructions.

A *pulse program* is physical: channel name -> list of ``(start_s, duration_s)`` pulses, times in
seconds from the start trigger (t = 0). A *channel map* (configuration, not code) names the card's
outputs: channel name -> output bit 0-15 (bit 15 is the most significant bit of the output word).

The card runs *instructions* ``(word, cycles)``: the 16-bit output word is held for ``cycles`` clock
cycles (default clock 100 MHz, 1 cycle = 10 ns; 5 <= cycles <= 2**32 - 1). ``cycles == 0`` is an
indefinite wait (the word is held until a trigger on pin 16); two successive 0-cycle instructions end
the program (the first one's word stays on the outputs, the second word is ignored).

``compile_program`` rounds every edge to the nearest cycle (the worst rounding is reported), merges
edges that fall on the same cycle, splits waits longer than 2**32 - 1 cycles and appends the stop.
``instructions_to_edges`` is the inverse (what the card emits), ``edges_to_pulses`` turns an edge
record back into per-channel pulses.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

DEFAULT_CLOCK_HZ = 100e6
MIN_CYCLES = 5
MAX_CYCLES = 2**32 - 1
N_OUTPUTS = 16
WORD_MASK = (1 << N_OUTPUTS) - 1
MEMORY_INSTRUCTIONS = {"pico1": 30_000, "pico2": 60_000}
"""Instruction memory of the card per board (``brd`` reply)."""

Edge = tuple[float, int]
"""``(time_s, output_word)``: from ``time_s`` on, the outputs show ``output_word``."""
PulseProgram = Mapping[str, Sequence[tuple[float, float]]]
"""Channel name -> pulses ``(start_s, duration_s)``, seconds from the start trigger."""


class PulseProgramError(ValueError):
    """A pulse program, channel map or instruction list that the card cannot run."""


class Instruction(NamedTuple):
    """One card instruction: ``word`` (16-bit outputs) held for ``cycles`` clock cycles (0: wait)."""

    word: int
    cycles: int


STOP: tuple[Instruction, Instruction] = (Instruction(0, 0), Instruction(0, 0))
"""The program end: two successive 0-cycle instructions (outputs stay at the first word, 0)."""


@dataclass(frozen=True)
class ChannelMap:
    """Channel name -> output bit (0-15), validated: names non-empty, bits unique and in range."""

    bits: Mapping[str, int]

    def __post_init__(self) -> None:
        seen: dict[int, str] = {}
        for name, bit in self.bits.items():
            if not isinstance(name, str) or not name.strip():
                raise PulseProgramError(f"channel map: name {name!r}: expected a non-empty string")
            if isinstance(bit, bool) or not isinstance(bit, int) or not 0 <= bit < N_OUTPUTS:
                raise PulseProgramError(
                    f"channel map: {name} = {bit!r}: expected an output bit, an integer 0-{N_OUTPUTS - 1}")
            if bit in seen:
                raise PulseProgramError(
                    f"channel map: {name} = {bit}: output {bit} is already assigned to {seen[bit]!r}")
            seen[bit] = name
        object.__setattr__(self, "bits", dict(self.bits))

    @classmethod
    def from_config(cls, mapping: Mapping[str, int] | ChannelMap) -> ChannelMap:
        """The channel map of a configuration table ``{name: bit}`` (or an existing map)."""
        return mapping if isinstance(mapping, ChannelMap) else cls(dict(mapping))

    def bit(self, name: str) -> int:
        """Output bit of channel ``name``; PulseProgramError naming the known channels if unknown."""
        try:
            return self.bits[name]
        except KeyError:
            raise PulseProgramError(
                f"unknown channel {name!r}: the channel map has {sorted(self.bits)}") from None

    def names_in(self, word: int) -> list[str]:
        """Names of the channels that are high in ``word``."""
        return [n for n, b in self.bits.items() if word >> b & 1]


@dataclass(frozen=True)
class CompiledProgram:
    """Instructions for the card plus what compiling did.

    ``duration_s``: time of the program's end (its stop), from the start trigger;
    ``max_rounding_error_s``: the largest |rounded - requested| edge time, in s.
    """

    instructions: tuple[Instruction, ...]
    clock_hz: float
    duration_s: float
    max_rounding_error_s: float

    def edges(self) -> list[Edge]:
        """The ``(time_s, word)`` edges the card emits when it runs this program."""
        return instructions_to_edges(self.instructions, clock_hz=self.clock_hz)


def _to_cycles(t_s: float, clock_hz: float) -> int:
    return math.floor(t_s * clock_hz + 0.5)


def _check_clock(clock_hz: float) -> None:
    if not (isinstance(clock_hz, (int, float)) and math.isfinite(clock_hz) and clock_hz > 0):
        raise PulseProgramError(f"clock_hz = {clock_hz!r}: expected a finite frequency in Hz (> 0)")


def _channel_intervals(name: str, pulses: Sequence[tuple[float, float]], clock_hz: float
                       ) -> tuple[list[tuple[int, int]], float]:
    """Pulses of one channel as sorted, merged cycle intervals [start, end); and the worst rounding (s)."""
    checked: list[tuple[float, float]] = []
    for k, pulse in enumerate(pulses):
        try:
            start_s, duration_s = (float(v) for v in pulse)
        except (TypeError, ValueError):
            raise PulseProgramError(
                f"channel {name!r} pulse {k}: {pulse!r}: expected (start_s, duration_s)") from None
        if not (math.isfinite(start_s) and start_s >= 0):
            raise PulseProgramError(
                f"channel {name!r} pulse {k}: start_s = {start_s!r}: expected a finite time in s (>= 0)")
        if not (math.isfinite(duration_s) and duration_s > 0):
            raise PulseProgramError(
                f"channel {name!r} pulse {k}: duration_s = {duration_s!r}: expected a finite time in s (> 0)")
        checked.append((start_s, start_s + duration_s))
    checked.sort()
    for (s0, e0), (s1, e1) in zip(checked, checked[1:]):
        if s1 < e0:
            raise PulseProgramError(
                f"channel {name!r}: pulses overlap: [{s0:.9g} s, {e0:.9g} s) and [{s1:.9g} s, {e1:.9g} s)")
    intervals: list[tuple[int, int]] = []
    worst = 0.0
    for s, e in checked:
        cs, ce = _to_cycles(s, clock_hz), _to_cycles(e, clock_hz)
        worst = max(worst, abs(cs / clock_hz - s), abs(ce / clock_hz - e))
        if ce <= cs:
            raise PulseProgramError(
                f"channel {name!r}: pulse at {s:.9g} s lasting {e - s:.3g} s rounds to 0 cycles "
                f"at {clock_hz:g} Hz (minimum instruction {MIN_CYCLES} cycles)")
        if intervals and cs <= intervals[-1][1]:      # touching pulses: one longer pulse
            intervals[-1] = (intervals[-1][0], max(ce, intervals[-1][1]))
        else:
            intervals.append((cs, ce))
    return intervals, worst


def _split(word: int, cycles: int) -> list[Instruction]:
    """One hold of ``cycles`` as instructions of at most MAX_CYCLES (each >= MIN_CYCLES)."""
    pieces = -(-cycles // MAX_CYCLES)
    base, extra = divmod(cycles, pieces)
    return [Instruction(word, base + 1)] * extra + [Instruction(word, base)] * (pieces - extra)


def compile_program(program: PulseProgram, channels: ChannelMap | Mapping[str, int], *,
                    clock_hz: float = DEFAULT_CLOCK_HZ,
                    max_instructions: int = MEMORY_INSTRUCTIONS["pico1"],
                    idle_word: int = 0) -> CompiledProgram:
    """Compile a physical pulse program (times in s) to card instructions at ``clock_hz`` (Hz).

    Outputs show ``idle_word`` before the first pulse and after the last one (0: all low; a bit set
    there is an active-low output, which a pulse drives low); the program ends with a stop that
    holds ``idle_word``.
    ``max_instructions`` is the card's memory (``MEMORY_INSTRUCTIONS[board]``). Raises
    PulseProgramError for unknown channels, negative times, overlapping pulses on one channel,
    instructions shorter than 5 cycles and programs that do not fit in memory.
    """
    _check_clock(clock_hz)
    cmap = ChannelMap.from_config(channels)
    if isinstance(idle_word, bool) or not isinstance(idle_word, int) or not 0 <= idle_word <= WORD_MASK:
        raise PulseProgramError(f"idle_word = {idle_word!r}: expected an output word 0..0xFFFF")
    worst = 0.0
    toggles: dict[int, int] = {}          # cycle -> XOR mask of the bits that change there
    changers: dict[int, list[str]] = {}   # cycle -> channel names with an edge there (for messages)
    for name, pulses in program.items():
        bit = cmap.bit(name)
        intervals, w = _channel_intervals(name, pulses, clock_hz)
        worst = max(worst, w)
        for cs, ce in intervals:
            for c in (cs, ce):
                toggles[c] = toggles.get(c, 0) ^ (1 << bit)
                changers.setdefault(c, []).append(name)
    instructions: list[Instruction] = []
    word, t_prev = idle_word, 0
    for c in sorted(toggles):
        length = c - t_prev
        if 0 < length < MIN_CYCLES:
            before = sorted(set(changers.get(t_prev, ["start"])))
            raise PulseProgramError(
                f"instruction at {t_prev / clock_hz:.9g} s would last {length} cycles "
                f"({length / clock_hz:.3g} s; minimum {MIN_CYCLES} cycles at {clock_hz:g} Hz): "
                f"edges of {before} and {sorted(set(changers[c]))} are too close")
        if length:
            instructions.extend(_split(word, length))
        word ^= toggles[c]
        t_prev = c
    instructions.extend(STOP if idle_word == 0 else (Instruction(idle_word, 0),) * 2)
    if len(instructions) > max_instructions:
        raise PulseProgramError(
            f"program needs {len(instructions)} instructions (including the 2 of the stop); "
            f"the card holds {max_instructions}")
    return CompiledProgram(tuple(instructions), float(clock_hz), t_prev / clock_hz, worst)


def validate_instructions(instructions: Sequence[Instruction | tuple[int, int]], *,
                          max_instructions: int | None = None) -> list[Instruction]:
    """Check words (0..0xFFFF) and cycles (0 or 5..2**32-1) and the length; return Instructions."""
    out: list[Instruction] = []
    for i, ins in enumerate(instructions):
        try:
            word, cycles = ins
        except (TypeError, ValueError):
            raise PulseProgramError(f"instruction {i}: {ins!r}: expected (word, cycles)") from None
        if isinstance(word, bool) or not isinstance(word, int) or not 0 <= word <= WORD_MASK:
            raise PulseProgramError(f"instruction {i}: word {word!r}: expected an integer 0..0xFFFF")
        if isinstance(cycles, bool) or not isinstance(cycles, int) or not (
                cycles == 0 or MIN_CYCLES <= cycles <= MAX_CYCLES):
            raise PulseProgramError(
                f"instruction {i}: cycles {cycles!r}: expected 0 (wait/stop) or {MIN_CYCLES}..{MAX_CYCLES}")
        out.append(Instruction(word, cycles))
    if max_instructions is not None and len(out) > max_instructions:
        raise PulseProgramError(f"{len(out)} instructions: the card holds {max_instructions}")
    return out


def instructions_to_edges(instructions: Iterable[Instruction | tuple[int, int]], *,
                          clock_hz: float = DEFAULT_CLOCK_HZ,
                          wait_durations_s: Sequence[float] = ()) -> list[Edge]:
    """The ``(time_s, word)`` edges the card emits for ``instructions``, time 0 = start trigger.

    Only changes of the output word are edges (plus the first word at t = 0). A wait (0 cycles not
    followed by another 0) holds its word until a trigger: the k-th wait lasts ``wait_durations_s[k]``
    (0 s when not given). Decoding stops at the program's stop; a program without one runs to its
    last instruction (the card then holds that word until aborted).
    """
    _check_clock(clock_hz)
    ins = [Instruction(int(w), int(c)) for w, c in instructions]
    edges: list[Edge] = []
    seg_start_s, seg_cycles, n_waits = 0.0, 0, 0

    def emit(word: int) -> None:
        t = seg_start_s + seg_cycles / clock_hz
        if not edges or edges[-1][1] != word:
            edges.append((t, word))

    i = 0
    while i < len(ins):
        word, cycles = ins[i]
        emit(word)
        if cycles:
            seg_cycles += cycles
            i += 1
            continue
        if i + 1 >= len(ins) or ins[i + 1].cycles == 0:
            break                                            # stop (or a wait that never ends)
        wait_s = float(wait_durations_s[n_waits]) if n_waits < len(wait_durations_s) else 0.0
        if not (math.isfinite(wait_s) and wait_s >= 0):
            raise PulseProgramError(f"wait_durations_s[{n_waits}] = {wait_s!r}: expected a time in s (>= 0)")
        n_waits += 1
        seg_start_s, seg_cycles = seg_start_s + seg_cycles / clock_hz + wait_s, 0
        i += 1                                               # the next word starts at the trigger
    return edges


def program_duration_s(instructions: Sequence[Instruction | tuple[int, int]], *,
                       clock_hz: float = DEFAULT_CLOCK_HZ) -> float:
    """Time (s) from the start trigger to the stop, waits counted as 0 s (the sum of all cycles)."""
    _check_clock(clock_hz)
    total = 0
    for i, (_, cycles) in enumerate(instructions):
        if cycles == 0 and (i + 1 >= len(instructions) or instructions[i + 1][1] == 0):
            break
        total += int(cycles)
    return total / clock_hz


def edges_to_pulses(edges: Sequence[Edge], channels: ChannelMap | Mapping[str, int], *,
                    end_s: float | None = None) -> dict[str, list[tuple[float, float]]]:
    """Per-channel pulses ``(start_s, duration_s)`` of an edge record (every mapped channel listed).

    A channel still high after the last edge lasts until ``end_s`` (math.inf when not given).
    """
    cmap = ChannelMap.from_config(channels)
    out: dict[str, list[tuple[float, float]]] = {n: [] for n in cmap.bits}
    rise: dict[str, float] = {}
    prev = 0
    for t, word in edges:
        for name, bit in cmap.bits.items():
            was, now = prev >> bit & 1, word >> bit & 1
            if now and not was:
                rise[name] = t
            elif was and not now:
                start = rise.pop(name)
                out[name].append((start, t - start))
        prev = word
    for name, start in rise.items():
        out[name].append((start, (end_s - start) if end_s is not None else math.inf))
    return out
