"""Declarations of SCPI instrument settings: one ``Control`` per setting (pymeasure/QCoDeS style).

A control holds the SCPI header, the unit, a strict validator (never silent clipping), the
formatter for the command and the parser for the query answer. Used as a class attribute of a
``ScpiInstrument`` it becomes a property: reading queries the instrument, assigning writes the
setting and checks the instrument's error queue.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from drivers.errors import ProtocolError

if TYPE_CHECKING:
    from drivers.scpi import ScpiInstrument

T = TypeVar("T")


class Control(Generic[T]):
    """One instrument setting: ``header`` (``FREQ``) gives the query ``FREQ?`` and command ``FREQ <v>``."""

    def __init__(self, header: str, *, unit: str, doc: str, validate: Callable[[Any], T],
                 format: Callable[[T], str], parse: Callable[[str], T]) -> None:
        self.header = header
        self.unit = unit
        self.validate = validate
        self.format = format
        self.parse = parse
        self.name = ""
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def query_text(self) -> str:
        """The SCPI query that reads this setting back."""
        return f"{self.header}?"

    def command_text(self, value: T) -> str:
        """The SCPI command that sets ``value`` (already validated)."""
        return f"{self.header} {self.format(value)}"

    def check(self, value: object) -> T:
        """Validate ``value``; ValueError names the setting, the value and what is allowed."""
        try:
            return self.validate(value)
        except ValueError as e:
            raise ValueError(f"{self.name}: {e}") from None

    def decode(self, reply: str) -> T:
        """Parse a query answer; ProtocolError if it is not a valid value."""
        try:
            return self.parse(reply)
        except ValueError as e:
            raise ProtocolError(f"{self.name}: cannot parse the answer to {self.query_text!r}: {e}",
                                reply=reply) from None

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> "Control[T]": ...

    @overload
    def __get__(self, obj: "ScpiInstrument", objtype: type | None = None) -> T: ...

    def __get__(self, obj: "ScpiInstrument | None", objtype: type | None = None) -> "T | Control[T]":
        if obj is None:
            return self
        return obj.read_control(self)

    def __set__(self, obj: "ScpiInstrument", value: T) -> None:
        obj.write_control(self, value)


def format_number(value: float) -> str:
    """Shortest exact decimal form of ``value`` (``6834682611``, ``-10``, ``90.5``, ``1e-05``)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _si(value: float) -> str:
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:g} {prefix}"
    return f"{value:g} "


def numeric(header: str, *, unit: str, minimum: float, maximum: float, doc: str,
            wire_unit: str = "") -> Control[float]:
    """A number in ``unit``, strictly within [minimum, maximum]; sent as ``<header> <v> <wire_unit>``.

    ``doc`` starts with "Control ..."; the unit and range are appended to it.
    """
    def validate(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number in {unit}, got {value!r}")
        v = float(value)
        if not math.isfinite(v) or not minimum <= v <= maximum:
            raise ValueError(f"{v!r} {unit} is outside the range {minimum:g} to {maximum:g} {unit}")
        return v

    def fmt(value: float) -> str:
        return f"{format_number(value)} {wire_unit}" if wire_unit else format_number(value)

    def parse(reply: str) -> float:
        v = float(reply)
        if not math.isfinite(v):
            raise ValueError("not a finite number")
        return v

    full_doc = f"{doc} ({unit}, {_si(minimum)}{unit} to {_si(maximum)}{unit})."
    return Control(header, unit=unit, doc=full_doc, validate=validate, format=fmt, parse=parse)


def choice(header: str, *, choices: tuple[str, ...], doc: str) -> Control[str]:
    """An SCPI enumeration given in manual notation (``INTernal``); values are the short forms (``INT``).

    Long forms and any case are accepted when setting; the read-back is the short form.
    """
    forms = {}
    for c in choices:
        short = "".join(ch for ch in c if not ch.islower()).upper()
        forms[short] = short
        forms[c.upper()] = short
    shorts = tuple(dict.fromkeys(forms.values()))

    def validate(value: Any) -> str:
        if not isinstance(value, str) or value.strip().upper() not in forms:
            raise ValueError(f"expected one of {', '.join(shorts)}, got {value!r}")
        return forms[value.strip().upper()]

    def parse(reply: str) -> str:
        if reply.strip().upper() not in forms:
            raise ValueError(f"expected one of {', '.join(shorts)}")
        return forms[reply.strip().upper()]

    full_doc = f"{doc} (one of {', '.join(shorts)})."
    return Control(header, unit="", doc=full_doc, validate=validate, format=str, parse=parse)


def boolean(header: str, *, doc: str) -> Control[bool]:
    """An on/off setting; sent as ``ON``/``OFF``, read back from ``1``/``0``."""
    def validate(value: Any) -> bool:
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return bool(value)
        raise ValueError(f"expected True or False, got {value!r}")

    def parse(reply: str) -> bool:
        text = reply.strip().upper()
        if text in ("1", "ON"):
            return True
        if text in ("0", "OFF"):
            return False
        raise ValueError("expected 0 or 1")

    full_doc = f"{doc} (bool, True = on)."
    return Control(header, unit="", doc=full_doc, validate=validate,
                   format=lambda v: "ON" if v else "OFF", parse=parse)
