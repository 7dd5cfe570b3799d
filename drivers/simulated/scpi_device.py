"""A generic emulated SCPI instrument: a command table (data), its state, and an error queue.

The device knows nothing about transports: ``ScpiDevice.execute(line)`` takes one program
message (without terminator) and returns the response message or None, exactly as an instrument's
parser would, putting errors into the queue instead of answering. ``ScpiServer`` puts it on TCP.
State is guarded by one lock, so ``state()`` can be read from any thread (the virtual lab does).
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from drivers.simulated.scpi_parser import (
    HeaderPattern,
    Numeric,
    ParameterType,
    ProgramUnit,
    ScpiError,
    parse_nodes,
    parse_unit,
    split_outside_quotes,
)
from drivers.simulated.scpi_status import OPC, MAV, StatusRegisters, esr_bit_for, parse_register

log = logging.getLogger(__name__)

OnChange = Callable[[str, object], None]
"""Called as ``on_change(setting_name, new_value)`` after a setting changed (from a server thread)."""


@dataclass(frozen=True)
class ScpiSetting:
    """One table row: a header pattern bound to a named setting of a given parameter type.

    ``unit_setting`` names another setting (e.g. ``UNIT:POWer``) that holds the default unit of
    this one: numbers without a suffix are in it, and queries answer in it.
    """

    pattern: str
    name: str
    parameter: ParameterType
    suffixes: tuple[int, ...] = (1,)
    unit_setting: str = ""
    compiled: HeaderPattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", HeaderPattern.compile(self.pattern))


@dataclass
class _Path:
    """The current header path inside one program message (reset to the root for every message)."""

    nodes: list[tuple[str, str]] = field(default_factory=list)
    answered: bool = False          # an answer of this message waits in the output queue (MAV)


class ScpiDevice:
    """An SCPI instrument defined by ``settings`` (its command table) and an ``identity`` string.

    Built-in: the IEEE 488.2 common commands ``*IDN?``, ``*RST``, ``*CLS``, ``*ESE``/``*ESE?``,
    ``*ESR?``, ``*SRE``/``*SRE?``, ``*STB?``, ``*OPC``/``*OPC?``, ``*WAI``, ``*TST?`` (``0``: passed),
    ``*OPT?`` (``options`` comma-separated, ``0`` if none) with the status model of
    ``scpi_status``; the error queue as ``:SYSTem:ERRor[:NEXT]?``, ``:SYSTem:ERRor:ALL?``,
    ``:SYSTem:ERRor:COUNt?``, ``:SYSTem:ERRor:CODE[:NEXT]?`` and ``:SYSTem:ERRor:CODE:ALL?``.
    Numeric queries take ``MIN``/``MAX``/``DEF`` (``FREQ? MAX``). Operations complete at once, so
    ``*OPC?`` answers ``1`` and ``*WAI`` returns immediately. The error queue holds ``queue_size``
    entries; on overflow the newest entry becomes ``-350,"Queue overflow"`` and later errors are
    lost (SCPI-99).
    """

    def __init__(self, settings: Sequence[ScpiSetting], *, identity: str, queue_size: int = 10,
                 on_change: OnChange | None = None, options: Sequence[str] = ()) -> None:
        if queue_size < 2:
            raise ValueError(f"queue_size must be >= 2, got {queue_size}")
        names = [s.name for s in settings]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate setting names in the command table: {names}")
        for s in settings:
            if s.unit_setting and s.unit_setting not in names:
                raise ValueError(f"{s.name}: unit_setting {s.unit_setting!r} is not a setting of the table")
        self.settings = tuple(settings)
        self.identity = identity
        self.options = tuple(options)
        self._status = StatusRegisters()
        self.queue_size = queue_size
        self.on_change = on_change
        self._lock = threading.RLock()
        self._errors: deque[tuple[int, str]] = deque()
        self._state: dict[str, object] = {}
        self._system_queries: tuple[tuple[HeaderPattern, Callable[[], str]], ...] = (
            (HeaderPattern.compile(":SYSTem:ERRor[:NEXT]"), self._next_error),
            (HeaderPattern.compile(":SYSTem:ERRor:ALL"), self._all_errors),
            (HeaderPattern.compile(":SYSTem:ERRor:COUNt"), self._error_count),
            (HeaderPattern.compile(":SYSTem:ERRor:CODE[:NEXT]"), self._next_code),
            (HeaderPattern.compile(":SYSTem:ERRor:CODE:ALL"), self._all_codes),
        )
        self.reset()

    # --- thread-safe access for the virtual lab and tests ----------------------------------------

    def state(self) -> dict[str, object]:
        """A snapshot copy of all settings (name -> value in the table's base units)."""
        with self._lock:
            return dict(self._state)

    def errors(self) -> list[tuple[int, str]]:
        """A copy of the error queue, oldest first, without emptying it."""
        with self._lock:
            return list(self._errors)

    def status(self) -> dict[str, int]:
        """The status registers now: ``esr``, ``ese``, ``sre`` and ``stb`` (without MAV)."""
        with self._lock:
            return {"esr": self._status.esr, "ese": self._status.ese, "sre": self._status.sre,
                    "stb": self._status.status_byte(errors_queued=bool(self._errors))}

    def push_error(self, code: int, text: str) -> None:
        """Put an error into the queue as if the instrument had raised it (fault injection)."""
        with self._lock:
            self._push(code, text)

    def reset(self) -> None:
        """``*RST``: every setting back to its default (errors stay queued)."""
        changed: list[tuple[str, object]] = []
        with self._lock:
            for s in self.settings:
                if self._state.get(s.name, object()) != s.parameter.default:
                    self._state[s.name] = s.parameter.default
                    changed.append((s.name, s.parameter.default))
        self._notify(changed)

    # --- the parser ------------------------------------------------------------------------------

    def execute(self, line: str) -> str | None:
        """Run one program message; return the response message (answers joined by ``;``) or None.

        Inside a ``;`` chain a header without leading ``:`` continues from the previous command's
        path (IEEE 488.2): ``SOUR:FREQ 1GHz;POW -10`` sets ``SOUR:POW``.
        """
        session = _Path()
        answers: list[str] = []
        changed: list[tuple[str, object]] = []
        try:
            units = split_outside_quotes(line, ";")
        except ScpiError as e:
            self.push_error(e.code, e.entry_text)
            return None
        for raw in units:
            if not raw.strip():
                if len(units) > 1:
                    self.push_error(-102, "empty command")
                    break
                continue
            try:
                answer = self._execute_unit(parse_unit(raw), session, changed)
            except ScpiError as e:
                self.push_error(e.code, e.entry_text)
                if -200 < e.code <= -100:
                    break  # a command error: the parser discards the rest of the message
                continue
            if answer is not None:
                answers.append(answer)
                session.answered = True
        self._notify(changed)
        return ";".join(answers) if answers else None

    def _execute_unit(self, unit: ProgramUnit, session: _Path,
                      changed: list[tuple[str, object]]) -> str | None:
        if unit.is_common:
            return self._common(unit, session)
        header = unit.header[1:] if unit.absolute else unit.header
        typed = parse_nodes(header)
        nodes = typed if unit.absolute else session.nodes + typed
        for pattern, handler in self._system_queries:
            if pattern.match(nodes) is not None:
                if not unit.is_query:
                    raise ScpiError(-113, unit.header)
                if unit.params:
                    raise ScpiError(-108, unit.params[0])
                session.nodes = nodes[:-1]
                return handler()
        for setting in self.settings:
            suffixes = setting.compiled.match(nodes)
            if suffixes is None:
                continue
            if any(sfx not in setting.suffixes for sfx in suffixes):
                raise ScpiError(-114, unit.header)
            session.nodes = nodes[:-1]
            return self._setting(setting, unit, changed)
        raise ScpiError(-113, unit.header)

    def _setting(self, setting: ScpiSetting, unit: ProgramUnit,
                 changed: list[tuple[str, object]]) -> str | None:
        parameter = setting.parameter
        with self._lock:
            default_unit = str(self._state[setting.unit_setting]) if setting.unit_setting else ""
            current = self._state[setting.name]
        if unit.is_query:
            if not unit.params:
                return _format(parameter, current, default_unit)
            if not isinstance(parameter, Numeric) or len(unit.params) > 1:
                raise ScpiError(-108, unit.params[-1])
            limit = parameter.keyword(unit.params[0])
            if limit is None:
                raise ScpiError(-224, unit.params[0])
            return parameter.format(limit, default_unit)
        if not unit.params:
            raise ScpiError(-109, unit.header)
        if len(unit.params) > 1:
            raise ScpiError(-108, unit.params[1])
        if isinstance(parameter, Numeric):
            value: object = parameter.parse(unit.params[0], default_unit)
        else:
            value = parameter.parse(unit.params[0])
        with self._lock:
            if self._state[setting.name] != value:
                self._state[setting.name] = value
                changed.append((setting.name, value))
        return None

    def _common(self, unit: ProgramUnit, session: _Path) -> str | None:
        name = unit.header.upper()
        if unit.is_query:
            queries: Mapping[str, Callable[[], str]] = {
                "*IDN": lambda: self.identity, "*OPC": lambda: "1", "*TST": lambda: "0",
                "*OPT": lambda: ",".join(self.options) or "0",
                "*ESE": lambda: str(self._status.ese), "*SRE": lambda: str(self._status.sre),
                "*ESR": lambda: str(self._status.read_esr()),
                "*STB": lambda: str(self._status.status_byte(errors_queued=bool(self._errors))
                                    | (MAV if session.answered else 0)),
            }
            if name not in queries:
                raise ScpiError(-113, unit.header + "?")
            if unit.params:
                raise ScpiError(-108, unit.params[0])
            with self._lock:
                return queries[name]()
        if name in ("*ESE", "*SRE"):
            if not unit.params:
                raise ScpiError(-109, unit.header)
            if len(unit.params) > 1:
                raise ScpiError(-108, unit.params[1])
            try:
                value = parse_register(unit.params[0])
            except ValueError as e:
                raise ScpiError(-104 if str(e) == "type" else -222, unit.params[0]) from None
            with self._lock:
                if name == "*ESE":
                    self._status.ese = value
                else:
                    self._status.set_sre(value)
            return None
        commands: Mapping[str, Callable[[], None]] = {
            "*RST": self.reset, "*CLS": self._clear_status, "*OPC": self._operation_complete,
            "*WAI": lambda: None,
        }
        if name not in commands:
            raise ScpiError(-113, unit.header)
        if unit.params:
            raise ScpiError(-108, unit.params[0])
        commands[name]()
        return None

    def _next_error(self) -> str:
        with self._lock:
            if not self._errors:
                return '0,"No error"'
            code, text = self._errors.popleft()
        return f'{code},"{text}"'

    def _all_errors(self) -> str:
        with self._lock:
            entries, self._errors = list(self._errors), deque()
        return ",".join(f'{code},"{text}"' for code, text in entries) or '0,"No error"'

    def _error_count(self) -> str:
        with self._lock:
            return str(len(self._errors))

    def _next_code(self) -> str:
        with self._lock:
            return str(self._errors.popleft()[0]) if self._errors else "0"

    def _all_codes(self) -> str:
        with self._lock:
            entries, self._errors = list(self._errors), deque()
        return ",".join(str(code) for code, _ in entries) or "0"

    # --- internals -------------------------------------------------------------------------------

    def _clear_status(self) -> None:
        """``*CLS``: empty the error queue and clear the ESR."""
        with self._lock:
            self._errors.clear()
            self._status.clear()

    def _operation_complete(self) -> None:
        with self._lock:
            self._status.event(OPC)

    def _push(self, code: int, text: str) -> None:
        log.debug("SCPI error %d,%r", code, text)
        self._status.event(esr_bit_for(code))
        if len(self._errors) < self.queue_size - 1:
            self._errors.append((code, text))
        elif len(self._errors) == self.queue_size - 1:
            self._errors.append((-350, "Queue overflow"))
        # a full queue (ending in -350) discards every further error

    def _notify(self, changed: list[tuple[str, object]]) -> None:
        callback = self.on_change
        if callback is None:
            return
        for name, value in changed:
            try:
                callback(name, value)
            except Exception:  # a faulty listener must not kill the instrument
                log.exception("on_change callback failed for %s=%r", name, value)


def _format(parameter: ParameterType, value: object, default_unit: str) -> str:
    if isinstance(parameter, Numeric):
        return parameter.format(value, default_unit)
    return parameter.format(value)
