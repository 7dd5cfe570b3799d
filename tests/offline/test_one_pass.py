"""`steerlab analyze` counts the ratio scan, the patterns and the gap scan in one pass, from atom
images computed only on the pixels the masks read: the same numbers as one full-frame pass per set."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis.geometries import gap_width_scan
from analysis.imaging import ImagingCalibration, shot_atom_images
from analysis.moments import GroupedSums, spin_components
from analysis.monitor import frames_by_name
from app.commands.analyze import DEFAULT_WIDTHS, patterns
from app.offline import analysis as offline
from app.offline import open_analysis
from app.runfile import open_run
from tests.offline.runs import write_virtual_run


def full_frame_count_chunk(path: str, rows: tuple[int, int], offsets: tuple[int, int, int],
                           calibration: dict[str, float], spec: offline.CounterSpec) -> tuple[Any, Any, Any]:
    """Reference: count_chunk as it was before the one-pass analysis (atom images of whole frames)."""
    cal = ImagingCalibration.from_dict(calibration)
    counter, empty = spec.counter(), spec.empty_counter()
    g = counter.n_geometries
    sums = GroupedSums.empty(g)
    sums.counts[:] = offsets
    det = np.zeros((6, g))
    with open_run(path) as run:
        table = run.table()
        status = table["status"][rows[0]:rows[1]]
        dirs = table["direction"][rows[0]:rows[1]]
        names = run.frame_names
        for k, frames in offline._shots(run, rows):
            if offline._status(status[k]) != "ok":
                continue
            im = shot_atom_images(frames_by_name(frames, names), cal)
            c = counter.count(im.n1.atoms, im.n2.atoms)
            sa, sb, ntot = spin_components(c.n1a, c.n2a, c.n1b, c.n2b)
            sums.add_shot(offline._status(dirs[k]), sa, sb, ntot)
            if empty is not None:
                e = empty.count(im.n1.atoms, im.n2.atoms)
                v = np.stack([(e.n1a - e.n2a) / 2, (e.n1b - e.n2b) / 2])
                det += np.concatenate([[np.ones(g)], v, v * v, v[:1] * v[1:]])
    return sums.sums, sums.counts - np.asarray(offsets), det


def assert_same_rows(fast: list[dict[str, Any]], reference: list[dict[str, Any]]) -> None:
    assert len(fast) == len(reference)
    for a, b in zip(fast, reference):
        assert a.keys() == b.keys()
        for key in a:
            x, y = a[key], b[key]
            if isinstance(y, float) and not isinstance(x, bool):
                assert x == pytest.approx(y, rel=1e-12, abs=1e-12), key
            else:
                assert x == y, key


@pytest.fixture(scope="module")
def run_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_virtual_run(tmp_path_factory.mktemp("one-pass") / "squeezed.h5", "squeezed", 150, 5,
                             failed_every=40)


def test_one_pass_gives_the_numbers_of_one_full_frame_pass_per_set(run_path: Path, monkeypatch) -> None:
    fast = open_analysis(run_path, chunk=40)
    pos = fast.position_for_ratio(0.77, "x", 1.0)
    sets = [fast.ratio_scan_geometries("x", 1.0), patterns("x", 1.0), gap_width_scan("x", pos, DEFAULT_WIDTHS)]
    one_pass = fast.analyse_sets(sets)
    assert [len(a.geometries) for a in one_pass] == [len(s) for s in sets]
    assert all(a.detection_noise is not None for a in one_pass)   # the atom-free masks were counted
    monkeypatch.setattr(offline, "count_chunk", full_frame_count_chunk)
    before = open_analysis(run_path, chunk=40)
    for geoms, a in zip(sets, one_pass):
        assert_same_rows(a.table(), before.analyse(geoms).table())


def test_read_boxes_hold_every_counted_pixel_and_its_neighbours(run_path: Path) -> None:
    a = open_analysis(run_path)
    m1, _ = a.mean_images()
    counter = offline.RegionCounter(a.ratio_scan_geometries("y", 2.0) + patterns("x", 1.0), a.clouds(),
                                    m1.shape, roi_half_px=a.roi_half_px())
    boxes = offline.read_boxes([counter], m1.shape)
    for state in (1, 2):
        rows, cols = counter.roi_bbox(state)
        r, c = boxes[state]
        assert r.start == max(rows.start - 1, 0) and r.stop == min(rows.stop + 1, m1.shape[0])
        assert c.start == max(cols.start - 1, 0) and c.stop == min(cols.stop + 1, m1.shape[1])
        weights = np.zeros(m1.shape, dtype=bool)
        for i in range(counter.n_geometries):
            wa, wb = counter.weights(i, state)
            weights |= (wa > 0) | (wb > 0)
        inside = np.zeros(m1.shape, dtype=bool)
        inside[r, c] = True
        assert weights.any() and not (weights & ~inside).any()


def test_the_run_file_is_opened_once_per_thread_while_it_is_unchanged(run_path: Path, tmp_path: Path) -> None:
    with offline._run_file(str(run_path)) as first:
        pass
    with offline._run_file(str(run_path)) as again:
        assert again is first
    copy = tmp_path / "copy.h5"
    copy.write_bytes(run_path.read_bytes())
    with offline._run_file(str(copy)) as other:
        assert other is not first and other.path == copy
    os.utime(copy, ns=(1, 1))                         # another modification time: opened again
    with offline._run_file(str(copy)) as reopened:
        assert reopened is not other and reopened.n_shots == other.n_shots


def test_counters_are_built_once_for_the_chunks_of_one_spec(run_path: Path) -> None:
    a = open_analysis(run_path)
    m1, _ = a.mean_images()
    spec = offline.CounterSpec(tuple(patterns("x", 1.0)), a.clouds(), None, m1.shape, a.roi_half_px())
    counter, empty = offline._counters(spec)
    assert empty is None and offline._counters(spec)[0] is counter
    same = offline.CounterSpec(tuple(patterns("x", 1.0)), a.clouds(), None, m1.shape, a.roi_half_px())
    assert offline._counters(same)[0] is counter              # equal, as unpickled in a worker
    other = offline.CounterSpec(tuple(patterns("y", 2.0)), a.clouds(), None, m1.shape, a.roi_half_px())
    assert offline._counters(other)[0].geometries == list(other.geometries)
