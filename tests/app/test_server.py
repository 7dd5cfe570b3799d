"""The run server through real processes and sockets: `steerlab serve` as a subprocess, clients in
this process and in other subprocesses."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from app.client import Client, ServerError
from app.labconfig import load_lab_config
from app.remote import RemoteRun
from analysis.monitor import MonitorSnapshot
from app.runfile import open_run
from app.server import protocol
from app.server.endpoint import endpoint_file
from app.server.snapshots import from_wire
from sequences.control import RunState

ROOT = Path(__file__).resolve().parents[2]
PLAN = (ROOT / "configs" / "plans" / "default.toml").read_text()
SMALL = "[virtual_lab]\nframe_shape = [224, 128]\ncloud_centre_px = [40.0, 60.0]\n"


def env(tmp: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), STEERLAB_LOG=str(tmp / "cli.log"))


def write_lab(tmp: Path) -> Path:
    cfg = tmp / "lab.toml"
    text = (ROOT / "configs" / "virtual-lab.toml").read_text()
    text = text.replace('data_dir = "../../runs"', f'data_dir = "{tmp / "runs"}"')
    cfg.write_text(text.replace("[virtual_lab]\n", SMALL, 1))
    return cfg


class Server:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.config = write_lab(tmp) if not (tmp / "lab.toml").exists() else tmp / "lab.toml"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Client:
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--config", str(self.config)],
                                     env=env(self.tmp), text=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                c = Client(data_dir=self.tmp / "runs", timeout_s=10)
                c.ping()
                return c
            except ServerError:
                assert self.proc.poll() is None, self.proc.communicate()
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path)
    yield s
    s.stop()


def wait_history(c: Client, n: int, timeout: float = 180) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        h = c.queue()["history"]
        if len(h) >= n:
            return h
        assert time.monotonic() < deadline, h
        time.sleep(0.3)


def test_the_endpoint_file_is_private_and_a_bad_token_is_refused(server: Server) -> None:
    c = server.start()
    f = endpoint_file(server.tmp / "runs")
    assert f.stat().st_mode & 0o777 == 0o600
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(c.endpoint.request)
    for token in ("wrong", ""):
        sock.send_multipart(protocol.request(token, "queue_clear"))
        reply = protocol.decode(sock.recv_multipart())
        assert reply == {"ok": False, "error": "refused: wrong or missing token"}
    sock.send_multipart([json.dumps({"command": "status"}).encode()])
    assert "without a token" in protocol.decode(sock.recv_multipart())["error"]
    sock.close()
    assert c.status()["refused_requests"] == 2
    assert "refused" in (server.tmp / "runs" / "steerlab-server.log").read_text()


def test_malformed_messages_get_error_replies_and_the_server_keeps_running(server: Server) -> None:
    c = server.start()
    tok = c.endpoint.token
    bad: list[list[bytes]] = [
        [os.urandom(200)], [b"[1, 2"], [b"{}"], [b"null"], [b'"text"'],
        protocol.encode({"token": tok, "command": 5}),
        protocol.encode({"token": tok, "command": "status", "args": [1]}),
        protocol.encode({"token": tok, "command": "nonsense"}),
        protocol.encode({"token": tok, "command": "queue_move", "args": {"id": "x", "position": "first"}}),
        protocol.encode({"token": tok, "command": "queue_add", "args": {"plan_toml": 3}}),
        protocol.encode({"token": tok, "command": "queue_add", "args": {"plan_toml": "[run]\nshots = -4\n"}}),
        protocol.encode({"token": tok, "command": "status", "args": {"surprise": 1}}),
        [json.dumps({"token": tok, "command": "ping", "args": {"a": {"__ndarray__": 0, "dtype": "|O",
                                                                    "shape": [1]}}}).encode(), b"x" * 8],
        [json.dumps({"token": tok, "command": "ping", "args": {"a": {"__ndarray__": 0, "dtype": "<f8",
                                                                    "shape": [10 ** 6]}}}).encode(), b"x" * 8],
        [b"[" * 100_000 + b"]" * 100_000],
        [b"{" + b" " * 2_000_000 + b"}"],
    ]
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.RCVTIMEO, 10000)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(c.endpoint.request)
    for frames in bad:
        sock.send_multipart(frames)
        reply = protocol.decode(sock.recv_multipart())
        assert reply["ok"] is False and reply["error"], frames[0][:80]
    sock.close()
    # a frame over the size limit: the server drops that peer, and keeps serving
    big = zmq.Context.instance().socket(zmq.REQ)
    big.setsockopt(zmq.LINGER, 0)
    big.connect(c.endpoint.request)
    big.send_multipart([b"{}", b"\0" * (protocol.MAX_MESSAGE_BYTES + 1000)])
    time.sleep(1.0)
    big.close()
    assert c.ping() == "pong"


def test_three_queued_runs_in_order_with_a_pause_and_a_reorder(server: Server) -> None:
    c = server.start()
    c.queue_pause()
    ids = [c.queue_add(PLAN, plan_source="default.toml", shots=30, out=f"q{k}.h5", seed=k)["id"] for k in range(3)]
    assert [i["id"] for i in c.queue()["queue"]] == ids
    c.queue_move(ids[2], 0)                       # the third goes first
    time.sleep(0.5)
    assert c.queue()["history"] == [] and c.status()["run"] is None   # paused: nothing ran
    c.queue_resume()
    history = wait_history(c, 3)
    assert [h["id"] for h in history] == [ids[2], ids[0], ids[1]]
    assert all(h["end_state"] == "completed" for h in history)
    for h in history:
        with open_run(h["file"]) as run:
            assert run.n_shots == 30 and run.end_state == "completed"
            assert run.config["log_file"].endswith("steerlab-server.log")


def test_a_bad_plan_is_refused_when_queued(server: Server) -> None:
    c = server.start()
    with pytest.raises(ServerError, match="probe_pulse_s|timing-card program"):
        c.queue_add(PLAN.replace("probe_pulse_s = 50e-6", "probe_pulse_s = 1e-12"))
    assert c.queue()["queue"] == []


WATCHER = """
import json, sys
from app.client import Client
c = Client(data_dir=sys.argv[1])
n = 0
for event, data in c.events(["shot", "run_finished"], timeout_s=120):
    if event == "shot":
        n += 1
        print(n, flush=True)
    else:
        print("finished", data["final_state"], flush=True)
        break
"""


def test_two_clients_watch_one_run_and_a_killed_client_does_not_disturb_it(server: Server) -> None:
    c = server.start()
    watchers = [subprocess.Popen([sys.executable, "-c", WATCHER, str(server.tmp / "runs")], env=env(server.tmp),
                                 text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    time.sleep(2.0)                              # the watchers are subscribed
    item = c.queue_add(PLAN, shots=60, out="watched.h5")
    victim = watchers.pop()
    while True:                                  # kill one watcher mid-run
        line = victim.stdout.readline()
        if line.strip().isdigit() and int(line) >= 10:
            break
    victim.kill()
    victim.communicate()
    for w in watchers:
        out, err = w.communicate(timeout=180)
        lines = out.split()
        assert "finished" in out and "completed" in out, err
        assert int(lines[lines.index("finished") - 1]) == 60
    h = wait_history(c, 1)
    assert h[0]["id"] == item["id"] and h[0]["end_state"] == "completed"


def test_snapshots_arrive_as_numbers_and_images(server: Server) -> None:
    c = server.start()
    sub = c.subscribe(["snapshot", "monitor"])
    c.queue_add(PLAN, shots=60)
    got, whole = None, None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (got is None or whole is None):
        ev = sub.get(5.0)
        if ev and ev[0] == "snapshot" and ev[1].get("criteria"):
            got = ev[1]
        elif ev and ev[0] == "monitor" and got is not None:
            whole = ev[1]
    sub.close()
    assert got is not None and whole is not None
    assert got["mean_n2"].dtype.str == "<f4" and got["mean_n2"].ndim == 2
    assert got["criteria"][0]["E_Ent"]["value"] is not None
    # the whole snapshot travels once, on the windows' topic, not inside every numbers event
    assert "monitor" not in got
    snap = from_wire(whole["monitor"])
    assert isinstance(snap, MonitorSnapshot) and whole["file"] == got["file"]
    assert snap.latest_index == whole["latest_index"] and snap.mean_n2 is not None
    assert c.snapshot()["shots_counted"] >= got["shots_counted"]
    latest = from_wire(c.snapshot(monitor=True)["monitor"])
    assert isinstance(latest, MonitorSnapshot) and latest.shots_counted >= snap.shots_counted


SCAN_PLAN = """
[run]
cycles = 8
[state]
atom_number_sd = 0.0
[scan]
order = "interleaved"
[[scan.axes]]
field = "imaging.tof_s"
values = [2.2e-3, 2.4e-3]
"""


def test_a_scan_run_publishes_its_criteria_per_point_and_progress_its_time_left(server: Server) -> None:
    c = server.start()
    assert c.scan_points() is None
    sub = c.subscribe(["scan", "progress"])
    # a window's view of the run: RemoteRun on a client of its own
    remote = RemoteRun(Client(data_dir=server.tmp / "runs", timeout_s=10), load_lab_config(server.config),
                       SCAN_PLAN, plan_source="tof.toml", out="tof.h5", seed=3)
    remote.start()
    seen_left: list[float] = []
    scans: list[dict] = []
    left: list[float] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (scans and len(left) > 3):
        ev = sub.get(5.0)
        if ev and ev[0] == "scan":
            scans.append(ev[1])
        elif ev and ev[0] == "progress" and ev[1].get("time_left_s") is not None:
            left.append(ev[1]["time_left_s"])
            if (t := remote.time_left_s()) is not None:
                seen_left.append(t)
    sub.close()
    assert remote.wait(120) is RunState.COMPLETED
    assert seen_left and remote.last_progress is not None
    assert scans and scans[0]["file"].endswith("tof.h5")
    assert [a["field"] for a in scans[0]["scan"]["axes"]] == ["imaging.tof_s"]
    assert len(left) > 3 and all(x >= 0 for x in left) and left[-1] < left[0]
    (h,) = wait_history(c, 1)
    # after the run, the last published points are those the run file keeps as its final results
    last = c.scan_points()
    assert last is not None and last["file"] == h["file"]
    with open_run(h["file"]) as run:
        stored = run.results["scan_points"]
    assert [p["values"] for p in last["scan"]["points"]] == [{"imaging.tof_s": 2.2e-3}, {"imaging.tof_s": 2.4e-3}]
    assert last["scan"] == stored
    assert remote.scan_results() == stored
    remote.close()


def test_a_queued_run_starts_with_the_clients_regions_and_bad_ones_are_refused(server: Server) -> None:
    c = server.start()
    for bad, match in (({"axis": "q"}, "axis"), ({"gap_px": "wide"}, r"regions\.gap_px = 'wide': expected a number"),
                       ({"position": 2.0}, "unknown field"), ("x", "expected {axis")):
        with pytest.raises(ServerError, match=match):
            c.queue_add(PLAN, shots=30, regions=bad)
    assert c.queue()["queue"] == []
    c.queue_add(PLAN, shots=30, out="split.h5", seed=2,
                regions={"axis": "x", "position_px": 2.0, "gap_px": 5.0, "a_side": "high"})
    (h,) = wait_history(c, 1)
    assert h["end_state"] == "completed"
    with open_run(h["file"]) as run:
        chosen = run.results["regions"][0]
    assert (chosen["axis"], chosen["position_px"], chosen["gap_px"], chosen["a_side"]) == ("x", 2.0, 5.0, "high")


def test_a_server_killed_mid_run_leaves_every_committed_shot_and_the_queue(server: Server) -> None:
    c = server.start()
    sub = c.subscribe(["shot"])
    c.queue_add(PLAN, shots=100000, out="killed.h5")
    later = c.queue_add(PLAN, shots=30, out="later.h5")
    committed = []
    while len(committed) < 25:
        ev = sub.get(60)
        assert ev is not None
        committed.append(ev[1]["index"])
    server.proc.send_signal(signal.SIGKILL)
    server.proc.communicate()
    sub.close()
    path = server.tmp / "runs" / "killed.h5"
    with open_run(path) as run:
        assert run.n_shots >= len(committed)
        assert set(committed) <= set(range(run.n_shots))
    with pytest.raises(ServerError, match="not running|did not answer"):
        Client(data_dir=server.tmp / "runs", timeout_s=2).ping()
    # restarted: the interrupted run is in the history, the queued one runs
    c2 = server.start()
    history = wait_history(c2, 2)
    assert history[0]["file"].endswith("killed.h5") and history[0]["end_state"].startswith("interrupted")
    assert history[1]["id"] == later["id"] and history[1]["end_state"] == "completed"


def test_run_on_the_server_from_the_command_line(server: Server) -> None:
    server.start()
    proc = subprocess.run([sys.executable, "-m", "app.cli", "run", "--server", "--config", str(server.config),
                           "--shots", "30", "--out", "cli.h5"], env=env(server.tmp), capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "run completed" in proc.stdout and "E_Ent" in proc.stdout
    st = subprocess.run([sys.executable, "-m", "app.cli", "status", "--config", str(server.config)],
                        env=env(server.tmp), capture_output=True, text=True, timeout=60)
    assert st.returncode == 0 and "cli.h5" in st.stdout
