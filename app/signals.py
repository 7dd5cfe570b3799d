"""Orderly endings on SIGINT (Ctrl-C) and SIGTERM for every command.

The first signal asks for a stop after the current shot, a second one aborts; signals that arrive
before a run exists (during start-up) end the command quietly through :class:`Interrupted`, so
every ``finally`` closes what was opened. Handlers run in the main thread only (Python's rule);
elsewhere the functions here do nothing.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) before anything could be stopped in order: unwind and exit 130."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_INTERRUPTED = 130          # exit status of a command ended by Ctrl-C or SIGTERM (128 + SIGINT)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install_terminate_handler() -> None:
    """SIGTERM raises :class:`Interrupted` in the main thread, as Ctrl-C raises KeyboardInterrupt."""
    if _in_main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupted)


@contextlib.contextmanager
def _handling(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM while inside (main thread only), then the previous ones."""
    if not _in_main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred_signals() -> Iterator[list[str]]:
    """While inside, SIGINT/SIGTERM are only recorded (names in the yielded list), not raised."""
    pending: list[str] = []

    def record(signum: int, frame: FrameType | None) -> None:
        pending.append(signal.Signals(signum).name)

    with _handling(record):
        yield pending


@contextlib.contextmanager
def stop_then_abort(on_stop: Callable[[], None], on_abort: Callable[[], None]) -> Iterator[list[int]]:
    """While inside: the first SIGINT/SIGTERM calls ``on_stop``, every later one ``on_abort``.

    Yields a one-element list holding the number of signals received. The previous handlers are
    restored on exit. The callbacks run in the main thread between bytecodes: they must only hand a
    command to the run (never block).
    """
    count = [0]

    def handler(signum: int, frame: FrameType | None) -> None:
        count[0] += 1
        (on_stop if count[0] == 1 else on_abort)()

    with _handling(handler):
        yield count


def ignore_interrupts_in_worker() -> None:
    """Initializer of worker processes: Ctrl-C in the terminal (or a SIGTERM to the process group)
    reaches every worker; workers leave it to their parent, which lets them finish the chunk at
    hand and then ends them. A worker killed while it writes its result would leave a half
    message in the result pipe, on which the pool's manager thread then waits for ever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
