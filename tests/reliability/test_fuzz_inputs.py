"""Bad input, fuzzed (hypothesis, derandomized: the same cases every run). Every input is accepted or
rejected with the module's own error naming the file; never another exception, never a hang.
benchmarks/fuzz_inputs.py runs the same properties with many more cases."""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.counts import CountsFileError, read_counts_csv
from app.labconfig import LabConfigError, parse_lab_config
from app.runfile import RunFileError, open_run
from calibration.record import RecordError, parse_record
from drivers.errors import DriverError
from sequences.plan import AxisPulse, MicrowaveCalibration, PlanError, parse_plan
from sequences.steps import StepError, check_programs

ROOT = Path(__file__).resolve().parents[2]
PLAN = (ROOT / "configs" / "plans" / "default.toml").read_text()
LAB = (ROOT / "configs" / "virtual-lab.toml").read_text()
RECORD = (ROOT / "configs" / "calibration.example.toml").read_text()
CSV = (ROOT / "docs" / "examples" / "squeezed-counts.csv").read_text()
CASES = int(os.environ.get("STEERLAB_FUZZ_CASES", "300"))
FUZZ = settings(max_examples=CASES, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

WEIRD = st.sampled_from(["", "-1", "0", "1e400", "nan", "inf", "-inf", "true", '"x"', "[]", "{}",
                         "[1, 2]", '{ a = 1 }', "1.5", "99999999999999999999", '"../../etc"',
                         '"\\u0000"', "2026-11-24", "-0.0", "'''", "=", "[[x]]"])


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """``text`` with some lines' values replaced, lines dropped or duplicated, or random text added."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.integers(0, 3))
        if op == 0 and "=" in lines[i]:
            key = lines[i].split("=", 1)[0]
            value = draw(st.one_of(WEIRD, st.text(max_size=12)))
            lines[i] = f"{key}= {value}"
        elif op == 1:
            del lines[i]
            if not lines:
                lines = [""]
        elif op == 2:
            lines.insert(i, lines[i])
        else:
            lines.insert(i, draw(st.text(max_size=20)))
    return "\n".join(lines)


@FUZZ
@given(mutated(PLAN))
def test_plans(text: str) -> None:
    try:
        parse_plan(text, "fuzz-plan.toml")
    except PlanError as exc:
        assert "fuzz-plan.toml" in str(exc)


SCAN_PLAN = PLAN + """
[[steps]]
name = "coil_off"
channel = "coil"
at = "trap_off"
duration_s = 500e-6
[[steps]]
name = "shutter_open"
channel = "shutter"
at = "probe1"
offset_s = -300e-6
until = "probe2"
[scan]
combine = "product"
order = "shuffled"
seed = 7
repeats = 2
[[scan.axes]]
field = "imaging.tof_s"
values = [2.0e-3, 2.2e-3, 2.4e-3]
group = "flight"
[[scan.axes]]
field = "microwave.x.pulse_s"
linspace = { start = 0.0625e-3, stop = 0.25e-3, num = 4 }
[[scan.axes]]
field = "steps.coil_off.duration_s"
logspace = { start = 1e-4, stop = 1e-3, num = 3 }
group = "flight"
"""
CAL = MicrowaveCalibration(6.834682611e9, -10.0, AxisPulse(90.0, 125e-6), AxisPulse(0.0, 125e-6))


@FUZZ
@given(mutated(SCAN_PLAN))
def test_scan_plans_and_their_steps(text: str) -> None:
    """A plan with a scan and user steps: accepted (then every program compiles or is refused
    naming the plan) or refused naming the plan, in one line."""
    try:
        plan = parse_plan(text, "fuzz-plan.toml", CAL)
    except PlanError as exc:
        assert "fuzz-plan.toml" in str(exc) and "\n" not in str(exc)
        return
    try:
        check_programs(plan, {"mw_gate": 0, "probe": 1, "camera": 2, "coil": 6, "shutter": 8},
                       clock_hz=100e6, max_instructions=30_000)
    except StepError as exc:
        assert "fuzz-plan.toml" in str(exc) and "\n" not in str(exc)


@FUZZ
@given(mutated(LAB))
def test_lab_configs(text: str) -> None:
    try:
        cfg = parse_lab_config(text, "fuzz-lab.toml", base_dir=ROOT / "configs")
    except LabConfigError as exc:
        assert "fuzz-lab.toml" in str(exc)
        return
    from drivers.simulated.lab import VirtualLabConfig, VirtualLabConfigError
    try:
        VirtualLabConfig.from_mapping(cfg.virtual_lab, "fuzz-lab.toml")
    except VirtualLabConfigError as exc:
        assert "fuzz-lab.toml" in str(exc)


@FUZZ
@given(mutated(RECORD))
def test_calibration_records(text: str) -> None:
    try:
        parse_record(text, "fuzz-record.toml")
    except RecordError as exc:
        assert "fuzz-record.toml" in str(exc)


@FUZZ
@given(st.text(max_size=200) | mutated(CSV))
def test_counts_csv(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("csv") / "fuzz.csv"
    path.write_bytes(text.encode("utf-8", "replace"))
    try:
        read_counts_csv(path)
    except CountsFileError as exc:
        assert "fuzz.csv" in str(exc)


def _small_run(directory: Path) -> bytes:
    from tests.app.runfile_helpers import write_run
    path = directory / "base.h5"
    if not path.exists():
        write_run(path, 4, compression="none")
    return path.read_bytes()


@settings(max_examples=max(20, CASES // 6), derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=8)), min_size=1, max_size=6),
       st.floats(0.05, 1.0))
def test_corrupted_and_truncated_run_files(tmp_path_factory, edits, keep: float) -> None:
    d = tmp_path_factory.mktemp("runs")
    data = bytearray(_small_run(d))
    for where, junk in edits:
        i = int(where * (len(data) - len(junk)))
        data[i:i + len(junk)] = junk
    data = data[:max(1, int(len(data) * keep))]
    path = d / "fuzz.h5"
    path.write_bytes(bytes(data))
    try:
        with open_run(path) as run:
            for i in range(run.n_shots):
                run.shot(i)
            run.results
    except RunFileError as exc:
        assert "fuzz.h5" in str(exc)


class _Babbler:
    """A TCP peer that answers every line with the given bytes (then closes if asked)."""

    def __init__(self, reply: bytes, close: bool) -> None:
        self.reply, self.close = reply, close
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.05)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conns = []
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
                conn.settimeout(0.05)
                conns.append(conn)
            except (TimeoutError, OSError):
                pass
            for c in list(conns):
                try:
                    if c.recv(4096):
                        c.sendall(self.reply)
                        if self.close:
                            c.close()
                            conns.remove(c)
                except (TimeoutError, OSError):
                    continue
        for c in conns:
            c.close()
        self.server.close()

    @property
    def port(self) -> int:
        return self.server.getsockname()[1]

    def shutdown(self) -> None:
        self.stop.set()
        self.thread.join()


@settings(max_examples=max(15, CASES // 10), derandomize=True, deadline=None)
@given(st.binary(max_size=40), st.booleans())
def test_instrument_replies(reply: bytes, close: bool) -> None:
    from drivers.prawndo import PrawnDO
    from drivers.sma100b import SMA100B
    peer = _Babbler(reply, close)
    try:
        for make in (lambda: SMA100B(f"TCPIP0::127.0.0.1::{peer.port}::SOCKET", timeout_s=0.1),
                     lambda: PrawnDO(f"socket://127.0.0.1:{peer.port}", timeout_s=0.1)):
            inst = make()
            try:
                inst.connect()
            except DriverError:
                pass
            finally:
                inst.close()
    finally:
        peer.shutdown()
