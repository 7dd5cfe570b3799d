"""The lab configuration: which instruments, where, how the sequencer drives them, the calibration
the analysis uses, the live monitor's regions and where runs are written.

One TOML file (``configs/virtual-lab.toml``, ``configs/real-lab.template.toml``; fields and units in
docs/running.md). Every error names the file, the field, the value and what was expected
(:class:`LabConfigError`). Relative paths in the file are relative to the file's directory.
Run files are only ever written inside ``lab.data_dir`` (:meth:`LabConfig.output_path`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from analysis.geometries import Split
from analysis.imaging import CalibrationError, ImagingCalibration, ImagingUncertainty
from calibration.record import RecordError, load_record
from drivers.registry import available
from sequences.instruments import SequencerConfig
from sequences.plan import MicrowaveCalibration, PlanError
from sequences.tomlfields import FieldError, Table, parse_toml, read_text


class LabConfigError(FieldError):
    """The lab configuration is invalid: names the file, the field, the value and what was expected."""


KINDS = ("virtual", "real")
CAMERA_KINDS = ("virtual", "genicam", "pylon")
COMPRESSIONS = ("none", "blosc-lz4")


@dataclass(frozen=True)
class CameraSettings:
    """Camera selection: the virtual lab's camera, a GenICam device through .cti producers, or
    a Basler camera through pylon (``image_dir``: the image files of pylon's camera emulator)."""

    kind: str = "virtual"
    cti: tuple[str, ...] = ()
    serial_number: str = ""
    timeout_s: float = 5.0
    image_dir: str = ""

    def options(self) -> dict[str, Any]:
        """The keyword arguments of the camera factory (drivers/registry.py) for this kind."""
        out: dict[str, Any] = {"serial_number": self.serial_number or None}
        if self.cti or self.kind == "genicam":
            out["cti_files"] = list(self.cti)
        if self.image_dir:
            out["image_dir"] = self.image_dir
        return out


@dataclass(frozen=True)
class MonitorSettings:
    """The live monitor: the region split shown first, the scans, the warm-up and references.

    ``split_axis``/``split_position_px``/``gap_px``: the configured split (geometry frame: pixels
    from the |2> cloud centre). ``scan_gap_px``: gap of the splitting-ratio scan;
    ``gap_widths_px``: widths of the gap-width scan at ``split_position_px``.
    ``reference_basis``: optimal-reference basis size (0: each shot's own references).
    """

    split_axis: str = "x"
    split_position_px: float = 0.0
    gap_px: float = 1.0
    scan_gap_px: float = 1.0
    gap_widths_px: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
    warmup_shots: int = 20
    reference_basis: int = 0
    confidence: float = 0.95

    @property
    def split(self) -> Split:
        return Split(self.split_axis, self.split_position_px, self.gap_px)


@dataclass(frozen=True)
class LabConfig:
    """A validated lab configuration (see the module docstring)."""

    source: str
    kind: str
    name: str
    data_dir: Path
    microwave_address: str
    microwave_timeout_s: float
    card_address: str
    card_timeout_s: float
    camera: CameraSettings
    sequencer: SequencerConfig
    microwave_calibration: MicrowaveCalibration
    imaging_calibration: ImagingCalibration
    calibration_record: Mapping[str, Any]
    monitor: MonitorSettings
    compression: str = "blosc-lz4"
    fsync: bool = False
    virtual_lab: Mapping[str, Any] = field(default_factory=dict)
    text: str = ""
    microwave_kind: str = "sma100b"      # an entry point of steerlab.microwave_sources
    card_kind: str = "prawndo"           # an entry point of steerlab.timing_cards
    calibration_plans: CalibrationPlans = field(default_factory=lambda: CalibrationPlans())

    def output_path(self, name: str | Path | None, *, default_stem: str = "run", create: bool = True) -> Path:
        """Where a run file goes: ``name`` resolved inside ``data_dir`` (created if missing and
        ``create``).

        Relative names are relative to ``data_dir``; absolute ones must lie inside it. Raises
        LabConfigError for a path that escapes ``data_dir`` (``..``, another directory, a symlink
        pointing out) or that is not an ``.h5`` file name.
        """
        root = self.data_dir.resolve()
        if name is None or str(name) == "":
            from datetime import datetime, timezone
            stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
            name = f"{default_stem}-{stamp}.h5"
        p = Path(name)
        candidate = p if p.is_absolute() else root / p
        resolved = candidate.resolve()
        if resolved != root and root not in resolved.parents:
            raise LabConfigError(f"{self.source}: output {str(name)!r} resolves to {resolved}, outside "
                                 f"the data directory {root} (lab.data_dir); run files are only "
                                 f"written inside it")
        if resolved.suffix != ".h5":
            raise LabConfigError(f"{self.source}: output {str(name)!r}: expected a file name ending in .h5")
        if create:
            resolved.parent.mkdir(parents=True, exist_ok=True)
        return resolved

    @property
    def imaging_uncertainty(self) -> ImagingUncertainty:
        """The blurs' standard errors from the calibration record (``[uncertainty.imaging]`` of a
        record file, or ``[calibration.uncertainty.imaging]`` inline); none: known exactly."""
        return ImagingUncertainty.from_record(self.calibration_record.get("uncertainty"), source=self.source)

    def as_json_dict(self) -> dict[str, Any]:
        """What the run file records about the configuration (the TOML text and key facts)."""
        return {"source": self.source, "kind": self.kind, "name": self.name, "toml": self.text}


@dataclass(frozen=True)
class CalibrationPlans:
    """What the lab provides for the calibration procedures that run as plans
    (``[calibration_plans]``, docs/calibration.md): ``blast_channel``, a user channel whose pulse
    of ``blast_s`` (s) during the time of flight removes the atoms (atom-free shots);
    ``atom_number_field``, the plan field that sets the atom number (the virtual lab:
    ``state.atom_number``; a real lab: e.g. a user step's duration) and its ``atom_number_values``."""

    blast_channel: str = ""
    blast_s: float = 300e-6
    atom_number_field: str = ""
    atom_number_values: tuple[float, ...] = ()
    probe_levels: tuple[str, ...] = ()
    """The probe intensities ``calibrate reinaudi`` scans on a lab with a digital card: user
    channels that switch the probe AOM to another level (``imaging.probe_level_channel``), "" for
    the normal probe; at least 3, intensities spanning about 0.3 .. 4 I_sat."""
    atom_number_step: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The user step whose duration ``atom_number_field`` (``steps.<name>.duration_s``) scans, as a
    plan's [[steps]] entry without name and duration (e.g. ``{channel = "load", at = "trap_off",
    offset_s = -0.1}``); empty when the field is not a step's."""


def _calibration_plans(t: Table, kind: str, channels: Mapping[str, int]) -> CalibrationPlans:
    from sequences.scan import field_unit
    from sequences.steps import BUILT_IN_CHANNELS
    blast = t.string("blast_channel", "")
    if blast and (blast not in channels or blast in BUILT_IN_CHANNELS):
        raise t.fail("blast_channel", blast, "a user channel of [timing_card.channels]")
    blast_s = t.number("blast_s", 300e-6, positive=True, maximum=0.1, unit="s")
    default_field = "state.atom_number" if kind == "virtual" else ""
    fld = t.string("atom_number_field", default_field)
    if fld and (field_unit(fld) is None or (kind != "virtual" and fld.startswith("state."))):
        raise t.fail("atom_number_field", fld, "a scannable plan field that sets the atom number"
                     + (" on this real lab (a user step's duration, steps.<name>.duration_s)"
                        if kind != "virtual" else ""))
    raw = t.raw("atom_number_values", [100, 300, 500, 800, 1200] if fld == "state.atom_number"
                else [])
    if not isinstance(raw, list) or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                        for v in raw) or (fld and len(raw) < 3):
        raise t.fail("atom_number_values", raw, "a list of at least 3 numbers (values of "
                     "atom_number_field)")
    levels = t.raw("probe_levels", [])
    if not isinstance(levels, list) or not all(isinstance(v, str) for v in levels) or (
            levels and (len(levels) < 3 or len(set(levels)) != len(levels)
                        or any(v and (v not in channels or v in BUILT_IN_CHANNELS) for v in levels))):
        raise t.fail("probe_levels", levels, "a list of at least 3 different user channels of "
                     "[timing_card.channels] that set the probe intensity (\"\" for the normal probe)")
    step = t.raw("atom_number_step", {})
    if not isinstance(step, Mapping) or any(k in step for k in ("name", "duration_s")):
        raise t.fail("atom_number_step", step, "a table like a plan's [[steps]] entry without name "
                     "and duration_s (channel, at, offset_s)")
    if step and not (fld.startswith("steps.") and fld.endswith(".duration_s")):
        raise t.fail("atom_number_step", dict(step), "no step unless atom_number_field is "
                     "steps.<name>.duration_s")
    t.done()
    return CalibrationPlans(blast, blast_s, fld, tuple(float(v) for v in raw), tuple(levels), dict(step))


def _path(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _channels(t: Table) -> tuple[dict[str, int], tuple[str, ...]]:
    """``name = bit`` or ``name = { bit = 6, idle = "high" }`` (a user channel that idles high,
    i.e. active low: a step drives it low); returns the map and the idle-high channels."""
    out: dict[str, int] = {}
    idle_high: list[str] = []
    for key in list(t.data):
        if isinstance(t.data[key], dict):
            sub = t.table(key)
            out[key] = sub.integer("bit", minimum=0, maximum=15)
            if sub.string("idle", "low", choices=("low", "high")) == "high":
                if key in ("mw_gate", "probe", "camera", "tof_marker"):
                    raise sub.fail("idle", "high", "'low' for the built-in imaging channels")
                idle_high.append(key)
            sub.done()
        else:
            out[key] = t.integer(key, minimum=0, maximum=15)
    t.done()
    for needed in ("mw_gate", "probe", "camera"):
        if needed not in out:
            raise t.fail(needed, None, "an output bit 0..15 (channels mw_gate, probe and camera are required)")
    bits = list(out.values())
    if len(set(bits)) != len(bits):
        raise t.fail("", out, "a different output bit for every channel")
    return out, tuple(idle_high)


def _camera(t: Table, base: Path, kind: str) -> tuple[CameraSettings, dict[str, Any]]:
    ckind = t.string("kind", "virtual" if kind == "virtual" else "genicam",
                     choices=tuple(dict.fromkeys(CAMERA_KINDS + tuple(available("camera")))))
    if kind == "virtual" and ckind != "virtual":
        raise t.fail("kind", ckind, "'virtual' in a virtual lab (lab.kind = 'virtual')")
    cti_raw = t.raw("cti", [])
    if isinstance(cti_raw, str):
        cti_raw = [cti_raw]
    if not isinstance(cti_raw, list) or not all(isinstance(c, str) and c for c in cti_raw):
        raise t.fail("cti", cti_raw, "a list of .cti file paths")
    if ckind == "genicam" and not cti_raw:
        raise t.fail("cti", cti_raw, "at least one GenTL producer (.cti) for a GenICam camera")
    for c in cti_raw:
        if not _path(base, c).is_file():
            raise t.fail("cti", c, f"an existing GenTL producer file (.cti); {_path(base, c)} is not a file")
    image_dir = t.string("image_dir", "")
    if image_dir and ckind != "pylon":
        raise t.fail("image_dir", image_dir, "no image_dir (only pylon's camera emulator reads "
                     "image files: kind = 'pylon')")
    if image_dir and not _path(base, image_dir).is_dir():
        raise t.fail("image_dir", image_dir, f"an existing directory; {_path(base, image_dir)} is not one")
    settings = CameraSettings(ckind, tuple(str(_path(base, c)) for c in cti_raw),
                              t.string("serial_number", ""),
                              t.number("timeout_s", 5.0, minimum=0.01, maximum=600.0, unit="s"),
                              str(_path(base, image_dir)) if image_dir else "")
    roi = {"camera_width": t.integer("width", 0, minimum=0, maximum=100_000),
           "camera_height": t.integer("height", 0, minimum=0, maximum=100_000),
           "camera_offset_x": t.integer("offset_x", 0, minimum=0, maximum=100_000),
           "camera_offset_y": t.integer("offset_y", 0, minimum=0, maximum=100_000),
           "camera_trigger_line": t.string("trigger_line", "Line0"),
           "camera_exposure_mode": t.string("exposure_mode", "timed", choices=("timed", "trigger_width"))}
    fmt = t.string("pixel_format", "")
    roi["camera_pixel_format"] = fmt or None
    t.done()
    return settings, roi


def _monitor(t: Table) -> MonitorSettings:
    widths_raw = t.raw("gap_widths_px", list(MonitorSettings.gap_widths_px))
    if (not isinstance(widths_raw, list) or not widths_raw
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w)
                       and w >= 0 for w in widths_raw)):
        raise t.fail("gap_widths_px", widths_raw, "a non-empty list of gap widths >= 0 (px)")
    m = MonitorSettings(
        split_axis=t.string("split_axis", "x", choices=("x", "y")),
        split_position_px=t.number("split_position_px", 0.0, minimum=-1e4, maximum=1e4, unit="px"),
        gap_px=t.number("gap_px", 1.0, minimum=0.0, maximum=1e3, unit="px"),
        scan_gap_px=t.number("scan_gap_px", 1.0, minimum=0.0, maximum=1e3, unit="px"),
        gap_widths_px=tuple(float(w) for w in widths_raw),
        warmup_shots=t.integer("warmup_shots", 20, minimum=3, maximum=100_000),
        reference_basis=t.integer("reference_basis", 0, minimum=0, maximum=10_000),
        confidence=t.number("confidence", 0.95, minimum=0.5, maximum=0.999999))
    t.done()
    return m


def _calibration(t: Table, base: Path, source: str) -> tuple[MicrowaveCalibration, ImagingCalibration,
                                                              dict[str, Any]]:
    """[calibration]: ``record = "file.toml"`` (a calibration record) or inline microwave/imaging tables."""
    if t.has("record"):
        rec_path = _path(base, t.string("record"))
        t.done()
        try:
            rec = load_record(rec_path)
        except RecordError as exc:
            raise LabConfigError(f"{source}: calibration.record: {exc}") from None
        return rec.microwave_calibration(), rec.imaging_calibration(), rec.to_json_dict() | {"source": str(rec_path)}
    mw_raw = t.raw("microwave", None)
    im_raw = t.raw("imaging", None)
    unc_raw = t.raw("uncertainty", None)
    ident = t.string("id", "")
    t.done()
    if not isinstance(mw_raw, Mapping):
        raise t.fail("microwave", mw_raw, "a table (frequency_hz, power_dbm, x, y)")
    if not isinstance(im_raw, Mapping):
        raise t.fail("imaging", im_raw, "a table of imaging constants (analysis.imaging.ImagingCalibration)")
    try:
        mw = MicrowaveCalibration.from_mapping({"record": ident, **mw_raw}, f"{source}: calibration.microwave")
    except PlanError as exc:
        raise LabConfigError(str(exc)) from None
    try:
        im = ImagingCalibration.from_dict(im_raw, source=f"{source}: calibration.imaging")
    except CalibrationError as exc:
        raise LabConfigError(str(exc)) from None
    record: dict[str, Any] = {"id": ident, "source": source, "microwave": dict(mw_raw), "imaging": im.to_dict()}
    if unc_raw is not None:
        try:
            unc = ImagingUncertainty.from_record(unc_raw, source=f"{source}: calibration")
        except CalibrationError as exc:
            raise LabConfigError(str(exc)) from None
        record["uncertainty"] = {"imaging": {k: v for k, v in dataclasses.asdict(unc).items() if v}}
    return mw, im, record


def parse_lab_config(text: str, source: str = "<lab config>", *, base_dir: Path | None = None
                     ) -> LabConfig:
    """Validate TOML text as a lab configuration; relative paths are taken from ``base_dir``."""
    base = base_dir if base_dir is not None else Path(".")
    top = Table(parse_toml(text, source, LabConfigError), source, "", LabConfigError)
    lab = top.table("lab", required=True)
    kind = lab.string("kind", choices=KINDS)
    name = lab.string("name", kind + " lab")
    data_dir = _path(base, lab.string("data_dir", "runs"))
    lab.done()
    mw = top.table("microwave")
    mw_address = mw.string("address", "") if kind == "virtual" else mw.string("address")
    mw_timeout = mw.number("timeout_s", 2.0, minimum=0.01, maximum=600.0, unit="s")
    mw_kind = mw.string("kind", "sma100b", choices=tuple(available("microwave")))
    mw.done()
    card = top.table("timing_card")
    card_address = card.string("address", "") if kind == "virtual" else card.string("address")
    card_timeout = card.number("timeout_s", 2.0, minimum=0.01, maximum=600.0, unit="s")
    card_kind = card.string("kind", "prawndo", choices=tuple(available("timing_card")))
    channels, idle_high = _channels(card.table("channels", required=True))
    card.done()
    camera, roi = _camera(top.table("camera"), base, kind)
    seq = top.table("sequencer")
    seq_kw: dict[str, Any] = dict(
        start_mode=seq.string("start_mode", "software", choices=("software", "hardware")),
        verify_program=seq.boolean("verify_program", True),
        card_margin_s=seq.number("card_margin_s", 2.0, minimum=0.001, maximum=600.0, unit="s"),
        fetch_slice_s=seq.number("fetch_slice_s", 0.1, minimum=0.001, maximum=10.0, unit="s"),
        rf_off_at_end=seq.boolean("rf_off_at_end", True),
        allow_software_trigger=seq.boolean("allow_software_trigger", False),
        software_trigger_at=seq.string("software_trigger_at", "exposures",
                                       choices=("exposures", "program_end")))
    seq.done()
    virtual = dict(top.raw("virtual_lab", {})) if top.has("virtual_lab") else {}
    if kind == "real" and virtual:
        raise top.fail("virtual_lab", "...", "no [virtual_lab] table in a real lab's configuration")
    mwcal, imcal, record = _calibration(top.table("calibration", required=True), base, source)
    monitor = _monitor(top.table("monitor"))
    cal_plans = _calibration_plans(top.table("calibration_plans"), kind, channels)
    run = top.table("run")
    compression = run.string("compression", "blosc-lz4", choices=COMPRESSIONS)
    fsync = run.boolean("fsync", False)
    run.done()
    top.done()
    if (roi["camera_width"] == 0) != (roi["camera_height"] == 0):
        raise LabConfigError(f"{source}: camera.width and camera.height: give both (ROI in sensor "
                             f"pixels) or neither (the virtual lab's full frame)")
    if kind == "real" and roi["camera_width"] == 0:
        raise LabConfigError(f"{source}: camera.width/height: expected the ROI in sensor pixels for a "
                             f"real camera")
    try:
        sequencer = SequencerConfig(channels=channels, camera_width=max(1, roi["camera_width"]),
                                    camera_height=max(1, roi["camera_height"]),
                                    camera_offset_x=roi["camera_offset_x"],
                                    camera_offset_y=roi["camera_offset_y"],
                                    camera_pixel_format=roi["camera_pixel_format"],
                                    camera_trigger_line=roi["camera_trigger_line"],
                                    camera_exposure_mode=roi["camera_exposure_mode"],
                                    idle_high=idle_high,
                                    extra={"roi_from_lab": roi["camera_width"] == 0}, **seq_kw)
    except ValueError as exc:
        raise LabConfigError(f"{source}: sequencer: {exc}") from None
    return LabConfig(source=source, kind=kind, name=name, data_dir=data_dir,
                     microwave_address=mw_address, microwave_timeout_s=mw_timeout,
                     card_address=card_address, card_timeout_s=card_timeout, camera=camera,
                     sequencer=sequencer, microwave_calibration=mwcal, imaging_calibration=imcal,
                     calibration_record=record, monitor=monitor, compression=compression,
                     fsync=fsync, virtual_lab=virtual, text=text, microwave_kind=mw_kind,
                     card_kind=card_kind, calibration_plans=cal_plans)


def load_lab_config(path: str | Path) -> LabConfig:
    """Read and validate a lab configuration file."""
    p = Path(path)
    return parse_lab_config(read_text(p, LabConfigError), str(p), base_dir=p.resolve().parent)
