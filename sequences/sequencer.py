"""The sequencer: runs a plan shot by shot on the instruments, without Qt.

Per shot: set the microwave phase for the direction, compile and load the shot's TTL program
(``imaging_program``), discard stale frames and arm the camera, start (or arm) the card, collect
the frames with a timeout, wait for the card to stop, read the settings back, publish a
``ShotRecord``. Between shots it obeys ``RunControl`` (pause, stop, abort).

Every shot's settings are verified (``sequences/verify.py``): after the shot the microwave
settings, its error queue, the card's status and program length and the camera's trigger, ROI and
exposure are read back and compared with the plan; a mismatch fails the shot (reason: each setting,
asked and read), the settings are re-applied and the slot retried, with the same budget and pause as
an instrument fault. An ``ok`` row always carries read-back settings that match the plan.

Faults: an instrument error (``DriverError``) fails the shot; the failed attempt is published
(recorded with its reason) and the *same slot* (same direction) is retried, after reconnecting the
instrument that failed, up to ``plan.retry.max_attempts`` attempts. Then the run pauses with the
error (or ends FAULTED if ``on_exhausted = "abort"``); RESUME reconnects and retries. Every attempt
gets a new run-wide ``index``, so no shot is published twice; every slot ends with exactly one ok
shot unless the run is stopped or aborted. A failing BLOCK consumer (the run writer) ends the run
FAULTED.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from drivers.camera_base import FrameTimeout
from drivers.errors import DriverError, ProtocolError
from drivers.patience import deadline_passed, no_patience
from drivers.pulse_program import CompiledProgram
from sequences.camera_check import (RunRefused, check_timing, choose_trigger, frame_id_gap,
                                    frame_spacing_mismatch)
from sequences.control import Directive, RunControl, RunState, Start
from sequences.imaging_program import check_channels, shot_program
from sequences.instruments import Instruments, SequencerConfig, flat_settings
from sequences.plan import RunPlan, Slot
from sequences.scan import shot_settings
from sequences.steps import check_programs, idle_word, program_lead_s
from sequences.publish import ConsumerFailed, ShotPublisher
from sequences.shot import Direction, ShotClock, ShotRecord
from sequences.verify import VERIFIED_CAMERA_KEYS, SettingsMismatch, check_shot

log = logging.getLogger(__name__)


class ShotFault(Exception):
    """An instrument fault during a shot: which instrument, at which step, the driver's error."""

    def __init__(self, instrument: str, step: str, error: BaseException) -> None:
        self.instrument = instrument
        self.step = step
        self.error = error
        super().__init__(f"{instrument}: {step}: {type(error).__name__}: {error}")


class ShotAborted(Exception):
    """The operator aborted during the shot."""


@dataclass(frozen=True)
class Progress:
    """After each published shot: counts and the record's key facts."""

    index: int
    slot: int
    direction: str
    status: str
    reason: str
    ok_shots: int
    failed_shots: int
    planned: int


ProgressListener = Callable[[Progress], None]


class Sequencer:
    """Runs ``plan`` on ``instruments``; publishes shots to ``publisher``; obeys ``control``."""

    def __init__(self, plan: RunPlan, instruments: Instruments, config: SequencerConfig, *,
                 publisher: ShotPublisher, control: RunControl | None = None) -> None:
        check_channels(config.channels)
        self.plan = plan
        self.inst = instruments
        self.config = config
        self.publisher = publisher
        self.control = control or RunControl()
        self.frame_names = plan.imaging.frame_names
        self._next_index = 0
        self._ok = self._failed = 0
        self._prepared = False
        self._suspect: set[str] = set()   # instruments to reconnect before the next attempt
        self._stale: set[str] = set()     # instruments whose settings to re-apply before it
        self._listeners: list[ProgressListener] = []
        self._programs: dict[tuple[int, str], CompiledProgram] = {}
        self._mw_applied: tuple[float, float] | None = None   # (carrier Hz, level dBm) set now
        self._state_applied: Any = None                         # the virtual lab's prepared state
        self._camera_trigger: Literal["hardware", "software"] = "hardware"
        self._first_frame_id: int | None = None
        self._scans_state = plan.scan is not None and any(
            f.startswith("state.") for f in plan.scan.fields)
        self.error: BaseException | None = None

    # --- public ----------------------------------------------------------------------------------
    def add_progress_listener(self, listener: ProgressListener) -> None:
        """Call ``listener(Progress)`` after every published shot (in the sequencer's thread)."""
        self._listeners.append(listener)

    def reconnect(self, instruments: set[str] | list[str] | tuple[str, ...]) -> None:
        """Reconnect (and re-apply the settings of) 'microwave', 'timing_card' and/or 'camera' now.

        For the operator while the run is paused or not started; raises DriverError on failure.
        """
        unknown = set(instruments) - {"microwave", "timing_card", "camera"}
        if unknown:
            raise ValueError(f"unknown instrument(s) {sorted(unknown)}: expected microwave, "
                             f"timing_card or camera")
        self._reconnect(set(instruments))

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(H, W) of every frame (the camera ROI), for the run file."""
        return (self.config.camera_height, self.config.camera_width)

    def prepare(self) -> dict[str, Any]:
        """Connect and set up the instruments for the run; returns their identities and settings.

        Raises DriverError if an instrument cannot be reached or refuses a setting.
        """
        mw, card = self.inst.microwave, self.inst.card
        if self._scans_state and self.inst.state is None:
            fields = [f for f in self.plan.scan.fields if f.startswith("state.")]  # type: ignore[union-attr]
            raise RunRefused(f"{self.plan.source}: scan of {', '.join(fields)}: only the virtual lab "
                             f"prepares its atoms from the plan; on a real lab scan the user channel "
                             f"that sets them (e.g. steps.<loading>.duration_s)")
        if not mw.connected:
            mw.connect()
        self._apply_microwave(self.plan.at(self.plan.slot(0).point) if self.plan.n_shots else self.plan)
        if not card.connected:
            card.connect()
        if self.config.start_mode == "software" and not getattr(card, "software_start_supported", True):
            raise RunRefused(f"start_mode = 'software', but the timing card (firmware {card.version()}) "
                             "waits for a hardware trigger after swr: use start_mode = 'hardware'")
        idle = idle_word(self.config.channels, self.config.idle_high)
        if idle:             # active-low outputs idle high before the first program, too
            preset = getattr(card, "set_outputs", None)
            if preset is None:
                raise RunRefused(f"timing card {card.address}: cannot set its outputs manually, so "
                                 f"the active-low channels {', '.join(self.config.idle_high)} would "
                                 f"sit low until the first shot")
            preset(idle)
        self._programs = check_programs(self.plan, self.config.channels,
                                        clock_hz=self.inst.card.clock_hz,
                                        max_instructions=self.inst.card.max_instructions,
                                        idle_high=self.config.idle_high)
        self._configure_camera(connect=True)
        timing = self.inst.camera.timing()
        for p in (self.plan.point_plans or (self.plan,)):
            check_timing(timing, p.imaging, camera=self._camera_name())
        self._first_frame_id = timing.first_frame_id
        self._prepared = True
        return self.describe()

    def describe(self) -> dict[str, Any]:
        """Identities and settings of the instruments as read back now (JSON-able)."""
        mw, card, cam = self.inst.microwave, self.inst.card, self.inst.camera
        return {
            "microwave": {"address": mw.address, "identity": mw.identity,
                          "settings": mw.settings()},
            "timing_card": {"address": card.address, "version": card.version(),
                            "board": card.board(), "clock_hz": card.clock_hz,
                            "max_instructions": card.max_instructions,
                            "channels": dict(self.config.channels),
                            "start_mode": self.config.start_mode},
            "camera": {"identity": cam.identity().as_dict(), "settings": cam.settings(),
                       "features": cam.features().as_dict()},
        }

    def run(self) -> RunState:
        """Run the plan to its end (or stop/abort/fault); returns the final state. Blocking."""
        if self.control.state is RunState.IDLE:
            self.control.submit(Start())
        try:
            self._loop()
            final = self.control.finish()
        except ConsumerFailed as exc:
            self.error = exc
            final = self.control.finish(fatal=str(exc))
        except Exception as exc:  # a bug or an unexpected library error: end the run visibly
            log.exception("sequencer failed")
            self.error = exc
            final = self.control.finish(fatal=f"{type(exc).__name__}: {exc}")
        finally:
            self._shutdown()
            self.publisher.close()
        log.info("run ended %s: %d ok, %d failed shots", final.value, self._ok, self._failed)
        return final

    # --- the loop --------------------------------------------------------------------------------
    def _loop(self) -> None:
        slot_no, attempt, auto_attempts = 0, 1, 1
        last_start = -float("inf")
        while slot_no < self.plan.n_shots:
            directive = self.control.checkpoint()
            if directive is not Directive.CONTINUE:
                return
            if not self._recover():
                continue
            wait = last_start + self.plan.min_shot_period_s - time.monotonic()
            if wait > 0 and self._sleep(wait):
                return
            last_start = time.monotonic()
            slot = self.plan.slot(slot_no)
            clock = ShotClock()
            try:
                shot = self._shot(slot, attempt, clock)
            except ShotAborted:
                self._publish_failed(slot, attempt, "aborted by the operator", clock)
                return
            except SettingsMismatch as mismatch:
                self._stale.update(mismatch.instruments)
                self._publish_failed(slot, attempt, str(mismatch), clock,
                                     settings=mismatch.settings)
                reason = str(mismatch)
            except ShotFault as fault:
                self._suspect.add(fault.instrument)
                self._publish_failed(slot, attempt, str(fault), clock)
                reason = str(fault)
            else:
                self._publish(shot)
                slot_no, attempt, auto_attempts = slot_no + 1, 1, 1
                continue
            attempt += 1
            if auto_attempts < self.plan.retry.max_attempts and self._auto_reconnect():
                auto_attempts += 1
                log.warning("retrying slot %d (%s), attempt %d after: %s", slot.number,
                            slot.direction, attempt, reason)
                continue
            if self.plan.retry.on_exhausted == "abort":
                raise RuntimeError(f"giving up after {auto_attempts} attempt(s) of slot "
                                   f"{slot.number}: {reason}")
            auto_attempts = 1
            self.control.fault(reason)

    def _recover(self) -> bool:
        """Before an attempt: reconnect suspect instruments / prepare; on failure pause again."""
        try:
            if self._suspect:
                self._reconnect(set(self._suspect))
            if not self._prepared:
                self.prepare()
            if self._stale:
                self._reapply(set(self._stale))
            self.control.clear_error()
            return True
        except RunRefused:
            raise                        # not a fault to retry: the run cannot be done so
        except DriverError as exc:
            self.control.fault(f"reconnecting failed: {type(exc).__name__}: {exc}")
            return False

    def _auto_reconnect(self) -> bool:
        """The retry policy's reconnections; False if they all failed (or the run was aborted).

        With ``reconnect_attempts = 0`` the shot is retried without reconnecting."""
        policy = self.plan.retry
        if policy.reconnect_attempts == 0:
            self._suspect.clear()
            return True
        for k in range(policy.reconnect_attempts):
            if k and self._sleep(policy.reconnect_delay_s):
                return False
            try:
                self._reconnect(set(self._suspect))
                return True
            except DriverError as exc:
                log.warning("reconnection %d of %d failed: %s", k + 1, policy.reconnect_attempts,
                            exc)
        return False

    def _reconnect(self, which: set[str]) -> None:
        mw, card = self.inst.microwave, self.inst.card
        if "microwave" in which:
            mw.reconnect()
            self._suspect.discard("microwave")
        if "timing_card" in which:
            card.reconnect()
            self._suspect.discard("timing_card")
        if "camera" in which:
            self._configure_camera(connect=True, reopen=True)
            self._suspect.discard("camera")

    def _sleep(self, seconds: float) -> bool:
        """Sleep, waking early on abort; True if the run was aborted."""
        return self.control.wait_for(lambda s: s is RunState.ABORTING, timeout=seconds)

    # --- one shot --------------------------------------------------------------------------------
    def _shot(self, slot: Slot, attempt: int, clock: ShotClock) -> ShotRecord:
        mw, card, cam = self.inst.microwave, self.inst.card, self.inst.camera
        plan = self.plan.at(slot.point)
        compiled = self._programs[(slot.point if self.plan.point_plans else -1, slot.direction)]
        pulse = plan.microwave.pulse(slot.direction)
        exposure_starts = sorted(plan.imaging.exposure_starts_s().values())
        lead = program_lead_s(plan, slot.direction)     # the program starts before the switch-off
        n = len(self.frame_names)
        try:
            self._step("camera", "disarm", cam.stop)
            self._settle_card()
            self._apply_point(plan)
            if pulse.pulse_s > 0:
                self._step("microwave", "set phase", setattr, mw, "phase_deg", pulse.phase_deg)
                self._step("microwave", "wait complete", mw.wait_complete)   # *OPC? on SCPI
            upload = self._step("timing_card", "program", card.program, compiled.instructions)
            if self.config.verify_program:
                self._step("timing_card", "verify", card.verify, compiled.instructions)
            self._step("camera", "arm", cam.start)
            start = card.start if self.config.start_mode == "software" else card.arm
            self._step("timing_card", "start", start)
            after_program = (self._camera_trigger == "software"
                             and self.config.software_trigger_at == "program_end")
            if after_program:
                status = self._step("timing_card", "wait until stopped", card.wait_until_stopped,
                                    compiled.duration_s + self.config.card_margin_s)
                self._software_triggers(time.monotonic(), [0.0] * n)
            elif self._camera_trigger == "software":
                self._software_triggers(time.monotonic(), [t + lead for t in exposure_starts])
            frames = self._collect(n, compiled.duration_s)
            gap = frame_id_gap(cam.frame_ids(), expected=n, first_id=self._first_frame_id)
            if gap is not None:
                raise ShotFault("camera", "frame ids", ProtocolError(gap))
            if self._camera_trigger == "hardware":
                spacing = frame_spacing_mismatch(cam.frame_timestamps(), exposure_starts)
                if spacing is not None:
                    raise ShotFault("camera", "frame timestamps", ProtocolError(spacing))
            if not after_program:
                status = self._step("timing_card", "wait until stopped", card.wait_until_stopped,
                                    compiled.duration_s + self.config.card_margin_s)
            self._step("camera", "disarm", cam.stop)
            settings, errors, camera, program_length = self._read_back()
        except (ShotFault, ShotAborted):
            self._cleanup()
            raise
        settings.update({
            "card.status": str(getattr(status.run, "name", status)), "card.upload": str(upload),
            "card.instructions": len(compiled.instructions),
            "card.program_duration_s": compiled.duration_s,
            "card.trap_off_s": lead,
            "card.max_rounding_error_s": compiled.max_rounding_error_s,
            "pulse.mw_gate_s": pulse.pulse_s, "pulse.mw_phase_deg": pulse.phase_deg,
            "pulse.mw_start_s": plan.microwave.pulse_start_s,
        })
        settings.update(shot_settings(self.plan.scan, slot.point, slot.visit))
        self._verify(plan, settings, errors, camera, status, program_length,
                     len(compiled.instructions), pulse.phase_deg if pulse.pulse_s > 0 else None)
        settings.update({k: camera[k] for k in VERIFIED_CAMERA_KEYS if k in camera})
        stack = np.stack(frames)
        if stack.dtype != np.uint16:
            stack = stack.astype(np.uint16)
        return ShotRecord.ok(index=self._take_index(), cycle=slot.cycle,
                             sequence_index=slot.sequence_index, direction=slot.direction,  # type: ignore[arg-type]
                             frames=stack, settings=settings, timing=clock.finish(),
                             frame_names=self.frame_names, attempt=attempt)

    def _collect(self, n: int, duration_s: float) -> list[np.ndarray]:
        """Fetch ``n`` frames within the plan's frame timeout (plus the program's duration),
        in slices so that an abort is noticed; FrameTimeout partial frames are kept."""
        cam = self.inst.camera
        t_start = time.monotonic()
        timeout_s = self.plan.imaging.frame_timeout_s + duration_s
        # a virtual camera's frames come from a simulation: its lateness is not the camera's
        patience = getattr(cam, "patience", no_patience)
        frames: list[np.ndarray] = []
        while len(frames) < n:
            if self.control.abort_requested:
                raise ShotAborted()
            now = time.monotonic()
            left = t_start + timeout_s - now
            if left <= 0 and not deadline_passed(t_start, timeout_s, now, patience):
                left = self.config.fetch_slice_s
            if left <= 0:
                raise ShotFault("camera", "collect frames", TimeoutError(
                    f"{len(frames)} of {n} frames arrived within "
                    f"{self.plan.imaging.frame_timeout_s + duration_s:.3g} s"))
            try:
                frames += cam.fetch_frames(n - len(frames), min(left, self.config.fetch_slice_s))
            except FrameTimeout as exc:
                frames += exc.frames
            except DriverError as exc:
                raise ShotFault("camera", "collect frames", exc) from exc
        return frames

    def _read_back(self) -> tuple[dict[str, Any], list[tuple[int, str]], dict[str, Any], int]:
        """After a shot: microwave settings and error queue, camera settings, card program length."""
        mw, card, cam = self.inst.microwave, self.inst.card, self.inst.camera
        settings = flat_settings("mw", self._step("microwave", "read back", mw.settings))
        errors = self._step("microwave", "error queue", mw.drain_errors)
        camera = flat_settings("camera", self._step("camera", "read back", cam.settings))
        program_length = self._step("timing_card", "read back", card.program_length)
        return settings, errors, camera, program_length

    def _apply_point(self, plan: RunPlan) -> None:
        """Before a shot of a scan point: the carrier and level (if they differ from the ones set)
        and, on the virtual lab, the prepared state (if it differs)."""
        mw = self.inst.microwave
        wanted = (plan.microwave.frequency_hz, plan.microwave.power_dbm)
        if wanted != self._mw_applied:
            self._step("microwave", "set carrier", setattr, mw, "frequency_hz", wanted[0])
            self._step("microwave", "set level", setattr, mw, "level_dbm", wanted[1])
            self._step("microwave", "wait complete", mw.wait_complete)
            self._mw_applied = wanted
        if self.inst.state is not None and plan.state != self._state_applied:
            self.inst.state.prepare_state(plan.state)
            self._state_applied = plan.state

    def _verify(self, plan: RunPlan, settings: dict[str, Any], errors: list[tuple[int, str]],
                camera: dict[str, Any], status: Any, program_length: int, instructions: int,
                phase_deg: float | None) -> None:
        """Compare the shot's read-back with the plan (``sequences/verify.py``); SettingsMismatch."""
        read = dict(settings, **camera)
        read["card.status"] = str(getattr(status.run, "name", status))
        read["card.instructions"] = program_length
        mw = self.inst.microwave
        check_shot(read, errors, plan=plan, config=self.config, phase_deg=phase_deg,
                   instructions=instructions, camera_trigger=self.camera_trigger,
                   fixed=mw.fixed_settings, resolution=mw.resolution)

    @property
    def camera_trigger(self) -> Literal["hardware", "software"]:
        """The camera trigger of this run: 'hardware' (the lab's TTL), or 'software' where allowed."""
        return self._camera_trigger

    def _camera_name(self) -> str:
        ident = self.inst.camera.identity()
        return f"{ident.model} {ident.serial_number}"

    def _software_triggers(self, t0: float, exposure_starts: list[float]) -> None:
        """One software trigger at each exposure start of the shot (bench tests, no TTL)."""
        cam = self.inst.camera
        for start_s in exposure_starts:
            wait = t0 + start_s - time.monotonic()
            if wait > 0 and self._sleep(wait):
                raise ShotAborted()
            self._step("camera", "software trigger", cam.software_trigger)

    def _apply_microwave(self, plan: RunPlan | None = None) -> None:
        """Set the source's fixed settings (the TTL gate), the plan's (or a scan point's) carrier
        and level, RF on, then wait until they are in effect (``*OPC?`` on SCPI)."""
        mw = self.inst.microwave
        p = plan or self.plan
        for name, value in mw.fixed_settings.items():
            setattr(mw, name, value)
        mw.frequency_hz = p.microwave.frequency_hz
        mw.level_dbm = p.microwave.power_dbm
        mw.output_enabled = True
        mw.wait_complete()
        self._mw_applied = (p.microwave.frequency_hz, p.microwave.power_dbm)

    def _reapply(self, which: set[str]) -> None:
        """Re-apply the settings of instruments whose read-back differed from the plan."""
        if "microwave" in which:
            self._apply_microwave()
            self._mw_applied = None          # the next shot sets its point's carrier again
        if "camera" in which:
            self._configure_camera(connect=False)
        self._stale.clear()              # the card is reprogrammed and restarted every shot anyway

    def _step(self, instrument: str, step: str, fn: Callable[..., Any], *args: Any) -> Any:
        if self.control.abort_requested:
            raise ShotAborted()
        try:
            return fn(*args)
        except DriverError as exc:
            raise ShotFault(instrument, step, exc) from exc

    def _settle_card(self) -> None:
        """The card must be idle before it is reprogrammed (a leftover run would add frames)."""
        card = self.inst.card
        status = self._step("timing_card", "status", card.status)
        if not getattr(status, "idle", True):
            self._step("timing_card", "abort leftover run", card.abort)
            self._step("timing_card", "wait until stopped", card.wait_until_stopped,
                       self.config.card_margin_s)

    def _cleanup(self) -> None:
        """After a failed or aborted shot: stop the card and the camera, ignoring their errors."""
        card, cam = self.inst.card, self.inst.camera
        for action in (card.abort, lambda: card.wait_until_stopped(self.config.card_margin_s),
                       cam.stop):
            try:
                action()
            except (DriverError, RuntimeError, OSError) as exc:
                log.info("cleanup after a failed shot: %s", exc)

    def _shutdown(self) -> None:
        if self.config.rf_off_at_end and self._prepared:
            try:
                self.inst.microwave.output_enabled = False
            except DriverError as exc:
                log.warning("could not switch the microwave output off: %s", exc)
        try:
            self.inst.camera.stop()
        except (DriverError, RuntimeError) as exc:
            log.info("camera stop at the end: %s", exc)

    # --- helpers ---------------------------------------------------------------------------------
    def _configure_camera(self, *, connect: bool, reopen: bool = False) -> None:
        cam, c = self.inst.camera, self.config
        if reopen:
            cam.close()
        if connect:
            cam.connect()
        self._camera_trigger = choose_trigger(cam.features(), camera=self._camera_name(),
                                              allow_software_trigger=c.allow_software_trigger,
                                              exposure_mode=c.camera_exposure_mode)
        cam.configure(width=c.camera_width, height=c.camera_height, offset_x=c.camera_offset_x,
                      offset_y=c.camera_offset_y, pixel_format=c.camera_pixel_format,
                      exposure_s=self.plan.imaging.camera_exposure_s, trigger=self.camera_trigger,
                      trigger_line=c.camera_trigger_line, frames_per_shot=len(self.frame_names),
                      exposure_mode=c.camera_exposure_mode)  # type: ignore[arg-type]  # str from the config, checked there

    def _take_index(self) -> int:
        index, self._next_index = self._next_index, self._next_index + 1
        return index

    def _publish_failed(self, slot: Slot, attempt: int, reason: str, clock: ShotClock, *,
                        settings: dict[str, Any] | None = None) -> None:
        self._publish(ShotRecord.failed(
            index=self._take_index(), cycle=slot.cycle, sequence_index=slot.sequence_index,
            direction=cast(Direction, slot.direction), reason=reason, settings=settings or {},
            timing=clock.finish(), frame_names=self.frame_names, attempt=attempt))

    def _publish(self, shot: ShotRecord) -> None:
        self.publisher.publish(shot)
        if shot.is_ok:
            self._ok += 1
        else:
            self._failed += 1
        progress = Progress(shot.index, shot.cycle * len(self.plan.cycle) + shot.sequence_index,
                            shot.direction, shot.status, shot.reason, self._ok, self._failed,
                            self.plan.n_shots)
        for listener in list(self._listeners):
            try:
                listener(progress)
            except Exception:
                log.exception("progress listener %r failed", listener)
