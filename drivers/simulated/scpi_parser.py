"""Generic SCPI syntax for the emulated instruments: headers, program messages, parameters.

Header patterns use the notation of instrument manuals: ``[:SOURce<hw>]:FREQuency[:CW|:FIXed]``.
Upper-case letters are the short form, the whole word the long form; both are accepted in any case,
nothing in between. ``[...]`` is an optional node (``|`` separates alternatives), ``<name>`` a numeric
suffix (an omitted suffix means 1). Common commands are written ``*IDN``. Parsing problems raise
``ScpiError`` carrying the standard SCPI error code and text.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

STANDARD_ERRORS: dict[int, str] = {
    -100: "Command error",
    -102: "Syntax error",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -114: "Header suffix out of range",
    -131: "Invalid suffix",
    -220: "Parameter error",
    -222: "Data out of range",
    -224: "Illegal parameter value",
    -350: "Queue overflow",
}


class ScpiError(Exception):
    """A standard SCPI error: ``code`` (negative), ``text`` and optional device-dependent ``detail``."""

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        self.text = STANDARD_ERRORS.get(code, "Unknown error")
        self.detail = detail
        super().__init__(f'{code},"{self.entry_text}"')

    @property
    def entry_text(self) -> str:
        """The quoted part of the error-queue entry: ``text`` or ``text;detail``."""
        return f"{self.text};{self.detail}" if self.detail else self.text


# --- headers -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mnemonic:
    """One header node: short and long form (upper case) and whether it takes a numeric suffix."""

    short: str
    long: str
    has_suffix: bool

    @classmethod
    def parse(cls, text: str) -> "Mnemonic":
        """Parse ``FREQuency``, ``SOURce<hw>`` or ``*IDN``."""
        m = re.fullmatch(r"(\*?[A-Za-z][A-Za-z0-9_]*?)(<\w+>)?", text.strip())
        if not m:
            raise ValueError(f"bad mnemonic {text!r} in a header pattern")
        word = m.group(1)
        short = "".join(c for c in word if not c.islower())
        return cls(short=short.upper(), long=word.upper(), has_suffix=m.group(2) is not None)

    def matches(self, word: str) -> bool:
        """True if ``word`` (upper case, suffix removed) is this mnemonic's short or long form."""
        return word == self.short or word == self.long


@dataclass(frozen=True)
class _Element:
    optional: bool
    alternatives: tuple[tuple[Mnemonic, ...], ...]


@dataclass(frozen=True)
class HeaderPattern:
    """A compiled header pattern such as ``[:SOURce<hw>]:POWer[:LEVel][:IMMediate][:AMPLitude]``."""

    text: str
    elements: tuple[_Element, ...]

    @classmethod
    def compile(cls, text: str) -> "HeaderPattern":
        """Compile a manual-style header pattern; ValueError names a malformed pattern."""
        elements: list[_Element] = []
        pos = 0
        src = text.strip()
        while pos < len(src):
            if src[pos] == "[":
                end = src.find("]", pos)
                if end < 0:
                    raise ValueError(f"unclosed '[' in header pattern {text!r}")
                alts = tuple(_path(alt) for alt in src[pos + 1:end].split("|"))
                elements.append(_Element(optional=True, alternatives=alts))
                pos = end + 1
            else:
                end = src.find("[", pos)
                end = len(src) if end < 0 else end
                for node in _path(src[pos:end]):
                    elements.append(_Element(optional=False, alternatives=((node,),)))
                pos = end
        if not elements:
            raise ValueError(f"empty header pattern {text!r}")
        return cls(text=text, elements=tuple(elements))

    def match(self, nodes: list[tuple[str, str]]) -> list[int] | None:
        """Match parsed input nodes ``[(WORD, suffix digits), ...]``; return the suffixes or None.

        Each returned suffix belongs to a ``<...>`` node that was typed (an omitted suffix is 1).
        """
        return _match(self.elements, 0, nodes, 0, [])


def _path(text: str) -> tuple[Mnemonic, ...]:
    parts = [p for p in text.strip().split(":") if p != ""]
    if not parts:
        raise ValueError(f"empty node in header pattern part {text!r}")
    return tuple(Mnemonic.parse(p) for p in parts)


def _match_seq(seq: tuple[Mnemonic, ...], nodes: list[tuple[str, str]], i: int) -> list[int] | None:
    if i + len(seq) > len(nodes):
        return None
    suffixes: list[int] = []
    for mnemonic, (word, digits) in zip(seq, nodes[i:i + len(seq)]):
        if not mnemonic.matches(word):
            return None
        if digits and not mnemonic.has_suffix:
            return None
        if mnemonic.has_suffix:
            suffixes.append(int(digits) if digits else 1)
    return suffixes


def _match(elements: tuple[_Element, ...], e: int, nodes: list[tuple[str, str]], i: int,
           suffixes: list[int]) -> list[int] | None:
    if e == len(elements):
        return suffixes if i == len(nodes) else None
    element = elements[e]
    for seq in element.alternatives:
        got = _match_seq(seq, nodes, i)
        if got is not None:
            rest = _match(elements, e + 1, nodes, i + len(seq), suffixes + got)
            if rest is not None:
                return rest
    if element.optional:
        return _match(elements, e + 1, nodes, i, suffixes)
    return None


_NODE = re.compile(r"(\*?[A-Z][A-Z_]*?)(\d*)")


def parse_nodes(header: str) -> list[tuple[str, str]]:
    """Split an input header (no leading ``:``, no ``?``) into ``[(WORD, digits), ...]``."""
    nodes = []
    for part in header.upper().split(":"):
        m = _NODE.fullmatch(part)
        if not m:
            raise ScpiError(-113, header)
        nodes.append((m.group(1), m.group(2)))
    return nodes


# --- program messages ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ProgramUnit:
    """One command of a program message: header as typed, query flag, raw parameter strings."""

    header: str
    is_query: bool
    params: tuple[str, ...]

    @property
    def is_common(self) -> bool:
        """True for IEEE 488.2 common commands (``*IDN?``), which never change the header path."""
        return self.header.startswith("*")

    @property
    def absolute(self) -> bool:
        """True if the header starts with ``:``, i.e. is resolved from the root."""
        return self.header.startswith(":")


def split_outside_quotes(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` except inside ``"..."`` or ``'...'``; ScpiError -102 if a quote is open."""
    parts, current, quote = [], [], ""
    for c in text:
        if quote:
            current.append(c)
            if c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
            current.append(c)
        elif c == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    if quote:
        raise ScpiError(-102, "unterminated string")
    parts.append("".join(current))
    return parts


def parse_unit(text: str) -> ProgramUnit:
    """Parse one program message unit such as ``:SOUR:FREQ 6.8GHz`` or ``SYST:ERR?``."""
    text = text.strip()
    m = re.fullmatch(r"(\S+?)(\?)?(?:\s+(.*))?", text, flags=re.DOTALL)
    if not m or not m.group(1):
        raise ScpiError(-102, text)
    header, query, rest = m.group(1), m.group(2) is not None, m.group(3)
    if "?" in header:
        raise ScpiError(-102, text)
    params: tuple[str, ...] = ()
    if rest is not None and rest.strip():
        params = tuple(p.strip() for p in split_outside_quotes(rest, ","))
        if any(p == "" for p in params):
            raise ScpiError(-102, text)
    return ProgramUnit(header=header, is_query=query, params=params)


# --- parameter types -----------------------------------------------------------------------------

_NUMBER = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)")


Scale = tuple[Callable[[float], float], Callable[[float], float]]
"""A non-linear unit: (value in that unit -> base unit, base unit -> value in that unit)."""

_KEYWORDS = {"MIN": "minimum", "MINIMUM": "minimum", "MAX": "maximum", "MAXIMUM": "maximum",
             "DEF": "default", "DEFAULT": "default"}


@dataclass(frozen=True)
class Numeric:
    """A numeric parameter: base unit, accepted units, range, resolution, *RST value.

    ``units`` are linear (factor to the base unit), ``scales`` non-linear (``Scale``, e.g. V or
    dBuV for a level in dBm). ``parse``/``format`` take the instrument's current default unit
    (``UNIT:POWer``): a number without suffix is in that unit, and answers are given in it.
    """

    unit: str
    units: dict[str, float]
    minimum: float
    maximum: float
    default: float
    decimals: int
    scales: Mapping[str, Scale] = field(default_factory=dict)

    def keyword(self, text: str) -> float | None:
        """The value of ``MIN``/``MAX``/``DEF`` (long forms too, any case), else None."""
        name = _KEYWORDS.get(text.strip().upper())
        return None if name is None else float(getattr(self, name))

    def parse(self, text: str, default_unit: str = "") -> float:
        """Parse ``6.834682611GHz``, ``-10 dBm``, ``MIN``/``MAX``/``DEF``; ScpiError on bad or out-of-range."""
        limit = self.keyword(text)
        if limit is not None:
            return limit
        m = _NUMBER.fullmatch(text)
        if not m:
            raise ScpiError(-104, text)
        unit = m.group(2).upper() or default_unit.upper()
        try:
            value = self._to_base(float(m.group(1)), unit, text)
        except (ValueError, OverflowError):    # e.g. 0 V or -1 V as a level
            raise ScpiError(-222, text) from None
        if not math.isfinite(value) or not self.minimum <= value <= self.maximum:
            raise ScpiError(-222, text)
        return round(value, self.decimals)

    def format(self, value: object, unit: str = "") -> str:
        """Query answer in ``unit`` (default: the base unit): integers without a decimal point,
        otherwise the shortest exact form; in a non-linear unit, 7 significant digits."""
        v = float(value)  # type: ignore[arg-type]
        u = unit.upper()
        if u in self.scales and u != self.unit.upper():
            return f"{self.scales[u][1](v):.7g}"
        if u in self.units:
            v = v / self.units[u]
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return repr(v)

    def _to_base(self, number: float, unit: str, text: str) -> float:
        if not unit or unit == self.unit.upper():
            return number
        if unit in self.units:
            return number * self.units[unit]
        if unit in self.scales:
            return self.scales[unit][0](number)
        raise ScpiError(-131, text)


@dataclass(frozen=True)
class Boolean:
    """A boolean parameter: ``ON``/``OFF`` or a number (0 is off, anything else on); answers 0/1."""

    default: bool

    def parse(self, text: str) -> bool:
        """Parse ON/OFF/1/0 (numbers are rounded as SCPI requires)."""
        keyword = text.upper()
        if keyword == "ON":
            return True
        if keyword == "OFF":
            return False
        m = _NUMBER.fullmatch(text)
        if not m or m.group(2):
            raise ScpiError(-104 if text[:1] in "\"'" else -224, text)
        return round(float(m.group(1))) != 0

    def format(self, value: object) -> str:
        """Query answer ``1`` or ``0``."""
        return "1" if value else "0"


@dataclass(frozen=True)
class Choice:
    """An enumeration such as ``INTernal|EXTernal``; stored and answered in short form."""

    choices: tuple[str, ...]
    default: str

    def parse(self, text: str) -> str:
        """Parse long or short form in any case; returns the short form (``EXT``)."""
        if text[:1] in "\"'":
            raise ScpiError(-104, text)
        word = text.upper()
        for choice in self.choices:
            mnemonic = Mnemonic.parse(choice)
            if mnemonic.matches(word):
                return mnemonic.short
        raise ScpiError(-224, text)

    def format(self, value: object) -> str:
        """Query answer: the short form."""
        return str(value)


ParameterType = Numeric | Boolean | Choice
