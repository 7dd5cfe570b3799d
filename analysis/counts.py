"""Reading region atom counts from CSV: header ``direction,N1A,N2A,N1B,N2B`` (extra columns ignored)."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

REQUIRED = ("direction", "N1A", "N2A", "N1B", "N2B")


MAX_ATOMS = 1e12   # atoms; larger values are not counts (and would overflow the 4th moments)


class CountsFileError(ValueError):
    """A counts file cannot be read; the message names the file, the line and the problem."""


@dataclass(frozen=True)
class Counts:
    """Shots in file order: direction ('x'|'y'|'z') and atom numbers (atoms, floats)."""

    directions: NDArray[np.str_]
    n1a: NDArray[np.float64]
    n2a: NDArray[np.float64]
    n1b: NDArray[np.float64]
    n2b: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.directions.size)


def read_counts_csv(path: str | Path) -> Counts:
    """Read a counts CSV; raises CountsFileError naming file, line and problem on bad input."""
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise CountsFileError(f"{path}: file not found") from None
    except OSError as exc:
        raise CountsFileError(f"{path}: cannot open: {exc.strerror or exc}") from None
    with handle:
        try:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise CountsFileError(f"{path}: empty file, expected a header "
                                      f"{','.join(REQUIRED)}")
            names = [h.strip() for h in header]
            missing = [c for c in REQUIRED if c not in names]
            if missing:
                raise CountsFileError(f"{path}:1: missing column(s) {', '.join(missing)}; "
                                      f"header is {','.join(names)!r}, expected "
                                      f"{','.join(REQUIRED)}")
            idx = [names.index(c) for c in REQUIRED]
            dirs: list[str] = []
            vals: list[list[float]] = []
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) <= max(idx):
                    raise CountsFileError(f"{path}:{line}: {len(row)} fields, expected at least "
                                          f"{max(idx) + 1}")
                d = row[idx[0]].strip().lower()
                if d not in ("x", "y", "z"):
                    raise CountsFileError(f"{path}:{line}: unknown direction {row[idx[0]]!r}, "
                                          "expected x, y or z")
                nums = []
                for col, i in zip(REQUIRED[1:], idx[1:]):
                    cell = row[i].strip()
                    try:
                        v = float(cell)
                    except ValueError:
                        raise CountsFileError(f"{path}:{line}: {col} = {cell!r} is not a number"
                                              ) from None
                    if not math.isfinite(v):
                        raise CountsFileError(f"{path}:{line}: {col} = {cell!r} is not finite")
                    if abs(v) > MAX_ATOMS:
                        raise CountsFileError(f"{path}:{line}: {col} = {cell!r}: expected an atom "
                                              f"number within +-{MAX_ATOMS:.0e}")
                    nums.append(v)
                dirs.append(d)
                vals.append(nums)
        except UnicodeDecodeError as exc:
            raise CountsFileError(f"{path}: not a UTF-8 text file ({exc.reason} at byte "
                                  f"{exc.start})") from None
        except csv.Error as exc:
            raise CountsFileError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None
    if not dirs:
        raise CountsFileError(f"{path}: no shots after the header")
    arr = np.asarray(vals, dtype=np.float64)
    return Counts(np.asarray(dirs), arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])


def write_counts_csv(path: str | Path, counts: Counts) -> None:
    """Write counts in the format :func:`read_counts_csv` reads."""
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(REQUIRED)
        for row in zip(counts.directions, counts.n1a, counts.n2a, counts.n1b, counts.n2b):
            w.writerow([row[0], *(repr(float(v)) for v in row[1:])])
