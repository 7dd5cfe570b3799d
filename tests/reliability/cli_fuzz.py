"""Bad input through the real command lines: cases, and two ways to run them in their own process.

A case is an argv for ``steerlab`` plus the files it needs (written into a fresh directory). The
properties every case must have: no Python traceback on stdout or stderr, an exit status in
{0, 1, 2, 130} (never killed by a signal), done within the time limit, and a rejection (exit 2)
whose last line names the file or option at fault. ``listed_cases`` are the inputs issue 15 found
escaping; ``random_cases`` mutates the shipped configuration, plan, counts and run-file inputs.

``run_subprocess`` runs the console script as a user would (``python -m app.cli``, a new
interpreter per case); ``ForkRunner`` forks a process that has already imported steerlab and
calls ``app.cli.main(argv)`` in the child (same code, same process isolation, ~30x cheaper), for
the full-size benchmark.
"""
from __future__ import annotations

import dataclasses
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB = (ROOT / "configs" / "virtual-lab.toml").read_text()
PLAN = (ROOT / "configs" / "plans" / "default.toml").read_text()
REAL = (ROOT / "configs" / "real-lab.template.toml").read_text()
CSV = (ROOT / "docs" / "examples" / "squeezed-counts.csv").read_text()
OK_RC = {0, 1, 2, 130}
TIME_LIMIT_S = 60.0
STOP_LIMIT_S = 20.0       # a long valid run sent SIGTERM at TIME_LIMIT_S must end within this


def _terminate(pid: int, cwd: Path) -> int | None:
    """SIGTERM to a case still running at its time limit: its exit status if it stops in order
    (a long but valid run), None (a hang) if it does not end within STOP_LIMIT_S or never ran."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_LIMIT_S
    while time.monotonic() < deadline:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got:
            out = (cwd / ".stdout").read_text(errors="replace")
            err = (cwd / ".stderr").read_text(errors="replace")
            ok = "run stopped" in out or "stopping after" in err
            return os.waitstatus_to_exitcode(status) if ok else None
        time.sleep(0.05)
    os.killpg(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


@dataclass
class Case:
    """``steerlab *argv`` run in a directory holding ``files`` (name -> text, or bytes)."""

    name: str
    argv: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)
    expect_rc: set[int] | None = None       # None: any of OK_RC
    prepare: str = ""                       # "readonly-runs": data dir made read-only


@dataclass
class Outcome:
    case: Case
    rc: int | None
    seconds: float
    stdout: str
    stderr: str

    @property
    def problems(self) -> list[str]:
        """What is wrong with this outcome (empty: the case behaved)."""
        out: list[str] = []
        text = self.stdout + self.stderr
        if self.rc is None:
            out.append(f"hang: no exit within {TIME_LIMIT_S:g} s, nor {STOP_LIMIT_S:g} s after SIGTERM")
            return out
        if "Traceback (most recent call last)" in text:
            out.append("traceback: " + text[text.index("Traceback"):][:600])
        if self.rc not in OK_RC:
            out.append(f"exit status {self.rc}")
        if self.case.expect_rc is not None and self.rc not in self.case.expect_rc:
            out.append(f"exit status {self.rc}, expected {sorted(self.case.expect_rc)}: {self.stderr[-300:]}")
        if self.rc == 2 and not names_input(self.case, self.stderr):
            out.append(f"rejection does not name the file or option: {self.stderr.strip()[-300:]!r}")
        return out


def names_input(case: Case, stderr: str) -> bool:
    """True if the last line of ``stderr`` names one of the case's files, options or paths."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    if not lines:
        return False
    last = lines[-1]
    tokens = set(case.files) | {a for a in case.argv if a.startswith("--")}
    tokens |= {Path(a).name for a in case.argv if "/" in a or a.endswith((".toml", ".h5", ".csv"))}
    tokens |= {"data_dir", "argument", "unrecognized", "invalid choice", "required"}
    return any(t and t in last for t in tokens)


# --- cases ---------------------------------------------------------------------------------------
def _lab(**replace: str) -> str:
    """The shipped virtual-lab config, data_dir = "runs", with ``key = value`` lines replaced or added
    (``"table.key"`` names a line inside a table)."""
    text = LAB.replace('data_dir = "../../runs"', 'data_dir = "runs"')
    for key, value in replace.items():
        table, _, name = key.rpartition(".")
        pat = re.compile(rf"^{re.escape(name)}\s*=.*$", re.M)
        section = f"[{table}]" if table else None
        if section and section in text:
            head, _, tail = text.partition(section + "\n")
            m = pat.search(tail)
            nxt = re.search(r"^\[", tail, re.M)
            if m and (nxt is None or m.start() < nxt.start()):
                tail = tail[:m.start()] + f"{name} = {value}" + tail[m.end():]  # plain text, no regex
            else:
                tail = f"{name} = {value}\n" + tail
            text = head + section + "\n" + tail
        elif section:
            text += f"\n{section}\n{name} = {value}\n"
        else:
            text = pat.sub(lambda m: f"{name} = {value}", text)
    return text


def _run(*extra: str, config: str = "lab.toml") -> list[str]:
    return ["run", "--config", config, "--no-progress", *extra]


def listed_cases() -> list[Case]:
    """Every input of issue 15 that ended in a traceback, a hang or a silent acceptance."""
    deep = "a = " + "[" * 3000 + "]" * 3000 + "\n"
    viky_missing = REAL.replace('data_dir = "/data/steerlab"', 'data_dir = "runs"')
    c = [
        Case("readonly data_dir", _run("--shots", "30"), {"lab.toml": _lab()}, prepare="readonly-runs"),
        Case("valid short run", _run("--shots", "30", "--out", "ok.h5"), {"lab.toml": _lab()}, {0}),
        Case("same --out twice", _run("--shots", "30", "--out", "x.h5"), {"lab.toml": _lab(), "runs/x.h5": b"x"},
             {2}),
        Case("data_dir /proc", _run(), {"lab.toml": _lab(**{"lab.data_dir": '"/proc"'})}, {2}),
        Case("data_dir /proc/x", _run(), {"lab.toml": _lab(**{"lab.data_dir": '"/proc/steerlab"'})}, {2}),
        Case("data_dir a file", _run(), {"lab.toml": _lab(**{"lab.data_dir": '"afile"'}), "afile": "x"}, {2}),
        Case("frame_shape [0, 0]", _run(), {"lab.toml": _lab(**{"virtual_lab.frame_shape": "[0, 0]"})}, {2}),
        Case("frame_shape [4, 4]", _run(), {"lab.toml": _lab(**{"virtual_lab.frame_shape": "[4, 4]"})}, {2}),
        Case("frame_shape big", _run(), {"lab.toml": _lab(**{"virtual_lab.frame_shape": '"big"'})}, {2}),
        Case("frame_shape huge", _run(),
             {"lab.toml": _lab(**{"virtual_lab.frame_shape": "[100000, 100000]"})}, {2}),
        Case("rabi_frequency_hz 0", _run(), {"lab.toml": _lab(**{"virtual_lab.rabi_frequency_hz": "0"})}, {2}),
        Case("level_dbm 1000", _run(), {"lab.toml": _lab(**{"calibration.microwave.power_dbm": "1000.0"})},
             {2}),
        Case("plan power 1000", _run("--plan", "p.toml"),
             {"lab.toml": _lab(), "p.toml": PLAN.replace("pulse_start_s = 100e-6",
                                                         "pulse_start_s = 100e-6\npower_dbm = 1000.0")}, {2}),
        Case("--seed -1", _run("--seed", "-1"), {"lab.toml": _lab()}, {2}),
        Case("probe_pulse_s 1e-12", _run("--plan", "p.toml"),
             {"lab.toml": _lab(), "p.toml": PLAN.replace("probe_pulse_s = 50e-6", "probe_pulse_s = 1e-12")},
             {2}),
        Case("300-char --out", _run("--out", "a" * 300 + ".h5"), {"lab.toml": _lab()}, {2}),
        Case("deep TOML config", _run(), {"lab.toml": deep}, {2}),
        Case("deep TOML plan", _run("--plan", "p.toml"), {"lab.toml": _lab(), "p.toml": deep}, {2}),
        Case("--config /dev/zero", _run(config="/dev/zero"), {}, {2}),
        Case("real lab, .cti missing", _run(config="real.toml"), {"real.toml": viky_missing}, {2}),
        Case("time_scale 1e9", _run(), {"lab.toml": _lab(**{"virtual_lab.time_scale": "1e9"})}, {2}),
        Case("hardware start, virtual lab", _run(),
             {"lab.toml": _lab(**{"sequencer.start_mode": '"hardware"'})}, {2}),
        Case("atom_number -1", _run(), {"lab.toml": _lab(**{"virtual_lab.atom_number": "-1"})}, {2}),
        Case("atom_number nan", _run(), {"lab.toml": _lab(**{"virtual_lab.atom_number": "nan"})}, {2}),
        Case("psf 1e6 px (found by the full fuzz: hung)", _run("--shots", "30"),
             {"lab.toml": _lab(**{"calibration.imaging.psf_sigma_y_px": "1000000"})}, {2}),
        Case("--shot abbreviation", _run("--shot", "10"), {"lab.toml": _lab()}, {2}),
        Case("shorter than warm-up", _run("--shots", "5"), {"lab.toml": _lab()}, {2}),
        Case("criteria constant counts", ["criteria", "c.csv"],
             {"c.csv": "direction,N1A,N2A,N1B,N2B\n" + "x,100,100,100,100\ny,100,100,100,100\n"
              "z,100,100,100,100\n" * 3}),
        Case("criteria negative counts", ["criteria", "c.csv"],
             {"c.csv": "direction,N1A,N2A,N1B,N2B\n" + "".join(
                 f"{'xyz'[i % 3]},{-i},{-2 * i},{i % 5},{-(i % 7)}\n" for i in range(30))}),
        Case("criteria tiny counts", ["criteria", "c.csv"],
             {"c.csv": "direction,N1A,N2A,N1B,N2B\n" + "".join(
                 f"{'xyz'[i % 3]},{1e-320 * (i % 4)},1e-320,{1e-321 * i},0\n" for i in range(30))}),
        Case("criteria huge counts", ["criteria", "c.csv"],
             {"c.csv": "direction,N1A,N2A,N1B,N2B\n" + "".join(
                 f"{'xyz'[i % 3]},{1e308 * ((i % 3) / 2)},1e308,{1e307 * (i % 5)},1e308\n" for i in range(30))}),
        Case("analyze missing", ["analyze", "nope.h5", "--out", "o"], {}, {2}),
        Case("analyze text file", ["analyze", "t.h5", "--out", "o"], {"t.h5": "not hdf5"}, {2}),
        Case("repair text file", ["repair", "t.h5", "c.h5"], {"t.h5": "not hdf5"}, {2}),
        Case("calibrate bad config", ["calibrate", "rabi", "--config", "lab.toml", "--out", "r.toml"],
             {"lab.toml": _lab(**{"virtual_lab.frame_shape": "[4, 4]"})}, {2}),
        Case("calibrate deep record", ["calibrate", "blur", "--config", "lab.toml", "--record", "r.toml",
                                       "--out", "o.toml"], {"lab.toml": _lab(), "r.toml": deep}, {2}),
        Case("gui review text file", ["gui", "--review", "t.h5", "--screenshot", "s.png"], {"t.h5": "x"}),
    ]
    return c


NASTY = ["0", "-1", "1e308", "-1e308", "1e-320", "nan", "inf", "-inf", '""', '"x"', "[]", "{}", "[0, 0]",
         "[1e9, 1e9]", "true", "99999999999999999999", '"' + "a" * 5000 + '"', '"../../../etc/passwd"',
         "[" * 50 + "]" * 50, '"\\u0000"', "2026-12-02", "-0.0", "1", "1000000"]


def random_cases(n: int, seed: int = 0) -> list[Case]:
    """``n`` cases: the shipped config, plan, counts or option values with one to three values replaced."""
    rng = random.Random(seed)
    lab_keys = [m.group(1) for m in re.finditer(r"^(\w+)\s*=", LAB, re.M)]
    plan_keys = [m.group(1) for m in re.finditer(r"^(\w+)\s*=", PLAN, re.M)]
    out: list[Case] = []
    for i in range(n):
        kind = rng.choice(["lab", "lab", "plan", "plan", "option", "csv", "calibrate"])
        if kind in ("lab", "calibrate"):
            text = _lab()
            for _ in range(rng.randint(1, 3)):
                key = rng.choice(lab_keys)
                value = rng.choice(NASTY)
                text = re.sub(rf"^{key}\s*=.*$", lambda m: f"{key} = {value}", text, count=1, flags=re.M)
            argv = _run("--shots", "30") if kind == "lab" else \
                ["calibrate", "blur", "--config", "lab.toml", "--out", "r.toml", "--plot-dir", "plots"]
            out.append(Case(f"{kind} {i}", argv, {"lab.toml": text}))
        elif kind == "plan":
            text = PLAN.replace("cycles = 100", "cycles = 10")
            for _ in range(rng.randint(1, 3)):
                key = rng.choice(plan_keys)
                value = rng.choice(NASTY)
                text = re.sub(rf"^{key}\s*=.*$", lambda m: f"{key} = {value}", text, count=1, flags=re.M)
            out.append(Case(f"plan {i}", _run("--plan", "p.toml"), {"lab.toml": _lab(), "p.toml": text}))
        elif kind == "option":
            opt = rng.choice(["--shots", "--seed", "--out", "--state", "--config", "--plan"])
            value = rng.choice(["-5", "0", "abc", "1e9", "", "x" * 300, "../x.h5", "/etc/x.h5", "a.txt",
                                "/dev/null", "/proc/self/mem", "coherent", "30", "runs"])
            out.append(Case(f"option {i}", _run(opt, value), {"lab.toml": _lab()}))
        else:
            rows = ["direction,N1A,N2A,N1B,N2B"] + [
                f"{rng.choice('xyzw')},{rng.choice(['100', '-3', '1e308', 'nan', '', '5', '1e-320', 'x'])},"
                f"{rng.randint(-5, 500)},{rng.choice(['7', '0', 'inf', '3.5'])},{rng.randint(0, 300)}"
                for _ in range(rng.randint(0, 40))]
            argv = ["criteria", "c.csv"] + (["--json"] if rng.random() < 0.3 else []) + \
                (["--det-noise", rng.choice(["1,2", "-1,nan", "x", "1,2,3,4"])] if rng.random() < 0.3 else [])
            out.append(Case(f"csv {i}", argv, {"c.csv": "\n".join(rows) + "\n"}))
    return out


# --- running -------------------------------------------------------------------------------------
def write_case(case: Case, where: Path) -> Path:
    """A fresh directory under ``where`` holding the case's files."""
    d = where / re.sub(r"[^\w.-]+", "_", case.name)[:60]
    k = 0
    while d.exists():
        k += 1
        d = d.with_name(d.name.rstrip("0123456789_") + f"_{k}")
    d.mkdir(parents=True)
    for name, content in case.files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    if case.prepare == "readonly-runs":
        (d / "runs").mkdir(exist_ok=True)
        (d / "runs").chmod(0o555)
    return d


def case_env(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(QT_QPA_PLATFORM="offscreen", STEERLAB_LOG=str(cwd / "steerlab.log"),
               XDG_CONFIG_HOME=str(cwd / "xdg"), PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    return env


def run_subprocess(case: Case, where: Path, timeout: float = TIME_LIMIT_S) -> Outcome:
    """``python -m app.cli *argv`` in a new interpreter, as the console script runs."""
    cwd = write_case(case, where)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", *case.argv], cwd=cwd, env=case_env(cwd),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        # a valid plan may simply be long (10^6 shots): then SIGTERM must stop it in order
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=STOP_LIMIT_S)
            rc = proc.returncode if "run stopped" in out or "stopping after" in err else None
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            rc = None
    return Outcome(case, rc, time.monotonic() - t0, out, err)


class ForkRunner:
    """Runs cases in forked children of this process (which imports steerlab once)."""

    def __init__(self) -> None:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        import app.cli  # noqa: F401  (imported before forking: the point of this runner)
        self.cli = app.cli
        self.cli.build_parser()        # imports every command module

    def _start(self, case: Case, where: Path) -> tuple[int, Path, float]:
        cwd = write_case(case, where)
        out_p, err_p = cwd / ".stdout", cwd / ".stderr"
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:                                       # child: the command, then _exit
            code = 70
            try:
                os.setsid()
                os.chdir(cwd)
                os.environ.update(case_env(cwd))
                fo, fe = os.open(out_p, os.O_WRONLY | os.O_CREAT), os.open(err_p, os.O_WRONLY | os.O_CREAT)
                os.dup2(fo, 1)
                os.dup2(fe, 2)
                sys.stdout = open(1, "w", closefd=False)   # noqa: SIM115
                sys.stderr = open(2, "w", closefd=False)   # noqa: SIM115
                code = int(self.cli.main(list(case.argv)))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 71
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        return pid, cwd, t0

    def run_many(self, cases: list[Case], where: Path, *, jobs: int = 2,
                 timeout: float = TIME_LIMIT_S) -> list[Outcome]:
        """Every case in a forked child, ``jobs`` at a time; hung children are killed at ``timeout``."""
        todo = list(cases)
        live: dict[int, tuple[Case, Path, float]] = {}
        done: list[Outcome] = []
        while todo or live:
            while todo and len(live) < jobs:
                case = todo.pop(0)
                pid, cwd, t0 = self._start(case, where)
                live[pid] = (case, cwd, t0)
            time.sleep(0.005)
            for pid, (case, cwd, t0) in list(live.items()):
                got, status = os.waitpid(pid, os.WNOHANG)
                rc: int | None
                if got:
                    rc = os.waitstatus_to_exitcode(status)
                elif time.monotonic() - t0 > timeout:
                    rc = _terminate(pid, cwd)
                else:
                    continue
                del live[pid]
                done.append(Outcome(case, rc, time.monotonic() - t0,
                                    (cwd / ".stdout").read_text(errors="replace"),
                                    (cwd / ".stderr").read_text(errors="replace")))
        return done

    def run(self, case: Case, where: Path, timeout: float = TIME_LIMIT_S) -> Outcome:
        """One case in a forked child."""
        return self.run_many([case], where, jobs=1, timeout=timeout)[0]


def with_name(case: Case, name: str) -> Case:
    return dataclasses.replace(case, name=name)
