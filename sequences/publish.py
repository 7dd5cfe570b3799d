"""Publishing shots to consumers (run writer, monitor, GUI) through bounded queues.

Each subscription has its own queue and overflow policy:
- ``Overflow.BLOCK`` (the run writer): a full queue makes ``publish`` wait, so no shot is ever
  lost; every wait is counted and reported as a 'slow' ConsumerEvent (again every ``stall_s``
  while it lasts). A BLOCK consumer that failed makes ``publish`` raise ConsumerFailed: the run
  must not go on without its writer.
- ``Overflow.DROP_OLDEST`` (displays): a full queue drops its oldest shot, counted and reported as
  a 'dropped' ConsumerEvent; a failed display consumer is reported and detached.
Shots are shared, not copied (their frames are read-only).
"""
from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sequences.shot import ShotRecord, utc_now_iso

log = logging.getLogger(__name__)


class Overflow(enum.Enum):
    """What a full queue does: make the producer wait, or drop its oldest shot."""

    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"


class ConsumerFailed(RuntimeError):
    """A consumer that must not lose data (BLOCK) has failed; carries its name and error."""

    def __init__(self, consumer: str, error: BaseException) -> None:
        self.consumer = consumer
        self.error = error
        super().__init__(f"consumer {consumer!r} failed: {type(error).__name__}: {error}")


@dataclass(frozen=True)
class ConsumerEvent:
    """A consumer problem: kind 'slow' (producer waited), 'dropped' (shot dropped) or 'failed'."""

    consumer: str
    kind: str
    count: int
    detail: str
    time_utc: str


@dataclass(frozen=True)
class SubscriptionStats:
    """Counters of one subscription."""

    delivered: int
    dropped: int
    waits: int
    waited_s: float
    max_depth: int
    depth: int


class Subscription:
    """One consumer's bounded queue. Iterate it (or call ``get``) until it yields no more shots."""

    def __init__(self, publisher: ShotPublisher, name: str, maxsize: int, overflow: Overflow) -> None:
        if maxsize < 1:
            raise ValueError(f"subscription {name!r}: maxsize = {maxsize}, expected >= 1")
        self.name = name
        self.maxsize = maxsize
        self.overflow = overflow
        self._publisher = publisher
        self._items: deque[ShotRecord] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.error: BaseException | None = None
        self._delivered = self._dropped = self._waits = self._max_depth = 0
        self._waited_s = 0.0

    def get(self, timeout: float | None = None) -> ShotRecord | None:
        """The next shot; None once the publisher closed and the queue is drained.

        Raises TimeoutError if nothing arrives within ``timeout`` seconds.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                raise TimeoutError(f"subscription {self.name!r}: no shot within {timeout} s")
            if not self._items:
                return None
            shot = self._items.popleft()
            self._delivered += 1
            self._cond.notify_all()
            return shot

    def __iter__(self) -> Iterator[ShotRecord]:
        while (shot := self.get()) is not None:
            yield shot

    def fail(self, error: BaseException) -> None:
        """Mark this consumer failed (it stops taking shots); reported to the publisher's listeners."""
        with self._cond:
            self.error = error
            self._items.clear()
            self._cond.notify_all()
        self._publisher._report(ConsumerEvent(self.name, "failed", 1,
                                              f"{type(error).__name__}: {error}", utc_now_iso()))

    @property
    def stats(self) -> SubscriptionStats:
        """Delivered, dropped, producer waits (count, seconds), queue depth (max and now)."""
        with self._cond:
            return SubscriptionStats(self._delivered, self._dropped, self._waits, self._waited_s,
                                     self._max_depth, len(self._items))

    def _close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _report_unlocked(self, event: ConsumerEvent) -> None:
        """Report while this queue's lock is held by the caller: release it meanwhile."""
        self._cond.release()
        try:
            self._publisher._report(event)
        finally:
            self._cond.acquire()

    def _put(self, shot: ShotRecord, stall_s: float) -> list[ConsumerEvent]:
        events: list[ConsumerEvent] = []
        with self._cond:
            if self._closed:
                return events
            if self.error is not None:
                if self.overflow is Overflow.BLOCK:
                    raise ConsumerFailed(self.name, self.error)
                return events
            if len(self._items) >= self.maxsize:
                if self.overflow is Overflow.DROP_OLDEST:
                    self._items.popleft()
                    self._dropped += 1
                    events.append(ConsumerEvent(self.name, "dropped", self._dropped,
                                                f"queue of {self.maxsize} full: oldest shot "
                                                "dropped", utc_now_iso()))
                else:
                    self._waits += 1
                    t0 = time.monotonic()
                    self._report_unlocked(ConsumerEvent(
                        self.name, "slow", self._waits,
                        f"queue of {self.maxsize} full: producer waits", utc_now_iso()))
                    while len(self._items) >= self.maxsize and self.error is None:
                        if not self._cond.wait(stall_s) and len(self._items) >= self.maxsize:
                            self._report_unlocked(ConsumerEvent(
                                self.name, "slow", self._waits,
                                f"producer blocked for {time.monotonic() - t0:.1f} s",
                                utc_now_iso()))
                    self._waited_s += time.monotonic() - t0
                    if self.error is not None:
                        raise ConsumerFailed(self.name, self.error)
            self._items.append(shot)
            self._max_depth = max(self._max_depth, len(self._items))
            self._cond.notify_all()
        return events


ConsumerListener = Callable[[ConsumerEvent], None]


class ShotPublisher:
    """Fans each published shot out to every subscription; ``close()`` ends them all."""

    def __init__(self, stall_s: float = 5.0) -> None:
        self.stall_s = stall_s
        self._subs: list[Subscription] = []
        self._listeners: list[ConsumerListener] = []
        self._lock = threading.Lock()
        self._closed = False
        self.published = 0

    def subscribe(self, name: str, *, maxsize: int = 16,
                  overflow: Overflow = Overflow.DROP_OLDEST) -> Subscription:
        """A new consumer queue (the run writer uses ``Overflow.BLOCK``)."""
        sub = Subscription(self, name, maxsize, overflow)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"subscribe({name!r}) after the publisher was closed")
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Detach a consumer (its queue ends)."""
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
        sub._close()

    def add_listener(self, listener: ConsumerListener) -> None:
        """Call ``listener(event)`` for every slow, dropped or failed consumer event."""
        with self._lock:
            self._listeners.append(listener)

    def publish(self, shot: ShotRecord) -> None:
        """Give ``shot`` to every consumer (waits for full BLOCK queues; raises ConsumerFailed)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("publish() after close()")
            subs = list(self._subs)
        failed: ConsumerFailed | None = None
        for sub in subs:
            try:
                events = sub._put(shot, self.stall_s)
            except ConsumerFailed as exc:
                failed = failed or exc
                continue
            for event in events:
                self._report(event)
        self.published += 1
        if failed is not None:
            raise failed

    def close(self) -> None:
        """No more shots: every consumer drains its queue and then gets None."""
        with self._lock:
            self._closed = True
            subs = list(self._subs)
        for sub in subs:
            sub._close()

    def _report(self, event: ConsumerEvent) -> None:
        (log.warning if event.kind != "dropped" else log.info)(
            "consumer %s: %s (%d) %s", event.consumer, event.kind, event.count, event.detail)
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("consumer-event listener %r failed", listener)


class ConsumerThread:
    """Runs ``handle(shot)`` for every shot of a subscription in its own thread.

    An exception in ``handle`` marks the subscription failed (reported; a BLOCK consumer's failure
    then stops the producer) and ends the thread; ``error`` holds it.
    """

    def __init__(self, subscription: Subscription, handle: Callable[[ShotRecord], None], *,
                 name: str | None = None) -> None:
        self.subscription = subscription
        self._handle = handle
        self._thread = threading.Thread(target=self._run, name=name or f"consumer-{subscription.name}")
        self.error: BaseException | None = None
        self.handled = 0

    def start(self) -> ConsumerThread:
        """Start the thread; returns self."""
        self._thread.start()
        return self

    def _run(self) -> None:
        for shot in self.subscription:
            try:
                self._handle(shot)
            except Exception as exc:  # reported through the subscription
                self.error = exc
                self.subscription.fail(exc)
                return
            self.handled += 1

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end (after the publisher closed); True if it ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()
