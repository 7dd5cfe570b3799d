"""A scripted SCPI peer on a real 127.0.0.1 socket: byte-exact expected exchanges (pymeasure's
``expected_protocol`` idea, over the real transport instead of a mock adapter).

Each ``Exchange`` expects exactly some bytes from the driver and answers with others. The peer
records every deviation; ``assert_done()`` fails on a deviation, on an unused exchange and on
bytes the driver sent beyond the script.
"""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

IDN = b"Rohde&Schwarz,SMA100B,1419.8888K02/100001,5.00.122.24"
NO_ERROR = b'0,"No error"\n'


@dataclass(frozen=True)
class Exchange:
    """Expect ``expect``; then wait ``delay_s`` and send ``reply`` (chunks sent ``pause_s`` apart);
    then close the connection if ``close``. ``accept`` marks the start of a new connection."""

    expect: bytes = b""
    reply: bytes | tuple[bytes, ...] = b""
    delay_s: float = 0.0
    pause_s: float = 0.0
    close: bool = False
    accept: bool = False


ACCEPT = Exchange(accept=True)


def handshake() -> list[Exchange]:
    """What ``connect()`` exchanges: identify, then empty the error queue."""
    return [Exchange(b"*IDN?\n", IDN + b"\n"), Exchange(b"SYST:ERR?\n", NO_ERROR)]


def setting(command: bytes) -> list[Exchange]:
    """A setting command accepted by the instrument: the command, then an empty error queue."""
    return [Exchange(command + b"\n"), Exchange(b"SYST:ERR?\n", NO_ERROR)]


class ScriptedPeer:
    """Plays ``script`` (a first connection is accepted implicitly); ``address`` is the VISA address."""

    def __init__(self, script: list[Exchange], *, read_timeout_s: float = 3.0) -> None:
        self.script = script
        self.errors: list[str] = []
        self.used = 0
        self.extra = b""
        self._timeout = read_timeout_s
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(read_timeout_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scpi-script-peer", daemon=True)

    @property
    def address(self) -> str:
        return f"TCPIP0::127.0.0.1::{self._server.getsockname()[1]}::SOCKET"

    def start(self) -> ScriptedPeer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._server.close()

    def wait_used(self, count: int, timeout_s: float = 3.0) -> None:
        """Block until ``count`` exchanges are played (e.g. a late reply has really been sent)."""
        deadline = time.monotonic() + timeout_s
        while self.used < count and time.monotonic() < deadline:
            time.sleep(0.005)
        assert self.used >= count, f"peer stuck at exchange {self.used}: {self.errors}"

    def assert_done(self) -> None:
        """Stop, then fail on deviations, unused exchanges or extra bytes."""
        self.stop()
        assert not self.errors, self.errors
        assert self.used == len(self.script), f"unused exchanges: {self.script[self.used:]}"
        assert self.extra == b"", f"driver sent bytes beyond the script: {self.extra!r}"

    def _read(self, conn: socket.socket, expect: bytes, pending: bytearray) -> bool:
        deadline = time.monotonic() + self._timeout
        while len(pending) < len(expect):
            if time.monotonic() > deadline or self._stop.is_set():
                self.errors.append(f"exchange {self.used}: expected {expect!r}, got {bytes(pending)!r}")
                return False
            conn.settimeout(0.05)
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            if not data:
                self.errors.append(f"exchange {self.used}: connection closed, expected {expect!r}, "
                                   f"got {bytes(pending)!r}")
                return False
            pending += data
        got = bytes(pending[:len(expect)])
        del pending[:len(expect)]
        if got != expect:
            self.errors.append(f"exchange {self.used}: expected {expect!r}, got {got!r}")
            return False
        return True

    def _collect_extra(self, conn: socket.socket, pending: bytearray) -> None:
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
            pending += data
        self.extra += bytes(pending)

    def _run(self) -> None:
        conn: socket.socket | None = None
        pending = bytearray()
        try:
            for k, step in enumerate(self.script):
                if step.accept or conn is None:
                    if conn is not None:
                        self._collect_extra(conn, pending)
                        conn.close()
                    conn, pending = self._server.accept()[0], bytearray()
                    if step.accept:
                        self.used = k + 1
                        continue
                if not self._read(conn, step.expect, pending):
                    return
                if step.delay_s:
                    self._stop.wait(step.delay_s)
                chunks = step.reply if isinstance(step.reply, tuple) else (step.reply,)
                for i, chunk in enumerate(chunks):
                    if i and step.pause_s:
                        self._stop.wait(step.pause_s)
                    conn.sendall(chunk)
                self.used = k + 1
                if step.close:
                    conn.close()
                    conn = None
            if conn is not None:
                self._collect_extra(conn, pending)
        except OSError as exc:
            self.errors.append(f"exchange {self.used}: {exc!r}")
        finally:
            if conn is not None:
                conn.close()
