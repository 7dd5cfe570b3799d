"""A scripted PrawnDO peer on a real 127.0.0.1 socket: byte-exact expected exchanges.

Each step expects exactly some bytes (or bytes matching a regex) from the driver, then replies. The
peer records every deviation; ``assert_done()`` fails on a deviation, on an unused step and on bytes
the driver sent beyond the script (the idea of pymeasure's ``expected_protocol``).
"""
from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

Reply = bytes | Callable[[re.Match[bytes]], bytes]


@dataclass(frozen=True)
class Step:
    """Expect ``expect`` (bytes, or a compiled bytes regex to fullmatch), wait ``delay_s``, send
    ``reply`` (bytes, or a function of the regex match), then close the connection if ``close``."""

    expect: bytes | re.Pattern[bytes]
    reply: Reply = b""
    delay_s: float = 0.0
    close: bool = False


ACCEPT = Step(b"", b"")
"""Marker step: accept a new connection (the script starts with one implicitly)."""

SYNC = re.compile(rb"\nend\n(#sync-[0-9a-f]+-\d+)\n")


def sync_step(*, stale: bytes = b"") -> Step:
    """The driver's resync exchange, answered as the firmware does (raw command echoes)."""
    return Step(SYNC, lambda m: stale + b"Invalid command: \n\r\nInvalid command: end\n\r\n"
                b"Invalid command: " + m[1] + b"\n\r\n")


def handshake(board: bytes = b"pico2") -> list[Step]:
    """What ``PrawnDO.connect()`` exchanges: resync, debug off, version, board."""
    return [sync_step(), Step(b"ndb\n", b"ok\r\n"), Step(b"ver\n", b"Version: 1.3.0\r\n"),
            Step(b"brd\n", b"board: " + board + b"\r\n")]


class ScriptedPeer:
    """Plays ``steps`` against one driver; ``url`` is the pyserial address to give the driver."""

    def __init__(self, steps: list[Step], *, read_timeout_s: float = 3.0) -> None:
        self.steps = steps
        self.errors: list[str] = []
        self.used = 0
        self.extra = b""
        self._timeout = read_timeout_s
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(read_timeout_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prawndo-script-peer", daemon=True)

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self._server.getsockname()[1]}"

    def start(self) -> ScriptedPeer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._server.close()

    def assert_done(self) -> None:
        self.stop()
        assert not self.errors, self.errors
        assert self.used == len(self.steps), f"unused steps: {self.steps[self.used:]}"
        assert self.extra == b"", f"driver sent bytes beyond the script: {self.extra!r}"

    def _read(self, conn: socket.socket, step: Step, pending: bytearray) -> bytes | None:
        deadline = time.monotonic() + self._timeout
        while True:
            if isinstance(step.expect, bytes):
                if len(pending) >= len(step.expect):
                    got = bytes(pending[:len(step.expect)])
                    del pending[:len(step.expect)]
                    return got
            else:
                for end in range(1, len(pending) + 1):
                    if step.expect.fullmatch(bytes(pending[:end])):
                        got = bytes(pending[:end])
                        del pending[:end]
                        return got
            if time.monotonic() > deadline or self._stop.is_set():
                self.errors.append(f"step {self.used}: expected {step.expect!r}, got {bytes(pending)!r}")
                return None
            conn.settimeout(0.05)
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            if not data:
                self.errors.append(f"step {self.used}: connection closed, expected {step.expect!r}")
                return None
            pending += data

    def _run(self) -> None:
        conn: socket.socket | None = None
        pending = bytearray()
        try:
            for k, step in enumerate(self.steps):
                if step is ACCEPT or conn is None:
                    if conn is not None:
                        conn.close()
                    conn, pending = self._server.accept()[0], bytearray()
                    if step is ACCEPT:
                        self.used = k + 1
                        continue
                got = self._read(conn, step, pending)
                if got is None:
                    return
                if isinstance(step.expect, bytes):
                    reply = step.reply if isinstance(step.reply, bytes) else step.reply(re.match(b"", b""))
                else:
                    m = step.expect.fullmatch(got)
                    assert m is not None
                    reply = step.reply(m) if callable(step.reply) else step.reply
                if step.delay_s:
                    self._stop.wait(step.delay_s)
                if reply:
                    conn.sendall(reply)
                self.used = k + 1
                if step.close:
                    conn.close()
                    conn = None
            if conn is not None:          # collect anything sent beyond the script
                while not self._stop.is_set():
                    conn.settimeout(0.05)
                    try:
                        data = conn.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    self.extra += bytes(pending) + data
                    pending.clear()
                self.extra += bytes(pending)
        except OSError as exc:
            self.errors.append(f"step {self.used}: {exc!r}")
        finally:
            if conn is not None:
                conn.close()
