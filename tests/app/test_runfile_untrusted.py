"""Untrusted run files: crafted files whose objects point outside the file (external storage,
external links, virtual datasets), soft links, or objects of another type or shape are refused by
open_run, ``steerlab analyze``, ``steerlab repair`` and the GUI's review, with one line naming the
object; repair writes nothing, so no foreign byte reaches a "clean" copy."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from app.cli import main
from app.runfile import RunFileError, open_run, repair
from tests.app.runfile_helpers import H, W, write_run

SECRET = b"SECRET-BYTES-OF-ANOTHER-FILE" * 512


def _replace(f: h5py.File, name: str, make: Callable[[h5py.File, str], object]) -> None:
    del f[name]
    make(f, name)


def _external_frames(secret: Path) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        shape = f["frames"].shape
        attrs = dict(f["frames"].attrs)
        nbytes = int(np.prod(shape)) * 2
        _replace(f, "frames", lambda g, n: g.create_dataset(
            n, shape=shape, dtype="<u2", external=[(str(secret), 0, nbytes)]))
        f["frames"].attrs.update(attrs)
    return edit


def _external_results(secret: Path) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        _replace(f, "results/slot0", lambda g, n: g.create_dataset(
            n, shape=(64,), dtype="u1", external=[(str(secret), 0, 64)]))
    return edit


def _external_link(secret_h5: Path) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f["meta/calibration_json"]
        f["meta/calibration_json"] = h5py.ExternalLink(str(secret_h5), "/calibration_json")
    return edit


def _virtual_frames(secret_h5: Path) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        shape = f["frames"].shape
        attrs = dict(f["frames"].attrs)
        layout = h5py.VirtualLayout(shape=shape, dtype="<u2")
        layout[:] = h5py.VirtualSource(str(secret_h5), "frames", shape=shape)
        del f["frames"]
        f.create_virtual_dataset("frames", layout)
        f["frames"].attrs.update(attrs)
    return edit


def _soft_link(f: h5py.File) -> None:
    del f["meta/config_json"]
    f["meta/config_json"] = h5py.SoftLink("/meta/plan_json")


def _extra_soft_link(f: h5py.File) -> None:
    f["extra/images"] = h5py.SoftLink("/frames")


def _wrong_type(f: h5py.File) -> None:
    _replace(f, "run/end_state", lambda g, n: g.create_dataset(n, data=3.5))


def _wrong_shape(f: h5py.File) -> None:
    _replace(f, "shots/n_complete", lambda g, n: g.create_dataset(n, data=np.arange(3)))


def _group_for_dataset(f: h5py.File) -> None:
    _replace(f, "meta/plan_json", lambda g, n: g.create_group(n))


@pytest.fixture()
def foreign(tmp_path: Path) -> tuple[Path, Path]:
    """A raw 'secret' file and an HDF5 file another user owns, which run files must never read."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET * 8)
    secret_h5 = tmp_path / "secret.h5"
    with h5py.File(secret_h5, "w") as f:
        f["calibration_json"] = '{"stolen": true}'
        f["frames"] = np.full((6, 5, H, W), 4242, dtype="<u2")
    return secret, secret_h5


CASES = {
    "external-storage-frames": (lambda s, h: _external_frames(s),
                                "/frames stores its data in external file"),
    "external-storage-results": (lambda s, h: _external_results(s),
                                 "/results/slot0 stores its data in external file"),
    "external-link": (lambda s, h: _external_link(h), "/meta/calibration_json is an external link"),
    "virtual-dataset": (lambda s, h: _virtual_frames(h), "/frames is a virtual dataset"),
    "soft-link": (lambda s, h: _soft_link, "/meta/config_json is a soft link to /meta/plan_json"),
    "extra-soft-link": (lambda s, h: _extra_soft_link, "/extra/images is a soft link to /frames"),
    "wrong-type": (lambda s, h: _wrong_type, "/run/end_state is float64 \\(\\), expected a scalar "
                                             "fixed-size string"),
    "wrong-shape": (lambda s, h: _wrong_shape, "/shots/n_complete is int64 \\(3,\\), expected a "
                                               "scalar integer"),
    "group-for-dataset": (lambda s, h: _group_for_dataset, "/meta/plan_json is a Group, expected "
                                                           "a dataset"),
}


def _crafted(tmp_path: Path, foreign: tuple[Path, Path], case: str) -> Path:
    path = tmp_path / f"{case}.h5"
    write_run(path, 6, compression="none", results={"regions": {"A": 1}})
    with h5py.File(path, "a") as f:
        CASES[case][0](*foreign)(f)
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_open_run_refuses_crafted_files_naming_the_object(tmp_path: Path, foreign: tuple[Path, Path],
                                                         case: str) -> None:
    path = _crafted(tmp_path, foreign, case)
    with pytest.raises(RunFileError, match=CASES[case][1]) as info:
        open_run(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


@pytest.mark.parametrize("case", ["external-storage-frames", "external-link", "virtual-dataset",
                                  "soft-link"])
def test_repair_writes_nothing_from_a_crafted_file(tmp_path: Path, foreign: tuple[Path, Path],
                                                   case: str, capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    path = _crafted(tmp_path, foreign, case)
    out = tmp_path / "clean.h5"
    with pytest.raises(RunFileError, match=CASES[case][1]):
        repair(path, out)
    assert main(["repair", str(path), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("steerlab repair: ") and "refused" in err
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("case", ["external-storage-frames", "external-link", "virtual-dataset"])
def test_analyze_refuses_a_crafted_file_in_one_line(tmp_path: Path, foreign: tuple[Path, Path],
                                                    case: str, capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    path = _crafted(tmp_path, foreign, case)
    outdir = tmp_path / "out"
    assert main(["analyze", str(path), "--out", str(outdir), "--workers", "1",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("steerlab analyze: ")
    assert str(path) in err and "refused" in err
    assert not outdir.exists() or not any(outdir.iterdir())


def test_gui_review_refuses_a_crafted_file(tmp_path: Path, foreign: tuple[Path, Path]) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from app.gui.sources import ReviewSource

    path = _crafted(tmp_path, foreign, "external-storage-frames")
    with pytest.raises(RunFileError, match="/frames stores its data in external file"):
        ReviewSource(path)


def test_an_ordinary_run_file_passes_and_extra_hard_linked_objects_are_ignored(tmp_path: Path
                                                                               ) -> None:
    path = tmp_path / "ok.h5"
    write_run(path, 3, compression="blosc-lz4")
    with h5py.File(path, "a") as f:
        f["notes/comment"] = "added by someone's viewer"
        f["notes/frames_again"] = f["frames"]          # a hard link: inside the file
    with open_run(path) as run:
        assert run.n_shots == 3
