"""Calibration shots through plans: each acquisition is a (scan) plan run by the sequencer on the
instruments, virtual or real alike; the procedures (calibration/procedures.py) fit the frames.

- detection noise: shots with atoms (z), then atom-free ones: a step pulses the lab's push beam
  (``[calibration_plans] blast_channel``) during the time of flight;
- detectivity: a scan of the x pulse length over Rabi areas 0.2 .. pi - 0.2 (the record's Rabi
  frequency), coherent state, x shots;
- projection-noise slope: a scan of the field that sets the atom number
  (``[calibration_plans] atom_number_field``: ``state.atom_number`` on the virtual lab, a user
  step's duration on a real one), coherent state split equally (z shots).
What a lab lacks for a procedure is named in one line (:class:`CalibrationPlanError`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibration.procedures import (REGION_SHOTS, FrameStack, Result, detection_noise_from_frames,
                                    detectivity_areas, detectivity_from_frames,
                                    POINT_CLOUD_UM, projection_noise_from_frames, psf_from_frames, psf_from_noise,
                                    reinaudi_from_frames)
from calibration import fits
from calibration.record import CalibrationRecord
from sequences.control import RunState
from sequences.instruments import Instruments, SequencerConfig
from sequences.plan import build_plan
from sequences.publish import Overflow, ShotPublisher
from sequences.sequencer import Sequencer


class CalibrationPlanError(ValueError):
    """The lab does not provide what a procedure's plan needs (the message names the setting)."""


@dataclass
class PlanShots:
    """Runs calibration plans on ``instruments``; ``blast_channel``/``blast_s``,
    ``atom_number_field``/``atom_number_values``: what the lab provides (``[calibration_plans]``)."""

    instruments: Instruments
    config: SequencerConfig
    record: CalibrationRecord
    source: str = "lab configuration"
    blast_channel: str = ""
    blast_s: float = 300e-6
    atom_number_field: str = ""
    atom_number_values: Sequence[float] = ()
    progress: Callable[[str], None] | None = None
    atom_number_step: Mapping[str, Any] | None = None
    """The step (without name and duration) whose duration ``atom_number_field`` scans."""
    probe_levels: Sequence[str] = ()
    """User channels that set the probe intensity ("" the normal probe), for reinaudi on a real lab."""

    def run(self, name: str, shots: int, *, direction: str, scan: tuple[str, Sequence[Any]] | None = None,
            steps: Sequence[Mapping[str, Any]] = (), state: Mapping[str, Any] | None = None
            ) -> list[FrameStack]:
        """One plan: ``shots`` shots per scan point (one point without ``scan``) measuring
        ``direction``, coherent state; the frames of each point, in point order."""
        data: dict[str, Any] = {
            "name": f"calibration-{name}", "run": {"shots": shots},
            "state": {"kind": "coherent", "atom_number_sd": 0.0, **dict(state or {})},
            "directions": {"sequence": [direction]},
            "imaging": {"reference_delay_s": 5e-3, "dark_delay_s": 5e-3},
            "retry": {"on_exhausted": "abort"}}
        if steps:
            data["steps"] = [dict(s) for s in steps]
        if scan is not None:
            data["scan"] = {"axes": [{"field": scan[0], "values": list(scan[1])}]}
        plan = build_plan(data, f"calibration {name} plan", self.record.microwave_calibration())
        n_points = len(plan.point_plans) or 1
        pub = ShotPublisher()
        sub = pub.subscribe(name, maxsize=plan.n_shots * 4 + 8, overflow=Overflow.BLOCK)
        seq = Sequencer(plan, self.instruments, self.config, publisher=pub)
        seq.prepare()
        final = seq.run()
        if final is not RunState.COMPLETED:
            raise RuntimeError(f"calibration {name}: run ended {final.value}: {seq.control.error or seq.error}")
        groups: list[list[Any]] = [[] for _ in range(n_points)]
        for s in sub:
            if s.is_ok and s.frames is not None:
                groups[max(int(s.settings.get("scan.point", 0)), 0)].append(s.frames)
        if self.progress:
            self.progress(f"{name}: {plan.n_shots} shots in {n_points} point(s)")
        return [np.stack(g) for g in groups]

    def _blast_step(self, procedure: str) -> dict[str, Any]:
        if not self.blast_channel:
            raise CalibrationPlanError(
                f"{self.source}: [calibration_plans] blast_channel: missing; {procedure} needs "
                f"atom-free shots: name the user channel of the push beam (resonant light that "
                f"removes the atoms during the time of flight)")
        return {"name": "blast", "channel": self.blast_channel, "at": "trap_off",
                "offset_s": 0.0, "duration_s": self.blast_s}

    def detection_noise(self, plot: Any = None, *, shots: int = 120) -> Result:
        """Atom-free shots (the push beam) through the instruments; the clouds' regions from
        REGION_SHOTS shots with atoms."""
        blast = self._blast_step("detection-noise")
        with_atoms = self.run("detection-noise-atoms", REGION_SHOTS, direction="z")[0]
        atom_free = self.run("detection-noise-empty", shots, direction="z", steps=[blast])[0]
        return detection_noise_from_frames(with_atoms, atom_free, self.record, plot)

    def detectivity(self, plot: Any = None, *, points: int = 12, shots: int = 6) -> Result:
        """Coherent states rotated to populations 0.1 .. 0.9 by x pulses of those areas."""
        mw = self.record.microwave
        f = float(mw.get("rabi_frequency_hz", 1.0 / (4 * float(mw["x"]["pulse_s"]))))
        areas = detectivity_areas(points)
        lengths = [float(a) / (2 * math.pi * f) for a in areas]
        frames = self.run("detectivity", shots, direction="x", scan=("microwave.x.pulse_s", lengths))
        return detectivity_from_frames(frames, areas, self.record, plot)

    def reinaudi(self, plot: Any = None, *, saturations: Sequence[float] = (0.3, 0.6, 1.0, 2.0, 4.0),
                 shots: int = 12) -> Result:
        """The same clouds (z shots) at several probe intensities: on a lab, a scan of
        ``imaging.probe_level_channel`` over ``probe_levels`` (the channels that switch the probe
        AOM's level; their intensities are measured from the reference frames); on the virtual
        lab without them, a scan of its ``state.probe_saturation`` over ``saturations``."""
        if self.probe_levels:
            groups = self.run("reinaudi", shots, direction="z",
                              scan=("imaging.probe_level_channel", list(self.probe_levels)))
            return reinaudi_from_frames(groups, None, self.record, plot)
        if self.instruments.state is None:
            raise CalibrationPlanError(
                f"{self.source}: [calibration_plans] probe_levels: missing; reinaudi needs the "
                f"probe at several intensities: name the user channels that switch the probe "
                f"AOM to other levels (at least 3, \"\" for the normal probe)")
        groups = self.run("reinaudi", shots, direction="z",
                          scan=("state.probe_saturation", [float(s) for s in saturations]))
        return reinaudi_from_frames(groups, saturations, self.record, plot)

    def psf(self, plot: Any = None, *, shots: int = 40, noise_shots: int = 150) -> Result:
        """On the virtual lab: a point-like cloud (its ``state.cloud_half_width_um``), z shots.
        On a lab, which cannot prepare one: ``noise_shots`` z shots of its own clouds, the PSF
        from the atoms' shot-noise correlation (procedures.psf_from_noise). The recoil blur
        from the Joffe bound at the record's pixel size (50 us pulses, s = 1) either way."""
        cal = self.record.imaging_calibration()
        recoil = fits.joffe_recoil_sigma_px(2 * math.pi * 6.065e6, 1.0, 5.88e-3, 50e-6,
                                            cal.pixel_size_m)
        if self.instruments.state is None:
            frames = self.run("psf", noise_shots, direction="z")[0]
            return psf_from_noise(frames, self.record, plot, recoil_sigma_px=recoil)
        frames = self.run("psf", shots, direction="z",
                          state={"cloud_half_width_um": POINT_CLOUD_UM})[0]
        pixel_um = cal.pixel_size_m * 1e6
        return psf_from_frames(frames, self.record, plot,
                               cloud_rms_px=POINT_CLOUD_UM / math.sqrt(7) / pixel_um,
                               recoil_sigma_px=recoil)

    def projection_noise(self, plot: Any = None, *, shots: int = 150) -> Result:
        """Coherent states split equally (z shots) at several atom numbers."""
        if not self.atom_number_field:
            raise CalibrationPlanError(
                f"{self.source}: [calibration_plans] atom_number_field: missing; projection-noise "
                f"needs the plan field that sets the atom number on this lab (e.g. "
                f"steps.<loading>.duration_s) and atom_number_values")
        values = [int(v) if self.atom_number_field == "state.atom_number" else v
                  for v in self.atom_number_values]
        steps: list[dict[str, Any]] = []
        if self.atom_number_step:
            name = self.atom_number_field.split(".")[1]
            steps.append({"name": name, **dict(self.atom_number_step), "duration_s": values[0]})
        groups = self.run("projection-noise", shots, direction="z",
                          scan=(self.atom_number_field, values), steps=steps)
        return projection_noise_from_frames(groups, self.record, plot)
