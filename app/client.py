"""A Python client of the run server (`steerlab serve`), for the command line and notebooks.

    from app.client import Client
    c = Client.for_config("configs/virtual-lab.toml")      # or Client(data_dir="runs")
    c.queue_add(open("configs/plans/default.toml").read(), shots=300)
    for event, data in c.events(["progress", "run_finished"], timeout_s=600):
        ...
    snap = c.snapshot()            # criteria (JSON) + images and history (numpy arrays)

Requests carry the token of the server's endpoint file (readable only by its user). A server that
does not answer within ``timeout_s`` raises ServerUnavailable; a refused command ServerError.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import zmq

from app.server import endpoint as ep
from app.server import protocol


class ServerError(RuntimeError):
    """The server refused or failed a command (its one-line reason)."""


class ServerUnavailable(ServerError):
    """No server, or it did not answer in time."""


class Client:
    """Commands and events of one run server. ``timeout_s``: per request."""

    def __init__(self, *, data_dir: str | Path | None = None, endpoint: ep.Endpoint | None = None,
                 timeout_s: float = 10.0) -> None:
        if endpoint is None:
            if data_dir is None:
                raise ValueError("give data_dir (the server's lab.data_dir) or an endpoint")
            try:
                endpoint = ep.load(Path(data_dir))
            except ep.EndpointError as exc:
                raise ServerUnavailable(str(exc)) from None
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._ctx: zmq.Context[Any] = zmq.Context.instance()
        self._req: zmq.Socket[bytes] | None = None

    @classmethod
    def for_config(cls, config_path: str | Path, **kw: Any) -> Client:
        """The client of the server that runs a lab configuration (found through its data_dir)."""
        from app.labconfig import load_lab_config
        return cls(data_dir=load_lab_config(config_path).data_dir, **kw)

    def _socket(self) -> zmq.Socket[bytes]:
        if self._req is None:
            s = self._ctx.socket(zmq.REQ)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RCVTIMEO, int(self.timeout_s * 1000))
            s.setsockopt(zmq.SNDTIMEO, int(self.timeout_s * 1000))
            s.connect(self.endpoint.request)
            self._req = s
        return self._req

    def call(self, command: str, **args: Any) -> Any:
        """Send one command; its result, ServerError with the server's reason if refused."""
        s = self._socket()
        try:
            s.send_multipart(protocol.request(self.endpoint.token, command, **args))
            reply = protocol.decode(s.recv_multipart())
        except zmq.Again:
            self.close()          # a REQ socket without its reply cannot send again
            raise ServerUnavailable(f"the run server ({self.endpoint.request}) did not answer "
                                    f"{command!r} within {self.timeout_s:g} s") from None
        if not isinstance(reply, dict) or not reply.get("ok"):
            raise ServerError(str(reply.get("error") if isinstance(reply, dict) else reply))
        return reply.get("result")

    def subscribe(self, topics: Iterable[str] | None = None) -> Subscription:
        """Events from now on (connected before this returns): ``sub.get(timeout_s)``."""
        return Subscription(self._ctx, self.endpoint.publish, topics)

    def events(self, topics: Iterable[str] | None = None, *, timeout_s: float | None = None
               ) -> Iterator[tuple[str, Any]]:
        """``(event, data)`` as the server publishes them (only ``topics`` if given); ends after
        ``timeout_s`` without any event (None: never)."""
        sub = self.subscribe(topics)
        try:
            while True:
                got = sub.get(timeout_s)
                if got is None:
                    return
                yield got
        finally:
            sub.close()

    def close(self) -> None:
        if self._req is not None:
            self._req.close(0)
            self._req = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- commands ---------------------------------------------------------------------------------
    def ping(self) -> str:
        return str(self.call("ping"))

    def status(self) -> dict[str, Any]:
        return dict(self.call("status"))

    def queue_add(self, plan_toml: str, *, plan_source: str = "<client>", shots: int | None = None,
                  state: str | None = None, seed: int | None = None, out: str | None = None,
                  regions: dict[str, Any] | None = None) -> dict[str, Any]:
        """Queue a run of a plan (TOML text); returns the queued item (with its ``id``).
        ``regions``: the chosen split it starts with, ``{axis, position_px, gap_px, a_side}`` (px)."""
        return dict(self.call("queue_add", plan_toml=plan_toml, plan_source=plan_source, shots=shots,
                              state=state, seed=seed, out=out, regions=regions))

    def queue(self) -> dict[str, Any]:
        return dict(self.call("queue_list"))

    def queue_remove(self, item_id: str) -> None:
        self.call("queue_remove", id=item_id)

    def queue_move(self, item_id: str, position: int) -> None:
        self.call("queue_move", id=item_id, position=position)

    def queue_pause(self) -> None:
        self.call("queue_pause")

    def queue_resume(self) -> None:
        self.call("queue_resume")

    def snapshot(self, monitor: bool = False) -> dict[str, Any] | None:
        """The latest ``snapshot`` event's data the server published: criteria as JSON and float32
        images (None before the first); ``monitor``: the latest ``monitor`` event's instead, the
        whole snapshot in wire form (app.server.snapshots.from_wire)."""
        return self.call("snapshot", monitor=monitor)

    def scan_points(self) -> dict[str, Any] | None:
        """The latest ``scan`` event's data: ``{"file", "scan"}`` with the criteria per scan point
        (``app.scan_monitor.ScanMonitor.results_json``); None before a scan run published one."""
        result = self.call("scan_points")
        return result if isinstance(result, dict) else None

    def pause(self) -> str:
        return str(self.call("run_pause"))

    def resume(self) -> str:
        return str(self.call("run_resume"))

    def stop(self) -> str:
        return str(self.call("run_stop"))

    def abort(self) -> str:
        return str(self.call("run_abort"))


class Subscription:
    """A connected SUB socket: ``get(timeout_s)`` -> ``(event, data)`` or None on timeout."""

    def __init__(self, ctx: zmq.Context[Any], address: str, topics: Iterable[str] | None) -> None:
        self._sub = ctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.RCVHWM, 10_000)
        for t in (topics or [""]):
            self._sub.setsockopt(zmq.SUBSCRIBE, t.encode())
        self._sub.connect(address)
        self._poller = zmq.Poller()
        self._poller.register(self._sub, zmq.POLLIN)

    def get(self, timeout_s: float | None = None) -> tuple[str, Any] | None:
        if not dict(self._poller.poll(None if timeout_s is None else int(timeout_s * 1000))):
            return None
        frames = self._sub.recv_multipart()
        msg = protocol.decode(frames[1:])
        return str(msg.get("event")), msg.get("data")

    def close(self) -> None:
        self._sub.close(0)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
