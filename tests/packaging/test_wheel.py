"""The wheel holds everything steerlab needs outside its checkout: built here, installed into a
fresh virtual environment (its dependencies come from the test environment through a .pth line;
steerlab itself only from the wheel), and run from an empty directory with an empty home: a
headless run and the operator window (offscreen) with its screenshot."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp / "dist").glob("steerlab-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True, timeout=300)
    return venv


def env_for(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XDG_", "PYTHON", "STEERLAB_")) and k not in ("HOME", "VIRTUAL_ENV")}
    return dict(env, HOME=str(home), QT_QPA_PLATFORM="offscreen")


def test_the_wheel_ships_the_configurations_and_plans(installed: Path) -> None:
    (wheel,) = installed.parent.glob("dist/*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "app" / "configs").rglob("*.toml")}
    assert shipped and shipped <= names, shipped - names
    assert not any(n.startswith(("tests/", "benchmarks/", "configs/")) for n in names)


def test_installed_steerlab_runs_from_an_empty_directory(installed: Path, tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = env_for(home)
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import app, app.paths as p; "
                            "print(app.__file__); print(p.in_checkout()); print(p.default_plan())"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    assert Path(where[0]).is_relative_to(installed) and where[1] == "False"
    assert Path(where[2]).is_file() and Path(where[2]).is_relative_to(installed)

    proc = subprocess.run([str(installed / "bin" / "steerlab"), "run", "--shots", "30", "--no-progress", "--json"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    runs = home / ".local" / "share" / "steerlab" / "runs"
    files = list(runs.glob("*.h5"))
    assert files == [Path(summary["file"])] and summary["final_state"] == "completed", summary
    assert summary["failed_shots"] == 0
    copy = home / ".config" / "steerlab" / "virtual-lab.toml"
    assert f'data_dir = "{runs}"' in copy.read_text()
    assert not list(work.iterdir())                          # nothing written where it was started

    # the user's copy is theirs: edited, it is used and kept
    copy.write_text(copy.read_text().replace(f'data_dir = "{runs}"', f'data_dir = "{tmp_path / "mine"}"'))
    proc = subprocess.run([str(installed / "bin" / "steerlab"), "run", "--shots", "30", "--no-progress"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "mine").glob("*.h5"))) == 1 and len(list(runs.glob("*.h5"))) == 1


def test_installed_operator_window_runs_and_saves_its_picture(installed: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.run([str(installed / "bin" / "steerlab"), "gui", "--shots", "30", "--screenshot",
                           str(tmp_path / "window.png")], cwd=tmp_path, env=env_for(home),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "window.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((home / ".local" / "share" / "steerlab" / "runs").glob("*.h5"))) == 1


def test_an_unwritable_home_is_one_line(installed: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a directory")
    proc = subprocess.run([str(installed / "bin" / "steerlab"), "run", "--shots", "30"], cwd=tmp_path,
                          env=env_for(home), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot create the user's copy" in proc.stderr and "--config" in proc.stderr
