"""The one place that builds the lab: the virtual lab's configuration and the instruments' drivers.

Used by the run session, `steerlab calibrate` and the pre-run checks, so that the configured
timeouts, ROI rules and virtual-lab settings are the same everywhere. On a virtual lab the
simulated instruments are started here and their addresses handed to the real drivers.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

from app.labconfig import LabConfig
from sequences.instruments import Instruments, SequencerConfig
from sequences.plan import RunPlan, StateSpec


class LabBuildError(ValueError):
    """The lab cannot be built from this configuration (names file, table, value, expectation)."""


def virtual_lab_settings(config: LabConfig, plan: RunPlan, state: StateSpec | None = None
                         ) -> dict[str, Any]:
    """The [virtual_lab] table with the plan's prepared state (or ``state``) applied (kind, N,
    its rms, squeezing)."""
    data = dict(config.virtual_lab)
    st = state or plan.state
    data.update(state=st.kind, atom_number=int(st.atom_number), atom_number_rms=float(st.atom_number_sd))
    if st.kind == "squeezed":
        data["squeezing_db"] = float(st.squeezing_dB)
    if st.probe_saturation is not None:       # the virtual lab's probe intensity (I/I_sat)
        imaging = data.get("imaging", {})
        data["imaging"] = dict(imaging if isinstance(imaging, dict) else {},
                               probe_saturation=float(st.probe_saturation))
    if st.cloud_half_width_um is not None:    # the virtual lab's cloud size (a point-like cloud)
        cloud = data.get("cloud", {})
        w = float(st.cloud_half_width_um)
        data["cloud"] = dict(cloud if isinstance(cloud, dict) else {}, half_width_um=(w, w),
                             growth_at_delay=(1.0, 1.0))
    data.setdefault("channels", dict(config.sequencer.channels))
    if config.calibration_plans.blast_channel:     # the virtual lab's push beam on that channel
        data.setdefault("blast_channel", config.calibration_plans.blast_channel)
    return data


def virtual_lab_config(config: LabConfig, plan: RunPlan) -> Any:
    """The validated VirtualLabConfig of a virtual lab running ``plan``.

    The table is checked twice: as written (values the plan overrides, such as ``atom_number``,
    must still be valid, never silently ignored) and with the plan's state applied.
    """
    from drivers.simulated.lab import VirtualLabConfig
    where = f"{config.source}: [virtual_lab]"
    try:
        raw = dict(config.virtual_lab)
        raw.setdefault("channels", dict(config.sequencer.channels))
        VirtualLabConfig.from_mapping(raw, config.source)
        return VirtualLabConfig.from_mapping(virtual_lab_settings(config, plan), config.source)
    except (ValueError, TypeError) as exc:
        text = str(exc)
        raise LabBuildError(text if text.startswith(config.source) else f"{where}: {text}") from None


def virtual_atoms(config: LabConfig, plan: RunPlan, seed: int = 0) -> Any:
    """The virtual lab's atoms as a calibration source (calibration.procedures.AtomSource)."""
    from drivers.simulated.atom_source import VirtualAtoms
    return VirtualAtoms(virtual_lab_config(config, plan).simulation, seed=seed)


def sequencer_config(config: LabConfig, lab: Any = None) -> SequencerConfig:
    """The sequencer's settings; a virtual lab without a configured ROI uses its whole frame."""
    sc = config.sequencer
    if sc.extra.get("roi_from_lab") and lab is not None:
        h, w = lab.config.frame_shape
        sc = dataclasses.replace(sc, camera_width=w, camera_height=h, camera_offset_x=0,
                                 camera_offset_y=0)
    return sc


@dataclass
class VirtualState:
    """The virtual lab's state preparation (``sequences.instruments.StatePreparer``): a scan
    point's ``[state]`` becomes the simulated atoms' state from the next shot on."""

    config: LabConfig
    plan: RunPlan
    virtual: Any

    def prepare_state(self, state: StateSpec) -> None:
        """Prepare ``state`` (kind, atom number and its rms, squeezing) for the following shots."""
        from drivers.simulated.lab import VirtualLabConfig
        data = virtual_lab_settings(self.config, self.plan, state)
        self.virtual.set_simulation(VirtualLabConfig.from_mapping(data, self.config.source).simulation)


@dataclass
class Lab:
    """Built instruments: the drivers, and the running virtual lab (None on a real lab)."""

    instruments: Instruments
    virtual: Any = None

    def close(self) -> list[str]:
        """Close every driver, then stop the virtual lab; returns the errors met (never raises)."""
        errors: list[str] = []
        inst = self.instruments
        for name, close in (("microwave", inst.microwave.close), ("timing_card", inst.card.close),
                            ("camera", inst.camera.close)):
            try:
                close()
            except Exception as exc:               # closing after a fault: report, go on
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
        if self.virtual is not None:
            try:
                self.virtual.stop()
            except Exception as exc:
                errors.append(f"virtual lab: {type(exc).__name__}: {exc}")
        return errors


def _with_patience(cls: Any, patience: Any) -> dict[str, Any]:
    """``{"patience": patience}`` if the driver class takes one (drivers/patience.py), else nothing."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}
    return {"patience": patience} if "patience" in params else {}


def open_lab(config: LabConfig, plan: RunPlan, seed: int = 0) -> Lab:
    """Start the virtual lab (if configured) and create the drivers with the configured timeouts.

    Every instrument kind is an entry point (drivers/registry.py), the shipped ones included. No
    driver is connected yet (the sequencer connects them). A virtual lab started here is stopped
    again if creating the drivers fails.
    """
    from drivers.patience import no_patience
    from drivers.registry import load
    virtual = None
    if config.kind == "virtual":
        from drivers.simulated.lab import VirtualLab
        virtual = VirtualLab(virtual_lab_config(config, plan), seed=seed, microwave=config.microwave_kind)
        virtual.start()
        mw_address, card_address, camera = virtual.microwave_address, virtual.card_address, virtual.camera
    else:
        mw_address, card_address = config.microwave_address, config.card_address
        camera = load("camera", config.camera.kind)(**config.camera.options())
    # on the virtual lab the drivers wait for the host's and the simulation's own lateness
    # (drivers/patience.py); a real lab keeps its configured timeouts exactly
    patience = virtual.lateness.patience if virtual is not None else no_patience
    try:
        mw_cls = load("microwave", config.microwave_kind)
        card_cls = load("timing_card", config.card_kind)
        inst = Instruments(mw_cls(mw_address, timeout_s=config.microwave_timeout_s,
                                  **_with_patience(mw_cls, patience)),
                           card_cls(card_address, timeout_s=config.card_timeout_s,
                                    **_with_patience(card_cls, patience)), camera,
                           VirtualState(config, plan, virtual) if virtual is not None else None)
    except BaseException:
        if virtual is not None:
            virtual.stop()
        raise
    return Lab(inst, virtual)
