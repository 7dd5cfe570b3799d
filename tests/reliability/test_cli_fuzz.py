"""Bad input through the real command lines, CI size (benchmarks/fuzz_inputs.py --cli: full size).

Every input that issue 15 found escaping runs in its own interpreter (`python -m app.cli`); a
seeded sample of mutated configurations, plans, counts and options runs in forked children of a
process that imported steerlab once. No traceback, no hang, no death by signal, and every
rejection names the file or option.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.reliability.cli_fuzz import ForkRunner, listed_cases, random_cases, run_subprocess

RANDOM_CASES = 60


def report(outcomes) -> list[str]:
    return [f"{o.case.name} {o.case.argv}: {p}" for o in outcomes for p in o.problems]


def test_every_listed_input_ends_cleanly_in_a_real_interpreter(tmp_path: Path) -> None:
    cases = listed_cases()
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda c: run_subprocess(c, tmp_path), cases))
    assert not report(outcomes)
    rejected = sum(o.rc == 2 for o in outcomes)
    assert rejected >= len(cases) - 8          # nearly all of them are bad input


def test_mutated_inputs_end_cleanly(tmp_path: Path) -> None:
    outcomes = ForkRunner().run_many(random_cases(RANDOM_CASES, seed=15), tmp_path, jobs=2)
    assert len(outcomes) == RANDOM_CASES
    assert not report(outcomes)
