"""One validation pass over a run's inputs before anything starts (no instrument touched, no file
or directory created).

:func:`check_run` looks at what the lab configuration and the plan only describe and would otherwise
fail late: the data directory (a writable directory, or one that can be created), the run file's
name (length, no existing file), the virtual lab's own table (as written, and with the plan's
state applied), the start mode, the shot's TTL program against the timing card's resolution and
memory, the microwave settings against the generator's ranges, the memory a shot needs, and whether
the plan holds enough shots for any criteria. Every problem is an :class:`InputError` naming the
file, the field, the value and what was expected.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path

from analysis.criteria import MIN_SHOTS
from app.labconfig import LabConfig, LabConfigError
from drivers.pulse_program import DEFAULT_CLOCK_HZ, MEMORY_INSTRUCTIONS
from sequences.steps import StepError, check_programs
from sequences.plan import RunPlan, parse_plan, with_overrides

# shots whose frames can be in memory at once: writer queue + monitor queue + the session's recent
# shots (app/session.py) + the one being assembled
SHOTS_IN_MEMORY = 64 + 64 + 128 + 1
MEMORY_SHARE = 0.7          # of the memory available now
MAX_NAME_BYTES = 255


class InputError(ValueError):
    """An input of the run is unusable; the message names file, field, value and expectation."""


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (bytes), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_data_dir(config: LabConfig) -> None:
    """``lab.data_dir`` is a writable directory, or the nearest existing parent is one (it is then
    created when the run file is)."""
    d = config.data_dir
    where = f"{config.source}: lab.data_dir = {str(d)!r}"
    if d.exists() and not d.is_dir():
        raise InputError(f"{where}: is a file; expected a directory for the run files")
    probe = d
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{where}: {probe} is not a directory; expected a directory for the run files")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is" if probe == d else f"cannot be created ({probe}"
        raise InputError(f"{where}: {what} not writable{')' if probe != d else ''}; expected a "
                         f"directory this user can write")
    if str(probe.resolve()).startswith(("/proc", "/sys")):
        raise InputError(f"{where}: lies in {probe.resolve()} (a kernel file system); expected a "
                         f"directory on a disk")


def check_output_name(config: LabConfig, output: str | None) -> Path:
    """The run file's path in ``data_dir`` (not created); InputError for a name that is too long,
    escapes the data directory or exists already."""
    if output is not None:
        for part in Path(output).parts:
            if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
                raise InputError(f"--out {output[:40]!r}...: a name of {len(part)} characters; expected "
                                 f"at most {MAX_NAME_BYTES} bytes per file name")
    try:
        path = config.output_path(output, create=False)
    except LabConfigError as exc:
        raise InputError(str(exc)) from None
    if len(str(path).encode("utf-8", "surrogateescape")) > 4000:
        raise InputError(f"--out: the path {str(path)[:60]!r}... is too long; expected a shorter name")
    if path.exists():
        raise InputError(f"{path}: already exists; a run never overwrites a file (give another --out)")
    return path


def check_virtual_lab(config: LabConfig, plan: RunPlan) -> tuple[int, int] | None:
    """The virtual lab's table as written and with the plan's state; its frame shape (or None for
    a real lab)."""
    scanned = [f for f in (plan.scan.fields if plan.scan else ()) if f.startswith("state.")]
    if config.kind != "virtual":
        if scanned:
            raise InputError(f"{plan.source}: scan of {', '.join(scanned)}: only the virtual lab "
                             f"prepares its atoms from the plan; on a real lab ({config.source}) "
                             f"scan the user channel that sets them (steps.<name>.duration_s)")
        return None
    from app.lab import virtual_lab_config
    frame = virtual_lab_config(config, plan).frame_shape
    for k, pp in enumerate(plan.point_plans if scanned else ()):
        try:
            virtual_lab_config(config, pp)
        except ValueError as exc:
            raise InputError(f"scan point {k}: {exc}") from None
    if config.sequencer.start_mode == "hardware":
        period = config.virtual_lab.get("trigger_period_s", 0.0)
        if not period:
            raise InputError(f"{config.source}: sequencer.start_mode = 'hardware': the card waits for a "
                             f"trigger on pin 16, which the virtual lab sends only with [virtual_lab] "
                             f"trigger_period_s > 0 (got {period!r}); expected start_mode = 'software' "
                             f"or a trigger period")
    return frame


def check_program(config: LabConfig, plan: RunPlan) -> None:
    """Every TTL program of the run (each scan point, each direction, the plan's user steps)
    compiles for the card's default clock and the smaller memory (the connected card's own clock
    and memory are checked again when the run starts); one line naming the step otherwise."""
    try:
        check_programs(plan, config.sequencer.channels, clock_hz=DEFAULT_CLOCK_HZ,
                       max_instructions=min(MEMORY_INSTRUCTIONS.values()),
                       idle_high=config.sequencer.idle_high)
    except StepError as exc:
        raise InputError(str(exc)) from None


def check_microwave(config: LabConfig, plan: RunPlan) -> None:
    """Frequency, level and phases within the generator's ranges (from the selected driver's
    declared settings, where it declares them)."""
    from drivers.registry import load
    source = load("microwave", config.microwave_kind)
    mw = plan.microwave
    values = [("frequency_hz", "frequency_hz", mw.frequency_hz), ("power_dbm", "level_dbm", mw.power_dbm)]
    values += [(f"{ax}.phase_deg", "phase_deg", mw.pulse(ax).phase_deg) for ax in ("x", "y")
               if ax in mw.axes]
    for name, control, value in values:
        origin = mw.origin.get(f"microwave.{name}", "calibration")
        where = plan.source if origin == "plan" else f"{config.source}: calibration"
        try:
            declared = inspect.getattr_static(source, control, None)
            if declared is not None and hasattr(declared, "check"):
                declared.check(value)
        except ValueError as exc:
            raise InputError(f"{where}: microwave.{name} = {value!r}: {exc}") from None


def check_memory(config: LabConfig, plan: RunPlan, frame_shape: tuple[int, int] | None) -> None:
    """The frames of the shots that can be in memory at once fit in the memory available now."""
    h, w = frame_shape or (config.sequencer.camera_height, config.sequencer.camera_width)
    per_shot = len(plan.imaging.frame_names) * h * w * 2
    # the simulation renders in float64 (x4 per frame), a few frames at a time
    need = per_shot * SHOTS_IN_MEMORY + (per_shot * 4 * 4 if config.kind == "virtual" else 0)
    have = available_memory_bytes()
    if have is not None and need > MEMORY_SHARE * have:
        raise InputError(f"{config.source}: frames of {h} x {w} px: up to {SHOTS_IN_MEMORY} shots of "
                         f"{per_shot / 1e6:.0f} MB each can be in memory ({need / 1e9:.1f} GB), more than "
                         f"{MEMORY_SHARE:.0%} of the {have / 1e9:.1f} GB available; expected a smaller "
                         f"frame (camera ROI or [virtual_lab] frame_shape)")


def check_enough_shots(config: LabConfig, plan: RunPlan) -> None:
    """The plan gives criteria: at least the monitor's warm-up, and MIN_SHOTS in x, y and z."""
    n = plan.n_shots
    # enough slots to see MIN_SHOTS of every direction the cycle holds (plans may be 10^7 shots)
    seen = min(n, len(plan.cycle) * (MIN_SHOTS + 1))
    per_dir = {d: sum(1 for i in range(seen) if plan.slot(i).direction == d) for d in "xyz"}
    few = [f"{d} {k}" for d, k in per_dir.items() if k < MIN_SHOTS]
    warm = config.monitor.warmup_shots
    if n < warm or few:
        raise InputError(f"{plan.source} (or --shots): {n} shots ({', '.join(f'{d} {k}' for d, k in per_dir.items())}): "
                         f"expected at least monitor.warmup_shots = {warm} shots and {MIN_SHOTS} per "
                         f"direction, or the run ends without criteria")


def checked_plan(config: LabConfig, text: str, source: str, *, shots: int | None = None,
                 state: str | None = None, output: str | None = None) -> tuple[RunPlan, Path]:
    """The plan of ``text`` with the overrides, validated, and every check below passed; the run
    file's path (nothing created). Used by `steerlab run` and the run server alike."""
    plan = parse_plan(with_overrides(text, source, shots=shots, state=state), source,
                      config.microwave_calibration)
    return plan, check_run(config, plan, output)


def check_run(config: LabConfig, plan: RunPlan, output: str | None) -> Path:
    """Every check above; returns the run file's path (nothing created)."""
    check_data_dir(config)
    path = check_output_name(config, output)
    frame = check_virtual_lab(config, plan)
    check_microwave(config, plan)
    check_program(config, plan)
    check_memory(config, plan, frame)
    check_enough_shots(config, plan)
    return path
