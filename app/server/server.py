"""`steerlab serve`: the acquisition process. It owns the lab (the virtual lab when configured), the
sequencer, the writer and the monitor of the current run, and a persistent queue of runs.

Sockets (app/server/endpoint.py): a REP socket for commands (every request carries the token; a
request without it, or with a wrong one, is refused and logged), a PUB socket for events: ``state``,
``progress`` (with ``time_left_s``), ``shot`` (committed to the file), ``snapshot`` (made in the monitor thread, at most
SNAPSHOT_HZ per second: clients never compute criteria or take the monitor's lock; the criteria
as JSON with float32 images), ``monitor`` (the same snapshot whole, for windows: app.server.snapshots),
``scan`` (a scan run's criteria per scan point, at most once per SCAN_EVERY_S),
``instruments``, ``queue``, ``run_started``, ``run_finished``, ``log`` (WARNING and above). Bad
messages get an error reply; nothing a client sends can stop the server except ``shutdown``.
"""
from __future__ import annotations

import dataclasses
import hmac
import os
import logging
import logging.handlers
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from app.labconfig import LabConfig
from analysis.monitor import MonitorSnapshot, RunMonitor
from app.preflight import InputError, checked_plan
from app.server import protocol
from app.server.endpoint import Endpoint, endpoint_file, new_token, private_dir
from app.server.snapshots import SnapshotError, split_from_wire, split_to_wire, to_wire
from app.server.queue import STATE_FILE, QueueError, QueueItem, RunQueue
from app.session import RunSession, SessionError, region_plan
from drivers.errors import DriverError
from sequences.control import StateEvent
from sequences.plan import PlanError
from sequences.sequencer import Progress
from sequences.shot import ShotRecord

log = logging.getLogger("steerlab.server")
SNAPSHOT_HZ = 5.0
SCAN_EVERY_S = 1.0   # the criteria per scan point (one small monitor each) at most once a second
INSTRUMENTS_EVERY_S = 2.0
LOG_NAME = "steerlab-server.log"


class _PublishHandler(logging.Handler):
    """WARNING and above, to the clients."""

    def __init__(self, server: RunServer) -> None:
        super().__init__(logging.WARNING)
        self.server = server

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.server.publish("log", {"level": record.levelname, "logger": record.name,
                                        "message": record.getMessage(), "time": record.created})
        except Exception:      # never let logging break the server
            pass


def snapshot_payload(mon: RunMonitor, snap: MonitorSnapshot) -> dict[str, Any]:
    """What a client shows of a snapshot: the results JSON plus history, scans and images (float32)."""
    out = mon.results_json(snap)
    out.update(latest_index=snap.latest_index, latest_direction=snap.latest_direction,
               splitting_ratios=snap.splitting_ratios, kinds=list(snap.kinds),
               history={k: v for k, v in snap.history.items()}, time=time.time())
    for name, img in (("mean_n1", snap.mean_n1), ("mean_n2", snap.mean_n2)):
        if img is not None:
            out[name] = img.astype("float32")
    if snap.latest_images is not None:
        out["latest_n1"] = snap.latest_images.n1.atoms.astype("float32")
        out["latest_n2"] = snap.latest_images.n2.atoms.astype("float32")
    return out


class RunServer:
    """One server per data directory. ``serve_forever()`` in the main thread; ``request_stop()``
    from a signal handler or the ``shutdown`` command."""

    def __init__(self, config: LabConfig, *, tcp: bool = False) -> None:
        self.config = config
        self.data_dir = config.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / LOG_NAME
        self.queue = RunQueue(self.data_dir / STATE_FILE)
        self.ctx = zmq.Context()
        self.rep = self.ctx.socket(zmq.REP)
        self.rep.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
        self.rep.setsockopt(zmq.LINGER, 0)
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, 1000)
        if tcp:
            rep_port = self.rep.bind_to_random_port("tcp://127.0.0.1")
            pub_port = self.pub.bind_to_random_port("tcp://127.0.0.1")
            req_ep, pub_ep = f"tcp://127.0.0.1:{rep_port}", f"tcp://127.0.0.1:{pub_port}"
        else:
            d = private_dir(self.data_dir)
            req_ep, pub_ep = f"ipc://{d}/request", f"ipc://{d}/events"
            self.rep.bind(req_ep)
            self.pub.bind(pub_ep)
        self.endpoint = Endpoint(req_ep, pub_ep, new_token(), os.getpid(), str(self.data_dir))
        self._pub_lock = threading.Lock()
        self._stop = threading.Event()
        self._abort_current = False
        self.session: RunSession | None = None
        self._last_snapshot: dict[str, Any] | None = None
        self._last_monitor: dict[str, Any] | None = None
        self._last_snapshot_t = 0.0
        self._last_scan: dict[str, Any] | None = None
        self._last_scan_t = 0.0
        self._last_instruments_t = 0.0
        self._snap_lock = threading.Lock()
        self._runner = threading.Thread(target=self._run_queue, name="server-runner", daemon=False)
        self._handlers: list[logging.Handler] = []
        self.refused = 0

    # --- life cycle -----------------------------------------------------------------------------
    def _setup_logging(self) -> None:
        fh = logging.handlers.RotatingFileHandler(self.log_path, maxBytes=5_000_000, backupCount=5,
                                                  encoding="utf-8")
        fh.setLevel(logging.INFO)
        fh.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s"))
        self._handlers = [fh, _PublishHandler(self)]
        root = logging.getLogger()
        for h in self._handlers:
            root.addHandler(h)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)

    def serve_forever(self, ready: Callable[[Endpoint], None] | None = None) -> None:
        """Answer requests until ``request_stop()``; then end the current run (stop after the
        current shot, abort on a second request) and close everything."""
        self._setup_logging()
        self.endpoint.save(endpoint_file(self.data_dir))
        log.info("run server for %s: requests %s, events %s, log %s", self.data_dir,
                 self.endpoint.request, self.endpoint.publish, self.log_path)
        self._runner.start()
        if ready is not None:
            ready(self.endpoint)
        poller = zmq.Poller()
        poller.register(self.rep, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if dict(poller.poll(100)).get(self.rep):
                    self._answer()
        finally:
            self._shutdown()

    def request_stop(self, abort: bool = False) -> None:
        """Stop serving: the current run stops after its shot (``abort``: at once)."""
        self._abort_current = self._abort_current or abort
        self._stop.set()
        s = self.session
        if s is not None and s.is_running:
            try:
                s.abort() if abort else s.stop()
            except SessionError:
                pass

    def _shutdown(self) -> None:
        self.request_stop(self._abort_current)
        self._runner.join()
        try:
            endpoint_file(self.data_dir).unlink()
        except FileNotFoundError:
            pass
        self.publish("server", {"state": "stopped"})
        self.rep.close(0)
        self.pub.close(0)
        self.ctx.term()
        root = logging.getLogger()
        for h in self._handlers:
            root.removeHandler(h)
            h.close()

    # --- publishing -----------------------------------------------------------------------------
    def publish(self, event: str, data: Any) -> None:
        """One event to every subscriber (topic = the event name)."""
        frames = protocol.encode({"event": event, "data": data})
        with self._pub_lock:
            if not self.pub.closed:
                self.pub.send_multipart([event.encode(), *frames], copy=False)

    # --- requests -------------------------------------------------------------------------------
    def _answer(self) -> None:
        try:
            frames = self.rep.recv_multipart()
        except zmq.ZMQError as exc:           # e.g. a message over MAXMSGSIZE: the peer is dropped
            log.warning("receiving a request failed: %s", exc)
            return
        try:
            token, command, args = protocol.parse_request(frames)
            if not hmac.compare_digest(token.encode(), self.endpoint.token.encode()):
                self.refused += 1
                log.warning("refused a %r request with a wrong token", command[:40])
                reply: dict[str, Any] = {"ok": False, "error": "refused: wrong or missing token"}
            else:
                reply = {"ok": True, "result": self._handle(command, args)}
        except protocol.MessageError as exc:
            reply = {"ok": False, "error": f"bad message: {exc}"}
        except (QueueError, SessionError, PlanError, InputError, DriverError, ValueError, TypeError,
                KeyError) as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        except Exception as exc:             # a bug in a handler: report it, keep serving
            log.exception("request failed")
            reply = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        try:
            self.rep.send_multipart(protocol.encode(reply))
        except (zmq.ZMQError, protocol.MessageError) as exc:
            log.warning("sending a reply failed: %s", exc)
            self.rep.send_multipart(protocol.encode({"ok": False, "error": "reply could not be encoded"}))

    def _handle(self, command: str, args: dict[str, Any]) -> Any:
        handler = COMMANDS.get(command)
        if handler is None:
            raise ValueError(f"unknown command {command!r}; expected one of {sorted(COMMANDS)}")
        return handler(self, **args)

    # command implementations (keyword arguments are the request's args; unknown ones: TypeError)
    def cmd_ping(self) -> str:
        return "pong"

    def cmd_status(self) -> dict[str, Any]:
        s = self.session
        run: dict[str, Any] | None = None
        if s is not None:
            p = s.last_progress
            run = {"file": str(s.path), "state": s.state.value, "error": s.error,
                   "progress": dataclasses.asdict(p) if p is not None else None,
                   "time_left_s": s.time_left_s(), "running": s.is_running}
        with self._snap_lock:
            snap = self._last_snapshot
        chosen = (snap or {}).get("criteria", [None])[0] if snap and snap.get("criteria") else None
        return {"pid": self.endpoint.pid, "data_dir": str(self.data_dir), "config": self.config.source,
                "log_file": str(self.log_path), "run": run, "queue": self.queue.listing(),
                "chosen_criteria": chosen, "refused_requests": self.refused}

    def cmd_queue_add(self, plan_toml: str, plan_source: str = "<client>", shots: int | None = None,
                      state: str | None = None, seed: int | None = None, out: str | None = None,
                      regions: dict[str, Any] | None = None) -> dict[str, Any]:
        """Queue a run (checked now); ``regions``: the chosen split it starts with
        (``{axis, position_px, gap_px, a_side}``; default: the configuration's)."""
        if not isinstance(plan_toml, str):
            raise ValueError("plan_toml: expected the plan's TOML text")
        split = None if regions is None else split_from_wire(regions)
        item = QueueItem("", plan_toml, str(plan_source), shots, state, seed, out,
                         regions=None if split is None else split_to_wire(split))
        # checked now, so that a bad plan is refused to the client, not found later
        self._plan(item)
        added = self.queue.add(item)
        self.publish("queue", self.queue.listing())
        return dataclasses.asdict(added)

    def cmd_queue_list(self) -> dict[str, Any]:
        return self.queue.listing()

    def cmd_queue_remove(self, id: str) -> None:  # noqa: A002 (the request's field)
        self.queue.remove(id)
        self.publish("queue", self.queue.listing())

    def cmd_queue_move(self, id: str, position: int) -> None:  # noqa: A002
        self.queue.move(id, position)
        self.publish("queue", self.queue.listing())

    def cmd_queue_clear(self) -> int:
        n = self.queue.clear()
        self.publish("queue", self.queue.listing())
        return n

    def cmd_queue_pause(self) -> None:
        self.queue.set_paused(True)
        self.publish("queue", self.queue.listing())

    def cmd_queue_resume(self) -> None:
        self.queue.set_paused(False)
        self.publish("queue", self.queue.listing())

    def _current(self) -> RunSession:
        s = self.session
        if s is None or not s.is_running:
            raise SessionError("no run is in progress")
        return s

    def cmd_run_pause(self) -> str:
        return self._current().pause().value

    def cmd_run_resume(self) -> str:
        return self._current().resume().value

    def cmd_run_stop(self) -> str:
        return self._current().stop().value

    def cmd_run_abort(self) -> str:
        return self._current().abort().value

    def cmd_reconnect(self, instrument: str) -> str:
        self._current().reconnect(instrument)
        return f"{instrument} reconnected"

    def cmd_set_regions(self, axis: str = "x", position_px: float = 0.0, gap_px: float = 1.0,
                        a_side: str = "low") -> str:
        """Recount the current run with another chosen split (in the background) and go on live."""
        s = self._current()
        split = split_from_wire({"axis": axis, "position_px": position_px, "gap_px": gap_px, "a_side": a_side})
        plan = region_plan(self.config, split)

        def work() -> None:
            try:
                s.switch_regions(plan)
                self.publish("regions", {"axis": split.axis, "position_px": split.position_px,
                                         "gap_px": split.gap_px})
            except Exception as exc:
                log.warning("switching regions failed: %s", exc)
        threading.Thread(target=work, name="server-regions", daemon=True).start()
        return "recounting"

    def cmd_snapshot(self, monitor: bool = False) -> dict[str, Any] | None:
        """The last ``snapshot`` event's data (``monitor``: the last ``monitor`` event's instead)."""
        with self._snap_lock:
            return self._last_monitor if monitor else self._last_snapshot

    def cmd_scan_points(self) -> dict[str, Any] | None:
        """The last ``scan`` event's data: ``{"file", "scan"}``, the criteria per scan point of the
        current (or last) scan run (``ScanMonitor.results_json``); None before the first."""
        with self._snap_lock:
            return self._last_scan

    def cmd_shutdown(self, abort: bool = False) -> str:
        self.request_stop(bool(abort))
        return "stopping"

    # --- runs -----------------------------------------------------------------------------------
    def _plan(self, item: QueueItem) -> tuple[Any, Path]:
        return checked_plan(self.config, item.plan_toml, item.plan_source, shots=item.shots,
                            state=item.state, output=item.out)

    def _run_queue(self) -> None:
        while not self._stop.is_set():
            item = self.queue.take()
            if item is None:
                self._stop.wait(0.2)
                continue
            try:
                self._execute(item)
            except Exception:
                log.exception("run %s failed", item.id)

    def _execute(self, item: QueueItem) -> None:
        try:
            plan, _ = self._plan(item)
            session = RunSession(self.config, plan, item.out, seed=item.seed,
                                 extra_config={"log_file": str(self.log_path), "server_queue_id": item.id})
        except (PlanError, InputError, SessionError, ValueError) as exc:
            self.queue.current = {"id": item.id, "file": None, "plan_source": item.plan_source}
            self.queue.finished("refused", None, str(exc))
            log.warning("queued run %s refused: %s", item.id, exc)
            return
        if item.regions is not None:
            session.monitor.regions = region_plan(self.config, split_from_wire(item.regions))
        session.add_state_listener(self._on_state)
        session.add_progress_listener(self._on_progress)
        session.add_written_listener(self._on_written)
        session.add_shot_listener(lambda shot: self._on_counted(session))
        try:
            session.start()
        except (DriverError, OSError, ValueError) as exc:
            session.close()
            self.queue.current = {"id": item.id, "file": str(session.path), "plan_source": item.plan_source}
            self.queue.finished("failed to start", None, str(exc))
            log.warning("run %s could not start: %s", item.id, exc)
            return
        self.session = session
        self.queue.started(item, str(session.path))
        self.publish("run_started", {"id": item.id, "file": str(session.path), "shots": plan.n_shots})
        if self._stop.is_set():
            self.request_stop(self._abort_current)
        final = session.wait()
        session.close()
        summary = session.results or {}
        # the history keeps the chosen regions' numbers; every geometry's are in the run file
        brief = {"regions": (summary.get("regions") or [None])[0],
                 "criteria": (summary.get("criteria") or [None])[0], "error": summary.get("error", ""),
                 "failed_shots": len(session.failed_shots)}
        self.queue.finished(final.value if final else "unknown", brief, session.error)
        self._publish_snapshot(session, force=True)
        self.publish("run_finished", {"id": item.id, "file": str(session.path),
                                      "final_state": final.value if final else None,
                                      "failed_shots": len(session.failed_shots), "results": summary})
        self.publish("queue", self.queue.listing())

    def _on_state(self, ev: StateEvent) -> None:
        self.publish("state", {"state": ev.state.value, "reason": getattr(ev, "reason", ""),
                               "error": self.session.error if self.session else ""})
        self._publish_instruments(force=True)

    def _on_progress(self, p: Progress) -> None:
        data: dict[str, Any] = dataclasses.asdict(p)
        s = self.session
        data["time_left_s"] = s.time_left_s() if s is not None else None
        self.publish("progress", data)
        self._publish_instruments()

    def _on_written(self, shot: ShotRecord) -> None:
        self.publish("shot", {"index": shot.index, "status": shot.status, "direction": shot.direction,
                              "committed_at": time.time()})

    def _on_counted(self, session: RunSession) -> None:
        self._publish_snapshot(session)

    def _publish_snapshot(self, session: RunSession, force: bool = False) -> None:
        """In the monitor's thread (or at the end): a snapshot at most SNAPSHOT_HZ per second."""
        now = time.monotonic()
        if not force and now - self._last_snapshot_t < 1.0 / SNAPSHOT_HZ:
            return
        self._last_snapshot_t = now
        mon = session.monitor
        snap = mon.snapshot()
        payload = snapshot_payload(mon, snap)
        payload["file"] = str(session.path)
        monitor: dict[str, Any] | None = None
        try:
            # the whole snapshot, for windows (app.server.snapshots), on a topic of its own: a
            # window decodes only that, other clients only the numbers and images above
            monitor = {"file": payload["file"], "latest_index": snap.latest_index, "monitor": to_wire(snap)}
        except SnapshotError as exc:
            log.error("the snapshot cannot be sent whole (windows show the numbers only): %s", exc)
        with self._snap_lock:
            self._last_snapshot, self._last_monitor = payload, monitor
        self.publish("snapshot", payload)
        if monitor is not None:
            self.publish("monitor", monitor)
        if session.scan_monitor is not None and (force or now - self._last_scan_t >= SCAN_EVERY_S):
            self._last_scan_t = now
            scan = {"file": payload["file"], "scan": session.scan_monitor.results_json()}
            with self._snap_lock:
                self._last_scan = scan
            self.publish("scan", scan)

    def _publish_instruments(self, force: bool = False) -> None:
        now = time.monotonic()
        s = self.session
        if s is None or (not force and now - self._last_instruments_t < INSTRUMENTS_EVERY_S):
            return
        self._last_instruments_t = now
        self.publish("instruments", {k: dataclasses.asdict(v) for k, v in s.instrument_status().items()})


COMMANDS: dict[str, Callable[..., Any]] = {
    name[len("cmd_"):]: fn for name, fn in vars(RunServer).items() if name.startswith("cmd_")}
