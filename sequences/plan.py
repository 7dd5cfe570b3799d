"""Run plans: what a run does, as validated data read from TOML (format: docs/run-plans.md).

Units are SI with the unit in the field name (``tof_s`` in seconds, ``phase_deg`` in degrees,
``frequency_hz``, ``power_dbm``). Times in a shot are measured from the trap switch-off (t = 0).
The microwave phase and pulse length of each measured axis come from the calibration record
(passed in as a ``MicrowaveCalibration``); the plan may override them field by field.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from sequences.scan import Scan, ScanValue, apply_point, parse_scan
from sequences.shot import DIRECTIONS, FRAME_NAMES
from sequences.steps import Step, parse_steps
from sequences.tomlfields import FieldError, Table, parse_toml, read_text


class PlanError(FieldError):
    """A run plan is invalid; the message names the file, the field, the value and what was expected."""


STATE_KINDS = ("squeezed", "coherent")
ON_EXHAUSTED = ("pause", "abort")


@dataclass(frozen=True)
class StateSpec:
    """The state the virtual lab prepares: kind, mean atom number, its shot-to-shot rms, squeezing (dB)."""

    kind: str = "squeezed"
    atom_number: int = 530
    atom_number_sd: float = 40.0
    squeezing_dB: float = -3.2
    seed: int | None = None
    probe_saturation: float | None = None
    """The virtual lab's probe intensity I/I_sat (None: its configured one; calibrate reinaudi)."""
    cloud_half_width_um: float | None = None
    """The virtual lab's cloud: Thomas-Fermi half-width (um, both axes, no expansion between the
    images; None: the configured cloud; calibrate psf on a point-like cloud)."""


@dataclass(frozen=True)
class DirectionCycle:
    """The measurement directions of one cycle, in order (e.g. x, y, z or 50 x, 50 y, 50 z)."""

    directions: tuple[str, ...]
    mode: str  # 'interleaved' | 'blocks' | 'explicit'

    def __len__(self) -> int:
        return len(self.directions)

    def count(self, direction: str) -> int:
        """How often ``direction`` occurs in one cycle."""
        return self.directions.count(direction)


@dataclass(frozen=True)
class ImagingTimings:
    """Imaging sequence (s, from trap switch-off): two probe pulses ``exposure_separation_s`` apart
    after ``tof_s``, then (optionally) the reference pair and a dark frame.

    A camera exposure opens ``camera_lead_s`` before each probe pulse and lasts ``camera_exposure_s``.
    """

    tof_s: float = 2.2e-3
    probe_pulse_s: float = 50e-6
    exposure_separation_s: float = 1.5e-3
    reference_frames: bool = True
    reference_delay_s: float = 50e-3
    dark_frame: bool = True
    dark_delay_s: float = 50e-3
    camera_exposure_s: float = 100e-6
    camera_lead_s: float = 20e-6
    frame_timeout_s: float = 5.0
    probe_level_channel: str = ""
    """A user channel pulsed together with every probe pulse (empty: none), e.g. the TTL that
    switches the probe AOM's RF to another level: how a lab with a digital timing card varies the
    probe intensity (``calibrate reinaudi``, ``[calibration_plans] probe_levels``)."""

    @property
    def frame_names(self) -> tuple[str, ...]:
        """Names of the frames of a shot, in acquisition order."""
        names = ["atoms2", "atoms1"]
        if self.reference_frames:
            names += ["ref2", "ref1"]
        if self.dark_frame:
            names.append("dark")
        return tuple(n for n in FRAME_NAMES if n in names)

    def exposure_starts_s(self) -> dict[str, float]:
        """Start time (s) of each camera exposure, by frame name."""
        t1 = self.tof_s
        out = {"atoms2": t1, "atoms1": t1 + self.exposure_separation_s}
        last = out["atoms1"]
        if self.reference_frames:
            out["ref2"] = last + self.reference_delay_s
            out["ref1"] = out["ref2"] + self.exposure_separation_s
            last = out["ref1"]
        if self.dark_frame:
            out["dark"] = last + self.dark_delay_s
        return {k: v - self.camera_lead_s for k, v in out.items()}


@dataclass(frozen=True)
class AxisPulse:
    """The Rabi pulse that maps an axis onto z: microwave phase (deg) and gate duration (s, 0: none)."""

    phase_deg: float
    pulse_s: float


@dataclass(frozen=True)
class MicrowaveCalibration:
    """Microwave values from a calibration record: carrier (Hz), level (dBm), pulses for x and y."""

    frequency_hz: float
    power_dbm: float
    x: AxisPulse
    y: AxisPulse
    record: str = ""  # identifies the calibration record (id/date), for the run file

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "calibration") -> MicrowaveCalibration:
        """From ``{"frequency_hz", "power_dbm", "x": {"phase_deg", "pulse_s"}, "y": {...}, "record"}``."""
        t = Table(dict(data), source, "", PlanError)
        freq = t.number("frequency_hz", positive=True, unit="Hz")
        power = t.number("power_dbm", unit="dBm")
        axes = {}
        for ax in ("x", "y"):
            a = t.table(ax, required=True)
            axes[ax] = AxisPulse(a.number("phase_deg", minimum=-720, maximum=720, unit="deg"),
                                 a.number("pulse_s", positive=True, unit="s"))
            a.done()
        record = t.string("record", "")
        t.done()
        return cls(freq, power, axes["x"], axes["y"], record)


@dataclass(frozen=True)
class MicrowavePlan:
    """Resolved microwave settings; ``origin`` says for each value whether it came from the plan or the calibration."""

    frequency_hz: float
    power_dbm: float
    pulse_start_s: float
    axes: Mapping[str, AxisPulse]
    origin: Mapping[str, str] = field(default_factory=dict)
    calibration_record: str = ""

    def pulse(self, direction: str) -> AxisPulse:
        """The pulse for a measurement direction (z: no pulse)."""
        return self.axes[direction]


@dataclass(frozen=True)
class RetryPolicy:
    """What to do after an instrument fault: retry the same shot up to ``max_attempts`` times in all,
    reconnecting up to ``reconnect_attempts`` times ``reconnect_delay_s`` apart before each retry;
    once exhausted, pause (wait for the operator) or abort the run."""

    max_attempts: int = 3
    reconnect_attempts: int = 2
    reconnect_delay_s: float = 1.0
    on_exhausted: str = "pause"


@dataclass(frozen=True)
class Slot:
    """One planned shot: its number in the plan, the cycle, the position in the cycle and the
    direction; with a scan, the point (-1 without) and the visit (0-based, run order)."""

    number: int
    cycle: int
    sequence_index: int
    direction: str
    point: int = -1
    visit: int = 0


@dataclass(frozen=True)
class RunPlan:
    """A validated run plan. ``text`` is the TOML it was read from (stored in the run file)."""

    name: str
    state: StateSpec
    cycle: DirectionCycle
    n_shots: int
    imaging: ImagingTimings
    microwave: MicrowavePlan
    retry: RetryPolicy
    min_shot_period_s: float = 0.0
    source: str = "<plan>"
    text: str = ""
    steps: tuple[Step, ...] = ()
    scan: Scan | None = None
    point_plans: tuple[RunPlan, ...] = field(default=(), repr=False, compare=False)
    """With a scan: the plan of each point (the point's values put in, validated as a plan)."""
    shots_per_visit: int = 0

    def slot(self, number: int) -> Slot:
        """The planned shot ``number`` (0-based)."""
        if not 0 <= number < self.n_shots:
            raise IndexError(f"slot {number} outside the plan's {self.n_shots} shots")
        cycle, pos = divmod(number, len(self.cycle))
        if self.scan is None:
            return Slot(number, cycle, pos, self.cycle.directions[pos])
        visit = number // self.shots_per_visit
        return Slot(number, cycle, pos, self.cycle.directions[pos], self.scan.visits[visit], visit)

    def at(self, point: int) -> RunPlan:
        """The plan of a scan point (this plan itself for -1 or without a scan)."""
        return self.point_plans[point] if point >= 0 and self.point_plans else self

    def scan_values(self, point: int) -> dict[str, ScanValue]:
        """``{field: value}`` of a scan point (empty without a scan)."""
        return self.scan.values_of(point) if self.scan is not None and point >= 0 else {}

    def slots(self) -> Iterator[Slot]:
        """Every planned shot in order."""
        return (self.slot(i) for i in range(self.n_shots))

    def to_dict(self) -> dict[str, Any]:
        """The resolved plan as plain JSON-able data (the TOML text is left out)."""
        d = asdict(dataclasses.replace(self, point_plans=(), scan=None))
        d.pop("text")
        d.pop("point_plans")
        d["scan"] = self.scan.to_dict() if self.scan is not None else None
        d["microwave"]["axes"] = {k: asdict(v) for k, v in self.microwave.axes.items()}
        d["microwave"]["origin"] = dict(self.microwave.origin)
        d["frame_names"] = list(self.imaging.frame_names)
        return d

    def to_json(self) -> str:
        """``to_dict()`` as JSON text."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_toml(self) -> str:
        """The plan document as TOML (written by tomli-w from the parsed text)."""
        return tomli_w.dumps(parse_toml(self.text, self.source, PlanError)) if self.text else ""

    def with_overrides(self, *, shots: int | None = None, state: str | None = None,
                       calibration: MicrowaveCalibration | None = None) -> RunPlan:
        """This plan with another number of shots and/or prepared state, validated anew."""
        return parse_plan(with_overrides(self.text, self.source, shots=shots, state=state), self.source,
                          calibration)


def _state(t: Table) -> StateSpec:
    kind = t.string("kind", "squeezed", choices=STATE_KINDS)
    n = t.integer("atom_number", 530, minimum=1, maximum=100_000)
    sd = t.number("atom_number_sd", 40.0, minimum=0.0)
    if kind == "squeezed":
        sq = t.number("squeezing_dB", -3.2, maximum=0.0, minimum=-30.0)
        if sq == 0.0:
            raise t.fail("squeezing_dB", sq, "a negative number of dB for a squeezed state "
                         "(use kind = 'coherent' for none)")
    else:
        if t.has("squeezing_dB"):
            raise t.fail("squeezing_dB", t.data["squeezing_dB"],
                         "no squeezing_dB for kind = 'coherent'")
        sq = 0.0
    seed = t.integer("seed", None, minimum=0)
    sat = t.number("probe_saturation", None, positive=True, maximum=100.0, unit="I_sat")
    width = t.number("cloud_half_width_um", None, positive=True, maximum=1000.0, unit="um")
    t.done()
    return StateSpec(kind, n, sd, sq, seed, sat, width)


def _cycle(t: Table) -> DirectionCycle:
    if t.has("sequence"):
        if t.has("order") or t.has("block"):
            raise t.fail("sequence", t.data["sequence"], "either sequence or order/block, not both")
        seq = t.raw("sequence")
        if not isinstance(seq, list) or not seq or any(d not in DIRECTIONS for d in seq):
            raise t.fail("sequence", seq, "a non-empty list of 'x', 'y', 'z'")
        t.done()
        return DirectionCycle(tuple(seq), "explicit")
    order = t.string("order", "xyz")
    if not order or any(c not in DIRECTIONS for c in order) or len(set(order)) != len(order):
        raise t.fail("order", order, "a string of distinct directions from 'xyz', e.g. 'xyz'")
    block = t.integer("block", 1, minimum=1, maximum=100_000)
    t.done()
    dirs = tuple(d for d in order for _ in range(block))
    return DirectionCycle(dirs, "interleaved" if block == 1 else "blocks")


def _imaging(t: Table) -> ImagingTimings:
    d = ImagingTimings()
    im = ImagingTimings(
        tof_s=t.number("tof_s", d.tof_s, positive=True, maximum=1.0, unit="s"),
        probe_pulse_s=t.number("probe_pulse_s", d.probe_pulse_s, positive=True, maximum=0.1, unit="s"),
        exposure_separation_s=t.number("exposure_separation_s", d.exposure_separation_s,
                                       positive=True, maximum=1.0, unit="s"),
        reference_frames=t.boolean("reference_frames", d.reference_frames),
        reference_delay_s=t.number("reference_delay_s", d.reference_delay_s, positive=True,
                                   maximum=10.0, unit="s"),
        dark_frame=t.boolean("dark_frame", d.dark_frame),
        dark_delay_s=t.number("dark_delay_s", d.dark_delay_s, positive=True, maximum=10.0, unit="s"),
        camera_exposure_s=t.number("camera_exposure_s", d.camera_exposure_s, positive=True,
                                   maximum=1.0, unit="s"),
        camera_lead_s=t.number("camera_lead_s", d.camera_lead_s, minimum=0.0, maximum=1.0, unit="s"),
        frame_timeout_s=t.number("frame_timeout_s", d.frame_timeout_s, positive=True,
                                 maximum=600.0, unit="s"),
        probe_level_channel=t.string("probe_level_channel", ""),
    )
    t.done()
    if im.camera_exposure_s < im.camera_lead_s + im.probe_pulse_s:
        raise t.fail("camera_exposure_s", im.camera_exposure_s,
                     f"at least camera_lead_s + probe_pulse_s = "
                     f"{im.camera_lead_s + im.probe_pulse_s:g} s so the exposure covers the probe")
    if im.exposure_separation_s <= im.camera_exposure_s:
        raise t.fail("exposure_separation_s", im.exposure_separation_s,
                     f"more than camera_exposure_s = {im.camera_exposure_s:g} s (exposures overlap)")
    for key in ("reference_delay_s", "dark_delay_s"):
        if getattr(im, key) <= im.camera_exposure_s:
            raise t.fail(key, getattr(im, key),
                         f"more than camera_exposure_s = {im.camera_exposure_s:g} s")
    if im.camera_lead_s >= im.tof_s:
        raise t.fail("camera_lead_s", im.camera_lead_s, f"less than tof_s = {im.tof_s:g} s")
    return im


def _microwave(t: Table, cal: MicrowaveCalibration | None, needed: set[str],
               imaging: ImagingTimings) -> MicrowavePlan:
    origin: dict[str, str] = {}

    def pick(tab: Table, key: str, cal_value: float | None, **bounds: Any) -> float:
        if tab.has(key):
            origin[tab.name(key)] = "plan"
            return tab.number(key, **bounds)
        if cal_value is None:
            raise PlanError(f"{tab.source}: missing field {tab.name(key)}: not in the plan and no "
                            "calibration record was given")
        origin[tab.name(key)] = "calibration"
        return cal_value

    freq = pick(t, "frequency_hz", cal.frequency_hz if cal else None, positive=True, unit="Hz")
    power = pick(t, "power_dbm", cal.power_dbm if cal else None, unit="dBm")
    start = t.number("pulse_start_s", 100e-6, minimum=0.0, unit="s")
    axes = {"z": AxisPulse(0.0, 0.0)}
    for ax in ("x", "y"):
        sub = t.table(ax)
        cal_ax: AxisPulse | None = getattr(cal, ax) if cal else None
        if ax not in needed and not sub.data and cal_ax is None:
            sub.done()
            continue
        axes[ax] = AxisPulse(
            pick(sub, "phase_deg", cal_ax.phase_deg if cal_ax else None,
                 minimum=-720, maximum=720, unit="deg"),
            pick(sub, "pulse_s", cal_ax.pulse_s if cal_ax else None, positive=True, unit="s"))
        sub.done()
        end = start + axes[ax].pulse_s
        if end > imaging.tof_s - imaging.camera_lead_s:
            raise PlanError(f"{t.source}: microwave.{ax}: pulse from {start:g} s to {end:g} s "
                            f"(pulse_start_s + pulse_s) overlaps the first exposure at "
                            f"{imaging.tof_s - imaging.camera_lead_s:g} s; expected it to end before")
    t.done()
    return MicrowavePlan(freq, power, start, axes, origin, cal.record if cal else "")


def parse_plan(text: str, source: str = "<plan>",
               calibration: MicrowaveCalibration | None = None) -> RunPlan:
    """Validate TOML text as a run plan; ``source`` names it in errors. With a ``[scan]`` table,
    every point's plan is validated too (``plan.point_plans``)."""
    doc = parse_toml(text, source, PlanError)
    if "scan" not in doc:
        return _parse_document(doc, source, calibration, text)
    scan = parse_scan(doc["scan"], source, PlanError)
    base = _parse_document({k: v for k, v in doc.items() if k != "scan"}, source, calibration, text)
    spv = base.n_shots
    if spv % len(base.cycle):
        raise PlanError(f"{source}: run.shots = {spv}: with a [scan], expected a multiple of the "
                        f"direction cycle ({len(base.cycle)} shots) per visit, or run.cycles")
    points: list[RunPlan] = []
    for p in scan.points:
        values = dict(zip(scan.fields, p.values))
        try:
            pdoc = apply_point(doc, values, base_frequency_hz=base.microwave.frequency_hz)
        except KeyError as exc:
            raise PlanError(f"{source}: scan: no [[steps]] entry named {exc.args[0]!r}; expected "
                            f"steps.<name>.<field> to name a step of the plan") from None
        try:
            points.append(_parse_document(pdoc, source, calibration, ""))
        except PlanError as exc:
            shown = ", ".join(f"{k} = {v!r}" for k, v in values.items())
            raise PlanError(f"scan point {p.number} ({shown}): {exc}") from None
    for pp in points:
        if pp.imaging.frame_names != base.imaging.frame_names or \
                pp.imaging.camera_exposure_s != base.imaging.camera_exposure_s:
            raise PlanError(f"{source}: scan: the frames and the camera exposure are the same "
                            f"for every point (the camera is set up once per run)")
    return dataclasses.replace(base, scan=scan, point_plans=tuple(points),
                               n_shots=spv * len(scan.visits), shots_per_visit=spv)


def _parse_document(doc: dict[str, Any], source: str, calibration: MicrowaveCalibration | None,
                    text: str) -> RunPlan:
    top = Table(doc, source, "", PlanError)
    name = top.string("name", Path(source).stem or "plan")
    run = top.table("run", required=True)
    state = _state(top.table("state"))
    cycle = _cycle(top.table("directions"))
    if run.has("shots") == run.has("cycles"):
        raise PlanError(f"{source}: run: expected exactly one of run.shots or run.cycles, got "
                        + ("both" if run.has("shots") else "neither"))
    if run.has("shots"):
        n_shots = run.integer("shots", minimum=1, maximum=10_000_000)
    else:
        n_shots = run.integer("cycles", minimum=1, maximum=10_000_000) * len(cycle)
    period = run.number("min_shot_period_s", 0.0, minimum=0.0, maximum=3600.0, unit="s")
    run.done()
    imaging = _imaging(top.table("imaging"))
    needed = {d for d in cycle.directions if d != "z"}
    microwave = _microwave(top.table("microwave"), calibration, needed, imaging)
    r = top.table("retry")
    retry = RetryPolicy(r.integer("max_attempts", 3, minimum=1, maximum=100),
                        r.integer("reconnect_attempts", 2, minimum=0, maximum=100),
                        r.number("reconnect_delay_s", 1.0, minimum=0.0, maximum=600.0, unit="s"),
                        r.string("on_exhausted", "pause", choices=ON_EXHAUSTED))
    r.done()
    steps = parse_steps(top.raw("steps", None), source, PlanError)
    top.done()
    return RunPlan(name, state, cycle, n_shots, imaging, microwave, retry, period, source, text,
                   steps)


def load_plan(path: str | Path, calibration: MicrowaveCalibration | None = None) -> RunPlan:
    """Read and validate a run plan file (TOML)."""
    return parse_plan(read_text(path, PlanError), str(path), calibration)


def with_overrides(text: str, source: str, *, shots: int | None = None, state: str | None = None) -> str:
    """The plan's TOML text with ``run.shots`` and/or ``state.kind`` replaced (validated later by
    :func:`parse_plan`); a coherent state drops ``squeezing_dB``. Written by a TOML library."""
    if shots is None and state is None:
        return text
    data = parse_toml(text, source, PlanError)
    if shots is not None:
        run = dict(data.get("run", {}))
        run.pop("cycles", None)
        run["shots"] = shots
        data["run"] = run
    if state is not None:
        st = dict(data.get("state", {}))
        st["kind"] = state
        if state == "coherent":
            st.pop("squeezing_dB", None)
        data["state"] = st
    return tomli_w.dumps(data)


def build_plan(data: Mapping[str, Any], source: str = "<plan>",
               calibration: MicrowaveCalibration | None = None) -> RunPlan:
    """A plan from its tables as data (``{"run": {"shots": 30}, "state": {...}, ...}``), validated
    exactly as a plan file; the run file stores the TOML that tomli-w writes for it."""
    try:
        text = tomli_w.dumps(dict(data))
    except (TypeError, ValueError) as exc:
        raise PlanError(f"{source}: cannot be written as TOML: {exc}") from None
    return parse_plan(text, source, calibration)
