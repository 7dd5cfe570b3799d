"""The connect / close / reconnect lifecycle every instrument driver shares (PrawnDO over serial,
SCPI over VISA, SynthHD over serial), written once.

A driver implements three hooks; the base holds the lock, makes ``connect()`` idempotent, leaves
nothing open when a connection attempt fails half-way, and re-applies the remembered settings after
a ``reconnect()``::

    _link_open  -> bool     True while the transport is open
    _open()                  open the transport and handshake (identify, resynchronise, ...);
                             raise a DriverError (or ValueError for a malformed address)
    _discard()               close the transport, ignoring errors; idempotent
    _restore()               after a reconnect: write back what the caller had set (default: nothing)
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

import serial

from drivers.errors import InstrumentDisconnected


class Instrument(ABC):
    """Base of the instrument drivers: the lifecycle above, under one re-entrant lock."""

    _lock: threading.RLock

    @property
    @abstractmethod
    def _link_open(self) -> bool:
        """True while the transport is open."""

    @abstractmethod
    def _open(self) -> None:
        """Open the transport and handshake (called under the lock, only when not open)."""

    @abstractmethod
    def _discard(self) -> None:
        """Close the transport, ignoring errors (idempotent)."""

    def _restore(self) -> None:
        """Re-apply the remembered settings after a reconnect (default: none to re-apply)."""

    def connect(self) -> None:
        """Open and handshake; a no-op while connected. A failed attempt leaves nothing open."""
        with self._lock:
            if self._link_open:
                return
            try:
                self._open()
            except BaseException:
                self._discard()
                raise

    def close(self) -> None:
        """Close the link (idempotent); remembered settings are kept for ``reconnect()``."""
        with self._lock:
            self._discard()

    def reconnect(self) -> None:
        """Close (ignoring errors), connect again and re-apply the remembered settings."""
        with self._lock:
            self._discard()
            self.connect()
            self._restore()

    @property
    def connected(self) -> bool:
        """True while the link is open (a dropped link is noticed at the next exchange)."""
        return self._link_open

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_serial(address: str, write_timeout_s: float, instrument: str) -> serial.SerialBase:
    """A pyserial port (a device path or any pyserial URL such as ``socket://host:port``) opened for
    non-blocking reads and exclusively (the instrument has one host: a second open of a local port
    fails at once). InstrumentDisconnected names the address if it cannot be opened.

    Reads use timeout 0 because on ``socket://`` pyserial's ``in_waiting`` is only 0 or 1, and
    blocking reads would go byte by byte; callers poll with their own deadline.

    Nothing the instrument sends on connection is dropped: pyserial's ``socket://`` open ends with
    ``reset_input_buffer()``, which would discard what arrived in the meantime, e.g. the refusal a
    card held by another host sends at once (seen as a bare "socket disconnected" instead). Drivers
    drop stale input themselves, where they can look at it first."""
    try:
        port = serial.serial_for_url(address, timeout=0, write_timeout=write_timeout_s,
                                     exclusive=True, do_not_open=True)
        if address.startswith("socket://"):
            port.reset_input_buffer = lambda: None
            try:
                port.open()
            finally:
                del port.reset_input_buffer
        else:
            port.open()
        return port
    except (serial.SerialException, OSError, ValueError) as exc:
        raise InstrumentDisconnected(f"cannot open {address}: {exc}", instrument=instrument) from exc
