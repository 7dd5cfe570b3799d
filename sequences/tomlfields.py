"""Typed, validated access to a TOML table; every error names the file, the field, the value and what was expected."""
from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class FieldError(ValueError):
    """A field of a TOML document is missing, of the wrong type, out of range or unknown."""


_MISSING: Any = object()


def parse_toml(text: str, source: str, error: type[FieldError] = FieldError) -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes ``error`` naming ``source`` and the position."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise error(f"{source}: tables or arrays nested too deeply; expected a plain TOML "
                    f"document") from None


MAX_TEXT_BYTES = 4_000_000     # plans, configurations and records are a few kB


def read_text(path: str | Path, error: type[FieldError] = FieldError) -> str:
    """The UTF-8 text of a file (at most MAX_TEXT_BYTES); a missing, unreadable, too large or
    non-UTF-8 file raises ``error``."""
    path = Path(path)
    try:
        if path.is_dir():
            raise error(f"{path}: is a directory; expected a TOML file")
        with path.open("rb") as f:
            data = f.read(MAX_TEXT_BYTES + 1)
        if len(data) > MAX_TEXT_BYTES:
            raise error(f"{path}: larger than {MAX_TEXT_BYTES // 1_000_000} MB; expected a TOML "
                        f"file of a few kB")
        return data.decode("utf-8")
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None


class Table:
    """A TOML table being read; call ``done()`` at the end to reject unknown keys (typos)."""

    def __init__(self, data: object, source: str, path: str = "",
                 error: type[FieldError] = FieldError) -> None:
        self.source = source
        self.path = path
        self.error = error
        if not isinstance(data, dict):
            raise error(f"{source}: {path or 'document'} = {data!r}: expected a table")
        self.data: dict[str, Any] = data
        self._seen: set[str] = set()

    def name(self, key: str) -> str:
        """The dotted name of a field, e.g. ``imaging.tof_s``."""
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, value: object, expected: str) -> FieldError:
        """The error for a bad value of ``key``."""
        return self.error(f"{self.source}: {self.name(key)} = {value!r}: expected {expected}")

    def has(self, key: str) -> bool:
        """True if the key is present (marks it as known)."""
        self._seen.add(key)
        return key in self.data

    def _get(self, key: str, default: Any) -> Any:
        self._seen.add(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise self.error(f"{self.source}: missing field {self.name(key)}")
        return default

    def _absent(self, key: str, default: Any) -> bool:
        """True if the key is absent and has a default (returned as is, unchecked)."""
        self._seen.add(key)
        return key not in self.data and default is not _MISSING

    def number(self, key: str, default: Any = _MISSING, *, minimum: float | None = None,
               maximum: float | None = None, positive: bool = False, unit: str = "") -> float:
        """A finite float (ints accepted, booleans not) within [minimum, maximum]; > 0 if positive."""
        if self._absent(key, default):
            return default
        value = self._get(key, default)
        bounds = []
        if positive:
            bounds.append("> 0")
        if minimum is not None:
            bounds.append(f">= {minimum:g}")
        if maximum is not None:
            bounds.append(f"<= {maximum:g}")
        expected = "a finite number" + (f" in {unit}" if unit else "") \
            + (f" ({', '.join(bounds)})" if bounds else "")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, value, expected)
        value = float(value)
        if not math.isfinite(value) or (positive and value <= 0) \
                or (minimum is not None and value < minimum) \
                or (maximum is not None and value > maximum):
            raise self.fail(key, value, expected)
        return value

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int | None = None,
                maximum: int | None = None) -> int:
        """An integer (not a boolean, not a float) within [minimum, maximum]."""
        if self._absent(key, default):
            return default
        value = self._get(key, default)
        bounds = [f">= {minimum}"] if minimum is not None else []
        bounds += [f"<= {maximum}"] if maximum is not None else []
        expected = "an integer" + (f" ({', '.join(bounds)})" if bounds else "")
        if isinstance(value, bool) or not isinstance(value, int) \
                or (minimum is not None and value < minimum) \
                or (maximum is not None and value > maximum):
            raise self.fail(key, value, expected)
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        """true or false."""
        if self._absent(key, default):
            return default
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, value, "true or false")
        return value

    def string(self, key: str, default: Any = _MISSING, *,
               choices: Sequence[str] | None = None) -> str:
        """A string, one of ``choices`` if given."""
        if self._absent(key, default):
            return default
        value = self._get(key, default)
        if choices is not None:
            if value not in choices:
                raise self.fail(key, value, "one of " + ", ".join(repr(c) for c in choices))
        elif not isinstance(value, str):
            raise self.fail(key, value, "a string")
        return value

    def table(self, key: str, *, required: bool = False) -> Table:
        """A sub-table (an empty one if absent and not required)."""
        value = self._get(key, _MISSING if required else {})
        if not isinstance(value, dict):
            raise self.fail(key, value, "a table")
        return Table(value, self.source, self.name(key), self.error)

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        """The value as parsed, unchecked (the caller validates it)."""
        return self._get(key, default)

    def done(self) -> None:
        """Raise for keys nobody asked for (usually typos), naming them and the known ones."""
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            known = ", ".join(sorted(self._seen)) or "none"
            raise self.error(f"{self.source}: unknown field(s) "
                             f"{', '.join(self.name(k) for k in unknown)}; known fields here: {known}")
