"""The lab's own sequence steps: pulses on user channels, timed from named events of the cycle.

A plan's ``[[steps]]`` entries (format: docs/run-plans.md) put pulses on the timing-card outputs
that the lab configuration names beyond the built-in ones (``[timing_card.channels]``). A step is
``name``, ``channel``, ``at`` (an event) + ``offset_s`` (may be negative), and either
``duration_s`` (a pulse) or ``until`` (an event) + ``until_offset_s`` (an edge pair: active from
the first time to the second). Times are seconds from the trap switch-off (t = 0). A step may
start before it (loading, evaporation, a trap ramp): the card's program then starts that much
earlier (:func:`program_lead_s`) and the switch-off is the rising edge of ``tof_marker``, which
such a plan needs mapped (the lab's trap switch, or the virtual lab, takes the release from it).

Events of a shot (seconds from the trap switch-off, per direction):
``trap_off`` 0; ``mw_start``/``mw_end`` the Rabi pulse (z: both at ``pulse_start_s``);
``probe1``/``probe2`` the starts of the |2> and |1> probe pulses; ``camera1``/``camera2`` the
starts of their exposures; ``end`` the end of the built-in imaging sequence (last pulse).

The imaging part (probe, camera, mw_gate, tof_marker) stays steerlab's; steps cannot use those
outputs. :func:`check_programs` compiles every shot the plan will run against the card's clock and
memory and names the step at fault.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.pulse_program import (MIN_CYCLES, CompiledProgram, PulseProgramError,
                                   compile_program)
from sequences.tomlfields import FieldError, Table

if TYPE_CHECKING:
    from sequences.plan import RunPlan

EVENTS = ("trap_off", "mw_start", "mw_end", "probe1", "probe2", "camera1", "camera2", "end")
BUILT_IN_CHANNELS = ("mw_gate", "probe", "camera", "tof_marker")
MAX_STEPS = 30_000


class StepError(ValueError):
    """A user step cannot be programmed; the message names the plan, the step and the limit."""


@dataclass(frozen=True)
class Step:
    """One user step: channel active from ``at`` + ``offset_s`` for ``duration_s`` (s), or until
    ``until`` + ``until_offset_s``."""

    name: str
    channel: str
    at: str
    offset_s: float = 0.0
    duration_s: float | None = None
    until: str | None = None
    until_offset_s: float = 0.0


def parse_steps(raw: object, source: str, error: type[FieldError]) -> tuple[Step, ...]:
    """The ``[[steps]]`` array of tables, validated (channels are checked against the lab later)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_STEPS:
        raise error(f"{source}: steps = {str(raw)[:60]}...: expected an array of tables [[steps]] "
                    f"(at most {MAX_STEPS})")
    out: list[Step] = []
    names: set[str] = set()
    for k, entry in enumerate(raw):
        t = Table(entry, source, f"steps[{k}]", error)
        name = t.string("name")
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise t.fail("name", name, "a name of letters, digits, '_' or '-'")
        if name in names:
            raise t.fail("name", name, "a name used by one step only")
        names.add(name)
        channel = t.string("channel")
        if channel in BUILT_IN_CHANNELS:
            raise t.fail("channel", channel, "a user channel of the lab configuration (the "
                         f"built-in {', '.join(BUILT_IN_CHANNELS)} are steerlab's imaging sequence)")
        at = t.string("at", choices=EVENTS)
        offset = t.number("offset_s", 0.0, minimum=-100.0, maximum=100.0, unit="s")
        if t.has("duration_s") == t.has("until"):
            raise error(f"{source}: steps[{k}] ({name}): expected exactly one of duration_s "
                        f"(a pulse) or until (an edge pair)")
        duration = t.number("duration_s", None, positive=True, maximum=100.0, unit="s")
        until = t.string("until", None, choices=EVENTS)
        until_offset = t.number("until_offset_s", 0.0, minimum=-100.0, maximum=100.0, unit="s")
        t.done()
        out.append(Step(name, channel, at, offset, duration, until, until_offset))
    return tuple(out)


def events_s(plan: RunPlan, direction: str) -> dict[str, float]:
    """The times (s from the trap switch-off) of the named events of a ``direction`` shot."""
    im, mw = plan.imaging, plan.microwave
    starts = im.exposure_starts_s()
    pulse = mw.pulse(direction).pulse_s
    last = max(starts[n] + im.camera_exposure_s for n in im.frame_names)
    last = max(last, max(starts[n] + im.camera_lead_s + im.probe_pulse_s
                         for n in im.frame_names if n != "dark"))
    return {"trap_off": 0.0, "mw_start": mw.pulse_start_s, "mw_end": mw.pulse_start_s + pulse,
            "probe1": starts["atoms2"] + im.camera_lead_s,
            "probe2": starts["atoms1"] + im.camera_lead_s,
            "camera1": starts["atoms2"], "camera2": starts["atoms1"], "end": last}


def step_pulses(plan: RunPlan, direction: str) -> dict[str, list[tuple[float, float]]]:
    """Channel -> pulses ``(start_s, duration_s)`` (s from the trap switch-off, negative before it)
    of the plan's steps in a ``direction`` shot; StepError naming the step if it ends before it
    starts."""
    ev = events_s(plan, direction)
    out: dict[str, list[tuple[float, float]]] = {}
    for s in plan.steps:
        start = ev[s.at] + s.offset_s
        if s.duration_s is not None:
            duration = s.duration_s
        else:
            assert s.until is not None
            duration = ev[s.until] + s.until_offset_s - start
        where = f"{plan.source}: step {s.name!r} ({s.channel}, {direction} shot)"
        if not duration > 0:
            raise StepError(f"{where}: ends at {start + duration:.9g} s, not after its start at "
                            f"{start:.9g} s; expected until + until_offset_s after at + offset_s")
        out.setdefault(s.channel, []).append((start if start < -1e-12 else max(start, 0.0), duration))
    return out


def program_lead_s(plan: RunPlan, direction: str) -> float:
    """How long (s) before the trap switch-off the card's program of a ``direction`` shot starts:
    the earliest step start before it, else 0 (the program starts at the switch-off)."""
    starts = [start for pulses in step_pulses(plan, direction).values() for start, _ in pulses]
    return max(0.0, -min(starts, default=0.0))


def check_lead(plan: RunPlan, direction: str, channels: Mapping[str, int]) -> float:
    """``program_lead_s``; StepError naming the earliest step if it is > 0 and ``tof_marker`` (the
    output marking the switch-off in the card's program) is not mapped."""
    lead = program_lead_s(plan, direction)
    if lead > 0 and "tof_marker" not in channels:
        ev = events_s(plan, direction)
        first = min(plan.steps, key=lambda s: ev[s.at] + s.offset_s)
        raise StepError(f"{plan.source}: step {first.name!r} ({first.channel}, {direction} shot): "
                        f"starts {lead:.9g} s before the trap switch-off; expected a "
                        f"tof_marker output in the lab configuration's [timing_card.channels] "
                        f"(it marks the switch-off when the card's program starts earlier), or "
                        f"a start >= 0 s")
    return lead


def check_step_channels(plan: RunPlan, channels: Mapping[str, int]) -> None:
    """StepError naming the step whose channel the lab configuration does not define."""
    for s in plan.steps:
        if s.channel not in channels:
            user = sorted(set(channels) - set(BUILT_IN_CHANNELS))
            raise StepError(f"{plan.source}: step {s.name!r}: channel {s.channel!r} is not in the "
                            f"lab configuration's [timing_card.channels]; expected one of "
                            f"{', '.join(user) or '(no user channels defined)'}")


def _blame(plan: RunPlan, direction: str, exc: PulseProgramError, clock_hz: float) -> str:
    """The step(s) a compile error is about (by channel name), with the card's limits."""
    text = str(exc)
    named = [s.name for s in plan.steps if repr(s.channel) in text]
    short = [s.name for s in plan.steps if s.duration_s is not None
             and round(s.duration_s * clock_hz) < MIN_CYCLES]
    who = short or named
    limit = (f"card: {clock_hz / 1e6:g} MHz clock ({1e9 / clock_hz:g} ns resolution), at least "
             f"{MIN_CYCLES} cycles = {MIN_CYCLES / clock_hz * 1e9:g} ns between edges")
    head = f"step {', '.join(repr(n) for n in who)}: " if who else ""
    return f"{plan.source}: {head}the {direction} shot's timing-card program: {text} ({limit})"


def idle_word(channels: Mapping[str, int], idle_high: Iterable[str]) -> int:
    """The card's output word at rest: the bits of the idle-high (active-low) channels set."""
    word = 0
    for name in idle_high:
        word |= 1 << channels[name]
    return word


def compile_shot(plan: RunPlan, direction: str, channels: Mapping[str, int], *, clock_hz: float,
                 max_instructions: int, idle_high: Iterable[str] = ()) -> CompiledProgram:
    """The card program of one shot (imaging + steps); StepError naming the step on failure."""
    from sequences.imaging_program import shot_program
    check_step_channels(plan, channels)
    idle = idle_word(channels, idle_high)
    try:
        return compile_program(shot_program(plan, direction, channels), channels,
                               clock_hz=clock_hz, max_instructions=max_instructions,
                               idle_word=idle)
    except PulseProgramError as exc:
        if "needs" in str(exc) and "instructions" in str(exc) and plan.steps:
            raise StepError(f"{plan.source}: steps: the {direction} shot's program: {exc} "
                            f"({len(plan.steps)} user steps)") from None
        raise StepError(_blame(plan, direction, exc, clock_hz)) from None


def check_programs(plan: RunPlan, channels: Mapping[str, int], *, clock_hz: float,
                   max_instructions: int, idle_high: Iterable[str] = ()
                   ) -> dict[tuple[int, str], CompiledProgram]:
    """Every program the run will upload, by (scan point or -1, direction), compiled before the
    run starts; StepError (one line, naming the point, the step and the limit) if any fails."""
    out: dict[tuple[int, str], CompiledProgram] = {}
    idle = tuple(idle_high)
    points = range(len(plan.point_plans)) if plan.point_plans else [-1]
    for p in points:
        pp = plan.at(p)
        for d in sorted(set(plan.cycle.directions)):
            try:
                out[(p, d)] = compile_shot(pp, d, channels, clock_hz=clock_hz,
                                           max_instructions=max_instructions, idle_high=idle)
            except StepError as exc:
                if p < 0:
                    raise
                values = ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v!r}"
                                   for k, v in plan.scan_values(p).items())
                raise StepError(f"scan point {p} ({values}): {exc}") from None
    return out

