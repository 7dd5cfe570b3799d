"""Opt-in: the PrawnDO driver against a real card, e.g. ``pytest -m hardware --device-address /dev/ttyACM0``.

It drives the card's outputs (a 1 ms pulse on output 0): use a card that is not wired to the experiment.
"""
from __future__ import annotations

import pytest

from drivers.prawndo import PrawnDO, RunStatus
from drivers.pulse_program import compile_program


@pytest.mark.hardware
def test_real_card_programs_runs_and_stops(request: pytest.FixtureRequest) -> None:
    address = request.config.getoption("--device-address")
    if "::" in address:
        pytest.skip(f"{address} is a VISA resource, not a PrawnDO serial port")
    with PrawnDO(address, timeout_s=1.0) as card:
        assert card.version().count(".") == 2
        assert card.board() in ("pico1", "pico2")
        if not card.status().idle:
            card.abort()
            card.wait_until_stopped(2.0)
        prog = compile_program({"out0": [(1e-3, 1e-3)]}, {"out0": 0}, clock_hz=card.clock_hz,
                               max_instructions=card.max_instructions)
        for upload in ("binary", "text"):
            assert card.program(prog.instructions, upload=upload) == upload
            card.verify(prog.instructions)
        card.start()
        assert card.wait_until_stopped(2.0).run is RunStatus.STOPPED
        assert card.outputs() == 0
        assert card.abort() is False
