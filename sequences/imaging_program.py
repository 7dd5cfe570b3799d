"""The TTL program of one shot, in physical terms (channel -> pulses), from the plan and the direction.

Times in seconds from the start of the card's program: t = 0 is the trap switch-off, unless the
plan has steps before it (``sequences/steps.py``), when the program starts ``program_lead_s``
earlier and every time below is that much later. Channels (names mapped to card outputs by
configuration):
- ``mw_gate``: the microwave switch; one pulse of the axis' length at ``pulse_start_s`` (z: none);
- ``probe``: the imaging light; ``probe_pulse_s`` pulses for atoms2, atoms1, ref2, ref1 (no pulse
  for the dark frame);
- ``imaging.probe_level_channel`` (optional, a user channel): the same pulses as ``probe`` (the
  probe AOM's other RF level);
- ``camera``: one trigger per frame, opening ``camera_lead_s`` before its probe pulse and lasting
  ``camera_exposure_s`` (the rising edge starts the exposure);
- ``tof_marker`` (optional, only if mapped; required with steps before the switch-off): high
  during the time of flight, from the switch-off for tof_s;
- the lab's own channels: the plan's ``[[steps]]`` (``sequences/steps.py``), timed from the events
  of this sequence.
"""
from __future__ import annotations

from collections.abc import Mapping

from sequences.plan import RunPlan

MW_GATE, PROBE, CAMERA, TOF_MARKER = "mw_gate", "probe", "camera", "tof_marker"
REQUIRED_CHANNELS = (MW_GATE, PROBE, CAMERA)
ShotProgram = dict[str, list[tuple[float, float]]]


def check_channels(channels: Mapping[str, int]) -> None:
    """ValueError naming the missing channels unless mw_gate, probe and camera are mapped."""
    missing = [c for c in REQUIRED_CHANNELS if c not in channels]
    if missing:
        raise ValueError(f"channel map {dict(channels)}: missing channel(s) {', '.join(missing)}; "
                         f"expected names for {', '.join(REQUIRED_CHANNELS)} "
                         f"(optional: {TOF_MARKER})")


def shot_program(plan: RunPlan, direction: str, channels: Mapping[str, int]) -> ShotProgram:
    """The pulses of one shot measuring ``direction`` ('x', 'y' or 'z')."""
    im = plan.imaging
    pulse = plan.microwave.pulse(direction)
    starts = im.exposure_starts_s()
    program: ShotProgram = {
        MW_GATE: [(plan.microwave.pulse_start_s, pulse.pulse_s)] if pulse.pulse_s > 0 else [],
        PROBE: [(starts[name] + im.camera_lead_s, im.probe_pulse_s)
                for name in im.frame_names if name != "dark"],
        CAMERA: [(starts[name], im.camera_exposure_s) for name in im.frame_names],
    }
    level = im.probe_level_channel
    if level:
        from sequences.steps import BUILT_IN_CHANNELS, StepError
        if level not in channels or level in BUILT_IN_CHANNELS:
            raise StepError(f"{plan.source}: imaging.probe_level_channel = {level!r}: not a user channel of the "
                             f"timing card; user channels: {', '.join(c for c in channels if c not in BUILT_IN_CHANNELS) or 'none'}")
        program[level] = list(program[PROBE])
    if TOF_MARKER in channels:
        program[TOF_MARKER] = [(0.0, im.tof_s)]
    if plan.steps:
        from sequences.steps import check_lead, step_pulses
        program.update(step_pulses(plan, direction))
        lead = check_lead(plan, direction, channels)
        if lead > 0:
            program = {ch: [(start + lead, d) for start, d in pulses] for ch, pulses in program.items()}
    return program


def program_end_s(program: ShotProgram) -> float:
    """The end of the last pulse (s)."""
    return max((s + d for pulses in program.values() for s, d in pulses), default=0.0)
