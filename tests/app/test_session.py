"""End to end on the virtual lab: lab config + plan -> RunSession (real drivers over 127.0.0.1,
sequencer, writer, live monitor) -> a complete run file with the criteria."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from app.labconfig import LabConfig, LabConfigError, load_lab_config, parse_lab_config
from app.runfile import open_run
from app.session import RunSession, SessionError
from drivers.errors import DriverError
from sequences.control import RunState
from sequences.plan import parse_plan

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "virtual-lab.toml"
SMALL_LAB = """
[virtual_lab]
frame_shape = [224, 128]
cloud_centre_px = [40.0, 60.0]
"""
PLAN = """
[run]
shots = {shots}
[state]
kind = "{state}"
atom_number_sd = 0.0
[imaging]
reference_delay_s = 5e-3
dark_delay_s = 5e-3
frame_timeout_s = 2.0
[retry]
max_attempts = 2
reconnect_attempts = 1
reconnect_delay_s = 0.01
on_exhausted = "pause"
"""


def lab_config(tmp_path: Path) -> LabConfig:
    """The shipped virtual-lab config with small frames and data_dir in tmp_path."""
    text = CONFIG.read_text()
    text = text.replace('data_dir = "../../runs"', f'data_dir = "{tmp_path / "runs"}"')
    text = text.replace("[virtual_lab]\n", SMALL_LAB.strip() + "\n", 1)
    return parse_lab_config(text, "test-lab.toml", base_dir=CONFIG.parent)


def plan(cfg: LabConfig, shots: int, state: str = "squeezed"):
    return parse_plan(PLAN.format(shots=shots, state=state), "test-plan.toml", cfg.microwave_calibration)


def test_shipped_configs_load() -> None:
    assert load_lab_config(CONFIG).kind == "virtual"
    template = CONFIG.parent / "real-lab.template.toml"
    # the template names a vendor's producer that this machine does not have: one clear line
    with pytest.raises(LabConfigError, match=r"camera\.cti = '/opt/vendor/lib/producer\.cti'.*not a file"):
        load_lab_config(template)
    real = parse_lab_config(_with_viky(template.read_text()), str(template), base_dir=CONFIG.parent)
    assert real.kind == "real" and real.camera.kind == "genicam" and real.sequencer.start_mode == "hardware"


def _with_viky(text: str) -> str:
    import genicam
    viky = Path(genicam.__file__).parent / "viky.cti"
    return text.replace('"/opt/vendor/lib/producer.cti"', f'"{viky}"')


@pytest.mark.parametrize("state", ["squeezed", "coherent"])
def test_a_run_on_the_virtual_lab_writes_the_file_and_the_criteria(tmp_path: Path, state: str) -> None:
    cfg = lab_config(tmp_path)
    shots = 240
    with RunSession(cfg, plan(cfg, shots, state), f"{state}.h5", seed=7) as s:
        s.start()
        assert s.wait(120) is RunState.COMPLETED
    with open_run(s.path) as run:
        assert run.n_shots == shots and run.end_state == "completed"
        table = run.table()
        assert list(table["index"]) == list(range(shots))
        results = run.results
        assert results is not None and results["shots_counted"] == shots
    chosen = results["criteria"][0]
    xi2 = chosen["xi_R2"]
    assert chosen["n_shots"] == {"x": 80, "y": 80, "z": 80}
    assert results["regions"][0]["kind"] == "chosen" and results["regions"][0]["name"].startswith("split x")
    cor = chosen["corrected"]["xi_R2"]
    if state == "squeezed":          # -3.2 dB prepared: clearly below 1, raw and corrected
        assert xi2["value"] < 1.0                      # raw: detection noise included
        assert cor["value"] + 2.5 * cor["error"] < 1.0
    else:                            # raw: detection noise adds; corrected: consistent with 1
        assert xi2["value"] > 1.0 - xi2["error"]
        assert abs(cor["value"] - 1.0) < 3 * cor["error"]
    # the live numbers equal a recomputation from the file
    assert s.recompute(s.monitor.regions).result()["E_Ent"].value[0] == pytest.approx(
        chosen["E_Ent"]["value"], rel=1e-9)


def test_instrument_dropped_mid_run_pauses_reconnects_and_resumes(tmp_path: Path) -> None:
    cfg = lab_config(tmp_path)
    session = RunSession(cfg, plan(cfg, 30), "fault.h5", seed=3)
    paused = threading.Event()

    def on_progress(p) -> None:
        if p.index == 10:       # the generator goes away and refuses to come back
            session.lab.microwave_emulator.refuse_connections = True
            session.lab.microwave_emulator.drop_connections()

    session.add_progress_listener(on_progress)
    session.add_state_listener(lambda ev: paused.set() if ev.state is RunState.PAUSED else None)
    with session:
        session.start()
        assert paused.wait(30)
        assert session.state is RunState.PAUSED and "microwave" in session.error
        status = session.instrument_status()["microwave"]
        assert status.last_error and not status.connected
        with pytest.raises(DriverError):
            session.reconnect("microwave")              # still refused: a clear driver error
        session.lab.microwave_emulator.refuse_connections = False
        session.reconnect("microwave")
        assert session.instrument_status()["microwave"].last_error == ""
        session.resume()
        assert session.wait(60) is RunState.COMPLETED
    with open_run(session.path) as run:
        t = run.table()
        ok = t["status"] == b"ok" if t["status"].dtype.kind == "S" else t["status"] == "ok"
        slots = t["cycle"][ok] * 3 + t["sequence_index"][ok]
        assert sorted(slots.tolist()) == list(range(30))          # every slot exactly once
        assert (~ok).sum() >= 1 and len(set(t["index"].tolist())) == len(t["index"])
        assert np.all(np.diff(t["index"]) == 1)


def test_commands_in_the_wrong_state_and_unreachable_instruments(tmp_path: Path) -> None:
    cfg = lab_config(tmp_path)
    s = RunSession(cfg, plan(cfg, 3), "x.h5")
    with pytest.raises(SessionError, match="not possible while the run is idle"):
        s.pause()
    with pytest.raises(SessionError, match="not been started"):
        s.reconnect("microwave")
    s.close()
    # a real lab whose instruments are not there: a clear error, no file, nothing left running
    text = _with_viky((CONFIG.parent / "real-lab.template.toml").read_text())
    text = text.replace('"TCPIP0::192.168.1.20::inst0::INSTR"', '"TCPIP0::127.0.0.1::1::SOCKET"')
    text = text.replace('data_dir = "/data/steerlab"', f'data_dir = "{tmp_path}"')
    real = parse_lab_config(text, "real.toml", base_dir=CONFIG.parent)
    s = RunSession(real, plan(real, 3), "real.h5")
    with pytest.raises(DriverError):
        s.start()
    assert not s.path.exists()
    s.close()


def test_output_paths_stay_in_the_data_directory(tmp_path: Path) -> None:
    cfg = lab_config(tmp_path)
    root = (tmp_path / "runs").resolve()
    assert cfg.output_path("a/b.h5") == root / "a" / "b.h5"
    for bad in ("../x.h5", "/etc/x.h5", "a/../../x.h5", "x.txt"):
        with pytest.raises(LabConfigError, match="data directory|.h5"):
            cfg.output_path(bad)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(LabConfigError, match="outside"):
        cfg.output_path("link/x.h5")
    (root / "taken.h5").write_bytes(b"")
    with pytest.raises(SessionError, match="already exists"):
        RunSession(cfg, plan(cfg, 3), "taken.h5")
    shutil.rmtree(root)


@pytest.mark.parametrize("edit, match", [
    (("kind = \"virtual\"", "kind = \"simulated\""), "lab.kind"),
    (("mw_gate = 0", "mw_gate = 1"), "different output bit"),
    (("power_dbm = -10.0", "power_dbm = \"high\""), "power_dbm"),
    (("alpha = 1.4705882352941175", "alpha = -1.0"), "alpha"),
    (("gap_px = 1.0", "gap_px = -1.0"), "monitor.gap_px"),
    (("warmup_shots = 20", "warmup_shots = 2"), "warmup_shots"),
    (("compression = \"blosc-lz4\"", "compression = \"zip\""), "compression"),
    (("[sequencer]", "[sequencer]\nspeed = 3"), "sequencer.speed"),
    (("squeezing_db = -3.2", "squeezing_db = 3.2"), "virtual_lab"),
])
def test_bad_configs_name_the_field(tmp_path: Path, edit: tuple[str, str], match: str) -> None:
    text = CONFIG.read_text()
    assert edit[0] in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(edit[0], edit[1], 1))
    try:
        cfg = load_lab_config(bad)
    except LabConfigError as exc:
        assert match in str(exc) and "bad.toml" in str(exc)
        return
    # [virtual_lab] is validated when the lab is built
    from drivers.simulated.lab import VirtualLabConfig, VirtualLabConfigError
    with pytest.raises(VirtualLabConfigError, match="squeez"):
        VirtualLabConfig.from_mapping(cfg.virtual_lab, str(bad))
