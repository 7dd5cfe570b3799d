"""Calibration records: every constant the analysis and the sequencer use, with uncertainty,
unit, date and origin; plain TOML on disk, validated on load, JSON in every run file.

File layout (TOML)::

    id = "virtual-lab-2026-11-24"
    created_utc = "2026-11-24T21:00:00Z"
    [microwave]                       # what sequences.plan.MicrowaveCalibration needs
    frequency_hz = 6.834682611e9
    power_dbm = -10.0
    rabi_frequency_hz = 2000.0        # at power_dbm
    x = { phase_deg = 90.0, pulse_s = 1.25e-4 }
    y = { phase_deg = 0.0, pulse_s = 1.25e-4 }
    [imaging]                         # every field of analysis.imaging.ImagingCalibration
    alpha = 1.4706
    ...
    [uncertainty.imaging]             # one standard error per fitted value (same units)
    alpha = 0.01
    [origin.imaging.alpha]            # when and how each value was measured
    date = "2026-11-24T21:00:00Z"
    source = "steerlab calibrate reinaudi (virtual lab, seed 3, 240 shots)"

The [microwave] and [imaging] tables are the ones a lab configuration's ``[calibration]`` reads.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from analysis.imaging import CalibrationError, ImagingCalibration
from sequences.plan import MicrowaveCalibration, PlanError
from sequences.tomlfields import FieldError, parse_toml, read_text

UNITS: dict[str, str] = {
    "frequency_hz": "Hz", "power_dbm": "dBm", "rabi_frequency_hz": "Hz", "x.phase_deg": "deg",
    "x.pulse_s": "s", "y.phase_deg": "deg", "y.pulse_s": "s", "camera_pixel_size_m": "m",
    "magnification": "", "alpha": "", "isat_counts": "counts/pixel/pulse", "wavelength_m": "m",
    "detectivity_1": "", "detectivity_2": "", "projection_noise_slope": "",
    "psf_sigma_x_px": "px", "psf_sigma_y_px": "px", "sigma_blur_px": "px",
    "detection_noise_1_atoms": "atoms", "detection_noise_2_atoms": "atoms",
    "saturation_counts": "counts"}


class RecordError(FieldError):
    """A calibration record is invalid: names the file, the field, the value and what was expected."""


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class CalibrationRecord:
    """Values by section ('microwave', 'imaging'), with uncertainties and origins."""

    id: str
    microwave: dict[str, Any]
    imaging: dict[str, float]
    uncertainty: dict[str, dict[str, float]] = field(default_factory=dict)
    origin: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    created_utc: str = field(default_factory=utc_now)
    source: str = ""

    def __post_init__(self) -> None:
        self.imaging_calibration()            # validates
        self.microwave_calibration()

    def imaging_calibration(self) -> ImagingCalibration:
        try:
            return ImagingCalibration.from_dict(self.imaging, source=f"{self.source or self.id}: imaging")
        except CalibrationError as exc:
            raise RecordError(str(exc)) from None

    def microwave_calibration(self) -> MicrowaveCalibration:
        mw = {k: v for k, v in self.microwave.items() if k != "rabi_frequency_hz"}
        try:
            return MicrowaveCalibration.from_mapping({"record": self.id, **mw},
                                                     f"{self.source or self.id}: microwave")
        except PlanError as exc:
            raise RecordError(str(exc)) from None

    def set(self, section: str, name: str, value: float, uncertainty: float, source: str) -> None:
        """Update one value (e.g. 'imaging', 'alpha') with its uncertainty and origin; revalidates."""
        target: dict[str, Any] = self.microwave if section == "microwave" else self.imaging
        if "." in name:
            axis, key = name.split(".", 1)
            target[axis] = dict(target[axis], **{key: float(value)})
        else:
            target[name] = float(value)
        self.uncertainty.setdefault(section, {})[name] = float(uncertainty)
        self.origin.setdefault(section, {})[name] = {"date": utc_now(), "source": source}
        self.__post_init__()

    def to_json_dict(self) -> dict[str, Any]:
        """What a run file embeds."""
        return {"id": self.id, "created_utc": self.created_utc, "microwave": self.microwave,
                "imaging": self.imaging, "uncertainty": self.uncertainty, "origin": self.origin,
                "units": UNITS}

    def to_toml(self) -> str:
        lines = [f"id = {json.dumps(self.id)}", f"created_utc = {json.dumps(self.created_utc)}", "",
                 "[microwave]"]
        for k, v in self.microwave.items():
            if isinstance(v, dict):
                inner = ", ".join(f"{ik} = {_toml_value(iv)}" for ik, iv in v.items())
                lines.append(f"{k} = {{ {inner} }}")
            else:
                lines.append(f"{k} = {_toml_value(v)}")
        lines += ["", "[imaging]"] + [f"{k} = {_toml_value(v)}" for k, v in self.imaging.items()]
        for section, values in self.uncertainty.items():
            lines += ["", f"[uncertainty.{section}]"]
            lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in values.items()]
        for section, names in self.origin.items():
            for name, info in names.items():
                lines += ["", f"[origin.{section}.{json.dumps(name)}]"]
                lines += [f"{k} = {json.dumps(v)}" for k, v in info.items()]
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(self.to_toml(), encoding="utf-8")
        return p


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if not math.isfinite(float(v)):
            raise RecordError(f"cannot write a non-finite value {v!r}")
        return repr(float(v)) if isinstance(v, float) else str(v)
    return json.dumps(v)


def _section(data: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise RecordError(f"{source}: [{key}] = {value!r}: expected a table")
    return dict(value)


def parse_record(text: str, source: str = "<record>") -> CalibrationRecord:
    """Validate TOML text as a calibration record."""
    data = parse_toml(text, source, RecordError)
    known = {"id", "created_utc", "microwave", "imaging", "uncertainty", "origin"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecordError(f"{source}: unknown field(s) {unknown}; expected {sorted(known)}")
    ident = data.get("id", "")
    if not isinstance(ident, str) or not ident:
        raise RecordError(f"{source}: id = {ident!r}: expected a non-empty string")
    unc = data.get("uncertainty", {})
    if not isinstance(unc, dict):
        raise RecordError(f"{source}: [uncertainty] = {unc!r}: expected a table")
    for section, values in unc.items():
        if not isinstance(values, dict):
            raise RecordError(f"{source}: uncertainty.{section} = {values!r}: expected a table")
        for name, v in values.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0 and math.isfinite(v)):
                raise RecordError(f"{source}: uncertainty.{section}.{name} = {v!r}: expected a finite "
                                  f"number >= 0")
    return CalibrationRecord(ident, _section(data, "microwave", source), _section(data, "imaging", source),
                             {k: dict(v) for k, v in unc.items()}, dict(data.get("origin", {})),
                             str(data.get("created_utc", "")), source)


def load_record(path: str | Path) -> CalibrationRecord:
    """Read and validate a calibration record file."""
    return parse_record(read_text(path, RecordError), str(path))
