"""A monitor snapshot through the server's wire format (JSON + numpy buffers) and back: the client
shows exactly the numbers, masks and images the server's monitor computed."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.monitor import RegionPlan, RunMonitor
from app.server.protocol import decode, encode
from app.server.snapshots import SnapshotError, from_wire, to_wire
from conventions.frames import FRAME_NAMES
from tests.analysis.virtual_lab_data import lab_calibration, lab_config, lab_shots


@pytest.fixture(scope="module")
def snap():
    shots = lab_shots("squeezed", 30, seed=3)
    mon = RunMonitor(lab_calibration(lab_config()), RegionPlan(), warmup_shots=9)
    for i, (d, f) in enumerate(zip(shots.directions, shots.frames)):
        mon.add(i, str(d), dict(zip(FRAME_NAMES, f)))
    return mon.snapshot()


def test_a_snapshot_survives_the_wire(snap) -> None:
    back = from_wire(decode(encode(to_wire(snap))))
    assert type(back) is type(snap) and back.result is not None and snap.result is not None
    assert [g.name for g in back.geometries] == [g.name for g in snap.geometries]
    assert back.kinds == snap.kinds and back.shots_counted == snap.shots_counted
    for i in range(len(snap.geometries)):
        assert back.result.to_dict(i) == snap.result.to_dict(i)
    np.testing.assert_array_equal(back.splitting_ratios, snap.splitting_ratios)
    assert back.clouds == snap.clouds and back.roi_half_px == snap.roi_half_px
    for k, v in snap.history.items():
        np.testing.assert_array_equal(back.history[k], v)
    np.testing.assert_array_equal(back.latest_images.n2.atoms, snap.latest_images.n2.atoms)
    np.testing.assert_array_equal(back.crosstalk.n_ab, snap.crosstalk.n_ab)
    # the rebuilt region counter counts the same atoms
    c0 = snap.counter.count(snap.mean_n1[None], snap.mean_n2[None])
    c1 = back.counter.count(back.mean_n1[None], back.mean_n2[None])
    np.testing.assert_array_equal(c0.n1a, c1.n1a)
    np.testing.assert_array_equal(c0.n2b, c1.n2b)


@pytest.mark.parametrize("bad", [
    {"__dc__": "Popen", "args": ["sh"]},
    {"__dc__": "Split", "axis": "x", "evil": 1},
    {"__float__": "1e999"},
    {"__items__": [[1]]},
    {"__counter__": {"geometries": []}},
])
def test_anything_else_is_refused(bad) -> None:
    with pytest.raises(SnapshotError):
        from_wire(bad)
