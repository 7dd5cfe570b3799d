"""A threaded TCP server that puts an emulated SCPI instrument on a raw socket (``\\n`` terminated).

One accept thread plus one thread per connection; all of them are joined by ``stop()``. All
connections share the instrument (state and error queue).

Fault-injection switches, all thread-safe and effective immediately:

- ``drop_connections()``: close every open connection now;
- ``drop_at_next_command()``: the next received command closes its connection, unanswered;
- ``reply_delay_s``: wait this long (seconds) before every reply;
- ``garbage_replies``: answer every query with non-SCPI bytes (still ``\\n`` terminated);
- ``refuse_connections``: stop listening (clients get "connection refused"); False listens again
  on the same port;
- ``push_error(code, text)``: put an error into the instrument's error queue.
"""
from __future__ import annotations

import logging
import select
import socket
import threading
from collections import deque
from types import TracebackType
from typing import Self

from drivers.simulated.scpi_device import OnChange, ScpiDevice

log = logging.getLogger(__name__)

GARBAGE_REPLY = b"\xff\xfe#@!\x00\x9bgarbage"
_POLL_S = 0.05
_MAX_LINE_BYTES = 1 << 16


class ScpiServer:
    """Serve ``device`` on ``host:port`` (port 0 lets the OS choose; see ``port`` after ``start()``)."""

    def __init__(self, device: ScpiDevice, *, host: str = "127.0.0.1", port: int = 0,
                 name: str = "scpi") -> None:
        self.device = device
        self.host = host
        self.name = name
        self._requested_port = port
        self._port: int | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._clients: dict[threading.Thread, socket.socket] = {}
        self._received: deque[str] = deque(maxlen=1000)
        self._connections_accepted = 0
        self._drop_next = False
        self._delay_s = 0.0
        self._garbage = False
        self._refuse = False

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind, listen and start the accept thread; returns self."""
        if self._accept_thread is not None:
            raise RuntimeError(f"{self.name} server already started")
        self._stopping.clear()
        listener = self._bind(self._requested_port)
        self._port = listener.getsockname()[1]
        with self._lock:
            if self._refuse:
                listener.close()
            else:
                self._listener = listener
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True,
                                               name=f"{self.name}-accept-{self._port}")
        self._accept_thread.start()
        log.info("%s emulator listening on %s", self.name, self.address)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Close the listener and every connection, and join all threads (RuntimeError if one hangs)."""
        self._stopping.set()
        with self._lock:
            listener, self._listener = self._listener, None
            clients = list(self._clients.items())
        if listener is not None:
            _close_listener(listener)
        for _, conn in clients:
            _shutdown(conn)
        threads = [t for t, _ in clients]
        if self._accept_thread is not None:
            threads.append(self._accept_thread)
        for t in threads:
            t.join(timeout_s)
        self._accept_thread = None
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"{self.name} server threads did not stop: {alive}")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- information -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port (known after ``start()``)."""
        if self._port is None:
            raise RuntimeError(f"{self.name} server not started: no port yet")
        return self._port

    @property
    def address(self) -> str:
        """The VISA resource string of this server: ``TCPIP0::<host>::<port>::SOCKET``."""
        return f"TCPIP0::{self.host}::{self.port}::SOCKET"

    @property
    def connection_count(self) -> int:
        """Number of currently open client connections."""
        with self._lock:
            return len(self._clients)

    @property
    def connections_accepted(self) -> int:
        """Number of connections accepted since start."""
        with self._lock:
            return self._connections_accepted

    def received(self) -> list[str]:
        """The last (up to 1000) received program messages, oldest first, from all connections."""
        with self._lock:
            return list(self._received)

    def state(self) -> dict[str, object]:
        """Snapshot of the instrument's settings (thread-safe)."""
        return self.device.state()

    @property
    def on_change(self) -> OnChange | None:
        """Callback ``on_change(name, value)`` run after a setting changes (from a server thread)."""
        return self.device.on_change

    @on_change.setter
    def on_change(self, callback: OnChange | None) -> None:
        self.device.on_change = callback

    # --- fault switches --------------------------------------------------------------------------

    def push_error(self, code: int, text: str) -> None:
        """Put ``code,"text"`` into the instrument's error queue."""
        self.device.push_error(code, text)

    def drop_connections(self) -> None:
        """Close every open connection now (the instrument keeps its settings)."""
        with self._lock:
            conns = list(self._clients.values())
        for conn in conns:
            _shutdown(conn)

    def drop_at_next_command(self, enabled: bool = True) -> None:
        """Close the connection that sends the next command, without executing or answering it."""
        with self._lock:
            self._drop_next = enabled

    @property
    def reply_delay_s(self) -> float:
        """Delay before every reply, in seconds (0 = answer at once)."""
        with self._lock:
            return self._delay_s

    @reply_delay_s.setter
    def reply_delay_s(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"reply_delay_s must be >= 0 s, got {seconds!r}")
        with self._lock:
            self._delay_s = float(seconds)

    @property
    def garbage_replies(self) -> bool:
        """If True, every reply is replaced by non-SCPI bytes."""
        with self._lock:
            return self._garbage

    @garbage_replies.setter
    def garbage_replies(self, enabled: bool) -> None:
        with self._lock:
            self._garbage = bool(enabled)

    @property
    def refuse_connections(self) -> bool:
        """If True, nothing listens on the port (new connections are refused)."""
        with self._lock:
            return self._refuse

    @refuse_connections.setter
    def refuse_connections(self, enabled: bool) -> None:
        with self._lock:
            self._refuse = bool(enabled)
            running = self._accept_thread is not None and not self._stopping.is_set()
            if enabled and self._listener is not None:
                _close_listener(self._listener)
                self._listener = None
            elif not enabled and running and self._listener is None:
                self._listener = self._bind(self.port)

    # --- threads ---------------------------------------------------------------------------------

    def _bind(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, port))
            listener.listen(8)
        except OSError:
            listener.close()
            raise
        return listener

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                self._stopping.wait(_POLL_S)
                continue
            try:
                ready, _, _ = select.select([listener], [], [], _POLL_S)
                if not ready:
                    continue
                conn, peer = listener.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, ValueError):  # the listener was closed under us (refuse/stop)
                continue
            with self._lock:
                if self._stopping.is_set() or self._listener is None:
                    conn.close()
                    continue
                self._connections_accepted += 1
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                          name=f"{self.name}-client-{self._port}-{self._connections_accepted}")
                self._clients[thread] = conn
            log.debug("%s: connection from %s", self.name, peer)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = bytearray()
        try:
            while not self._stopping.is_set():
                ready, _, _ = select.select([conn], [], [], _POLL_S)
                if not ready:
                    continue
                data = conn.recv(4096)
                if not data:
                    return
                buffer += data
                while b"\n" in buffer:
                    raw, _, rest = bytes(buffer).partition(b"\n")
                    buffer = bytearray(rest)
                    if not self._handle_line(conn, raw):
                        return
                if len(buffer) > _MAX_LINE_BYTES:
                    buffer.clear()
                    self.device.push_error(-102, "program message too long")
        except (OSError, ValueError):
            return
        finally:
            conn.close()
            with self._lock:
                self._clients.pop(threading.current_thread(), None)

    def _handle_line(self, conn: socket.socket, raw: bytes) -> bool:
        """Execute one received line; False means: close this connection."""
        line = raw.decode("ascii", errors="replace").rstrip("\r")
        with self._lock:
            self._received.append(line)
            drop, self._drop_next = self._drop_next, False
            delay, garbage = self._delay_s, self._garbage
        if drop:
            log.info("%s: dropping the connection at %r (fault injection)", self.name, line)
            return False
        reply = self.device.execute(line)
        if reply is None:
            return True
        if delay > 0 and self._stopping.wait(delay):
            return False
        conn.sendall(GARBAGE_REPLY + b"\n" if garbage else reply.encode("ascii", errors="replace") + b"\n")
        return True


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _close_listener(listener: socket.socket) -> None:
    """Stop listening at once: a plain close() is deferred while the accept thread sits in select()
    on the socket, and a client connecting in that window is accepted by the kernel, then reset."""
    _shutdown(listener)
    listener.close()
