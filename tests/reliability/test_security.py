"""Security basics: servers listen on 127.0.0.1 by default, nothing loads pickles or evaluates code
from files, run files stay inside the configured data directory."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from drivers.simulated.lab import VirtualLab
from drivers.simulated.prawndo_emulator import PrawnDOEmulator
from drivers.simulated.sma100b_emulator import SMA100BEmulator

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "drivers", "sequences", "analysis", "calibration")


def _calls(tree: ast.AST) -> list[tuple[str, str, int]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in ("eval", "exec", "compile", "__import__"):
                out.append(("", f.id, node.lineno))
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                out.append((f.value.id, f.attr, node.lineno))
    return out


def test_no_code_or_pickle_from_files() -> None:
    bad = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            for mod, name, line in _calls(tree):
                if (mod == "" and name in ("eval", "exec", "compile", "__import__")) \
                        or (mod in ("pickle", "marshal", "yaml", "shelve", "dill", "joblib"))\
                        or (mod in ("np", "numpy") and name == "load"):
                    bad.append(f"{path.relative_to(ROOT)}:{line}: {mod}.{name}")
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom)
                                                             and node.module else [])
                    bad += [f"{path.relative_to(ROOT)}: imports {n}" for n in names
                            if n.split(".")[0] in ("pickle", "marshal", "shelve", "dill", "yaml")]
    assert bad == []


def test_run_files_hold_no_object_data() -> None:
    """Every field of the run file's tables is a plain number or byte string; texts are JSON."""
    from app.runfile import schema as S
    assert all(S.SHOT_DTYPE[name].kind in "iufSb" for name in S.SHOT_DTYPE.names)
    reader = (ROOT / "app" / "runfile" / "reader.py").read_text()
    assert "json.loads" in reader and "dtype=object" not in reader and "dtype='O'" not in reader


@pytest.mark.parametrize("make", [SMA100BEmulator, PrawnDOEmulator])
def test_emulators_listen_on_localhost_only(make) -> None:
    emu = make()
    emu.start()
    try:
        sock = emu._server if hasattr(emu, "_server") and emu._server is not None else emu._listener
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        emu.stop()


def test_the_virtual_lab_listens_on_localhost_only() -> None:
    with VirtualLab() as lab:
        assert "127.0.0.1" in lab.microwave_address and "127.0.0.1" in lab.card_address


def test_run_files_cannot_escape_the_data_directory(tmp_path: Path) -> None:
    from app.labconfig import LabConfigError
    from tests.app.test_session import lab_config
    cfg = lab_config(tmp_path)
    for bad in ("../x.h5", "/tmp/x.h5", "a/../../x.h5"):
        with pytest.raises(LabConfigError, match="outside the data directory"):
            cfg.output_path(bad)
