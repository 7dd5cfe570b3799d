"""Shot publishing: fan-out, a blocking writer queue that never loses a shot, dropping displays,
slow and failed consumers reported."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from sequences.publish import ConsumerFailed, ConsumerThread, Overflow, ShotPublisher
from sequences.shot import ShotClock, ShotRecord


def _shot(i: int) -> ShotRecord:
    return ShotRecord.ok(index=i, cycle=i // 3, sequence_index=i % 3, direction="xyz"[i % 3],
                         frames=np.full((5, 2, 2), i, np.uint16), settings={},
                         timing=ShotClock().finish())


def test_every_consumer_gets_every_shot_in_order() -> None:
    pub = ShotPublisher()
    a = pub.subscribe("writer", maxsize=4, overflow=Overflow.BLOCK)
    b = pub.subscribe("monitor", maxsize=100)
    got_a, got_b = [], []
    threads = [ConsumerThread(a, lambda s: got_a.append(s.index)).start(),
               ConsumerThread(b, lambda s: got_b.append(s.index)).start()]
    for i in range(50):
        pub.publish(_shot(i))
    pub.close()
    assert all(t.join(timeout=10) for t in threads)
    assert got_a == list(range(50)) and got_b == list(range(50))
    assert a.stats.delivered == 50 and b.stats.dropped == 0 and a.get() is None


def test_slow_blocking_writer_makes_the_producer_wait_and_loses_nothing() -> None:
    pub = ShotPublisher(stall_s=0.05)
    events = []
    pub.add_listener(events.append)
    sub = pub.subscribe("writer", maxsize=2, overflow=Overflow.BLOCK)
    gate = threading.Event()
    written = []

    def slow_write(shot: ShotRecord) -> None:
        gate.wait(10)
        written.append(shot.index)
    consumer = ConsumerThread(sub, slow_write).start()
    producer = threading.Thread(target=lambda: [pub.publish(_shot(i)) for i in range(8)])
    producer.start()
    producer.join(timeout=0.4)
    assert producer.is_alive()  # blocked by the full writer queue, not dropping
    assert sub.stats.depth == 2
    gate.set()
    producer.join(timeout=10)
    pub.close()
    assert consumer.join(timeout=10)
    assert written == list(range(8))
    st = sub.stats
    assert st.dropped == 0 and st.waits >= 1 and st.waited_s > 0.3 and st.max_depth == 2
    slow = [e for e in events if e.kind == "slow"]
    assert slow and slow[0].consumer == "writer" and "producer waits" in slow[0].detail
    assert any("blocked for" in e.detail for e in slow)  # repeated while the stall lasts


def test_a_full_display_queue_drops_its_oldest_shots_and_reports_them() -> None:
    pub = ShotPublisher()
    events = []
    pub.add_listener(events.append)
    gui = pub.subscribe("gui", maxsize=3, overflow=Overflow.DROP_OLDEST)
    for i in range(10):
        pub.publish(_shot(i))
    pub.close()
    assert [s.index for s in gui] == [7, 8, 9]
    assert gui.stats.dropped == 7
    drops = [e for e in events if e.kind == "dropped"]
    assert [e.count for e in drops] == list(range(1, 8)) and drops[0].consumer == "gui"


def test_a_failed_writer_stops_the_producer_even_while_it_waits() -> None:
    pub = ShotPublisher(stall_s=0.05)
    events = []
    pub.add_listener(events.append)
    sub = pub.subscribe("writer", maxsize=1, overflow=Overflow.BLOCK)
    display = pub.subscribe("gui", maxsize=1)
    gate = threading.Event()

    def write(shot: ShotRecord) -> None:
        gate.wait(10)
        raise OSError(28, "No space left on device")
    consumer = ConsumerThread(sub, write).start()
    errors = []

    def produce() -> None:
        try:
            for i in range(5):
                pub.publish(_shot(i))
        except ConsumerFailed as exc:
            errors.append(exc)
    producer = threading.Thread(target=produce)
    producer.start()
    producer.join(timeout=0.3)
    assert producer.is_alive()
    gate.set()
    producer.join(timeout=10)
    assert consumer.join(timeout=10) and isinstance(consumer.error, OSError)
    assert len(errors) == 1 and errors[0].consumer == "writer"
    assert "No space left on device" in str(errors[0])
    with pytest.raises(ConsumerFailed):
        pub.publish(_shot(9))
    assert any(e.kind == "failed" and e.consumer == "writer" for e in events)
    pub.close()
    assert display.get(timeout=1) is not None


def test_a_failed_display_is_detached_and_the_run_goes_on() -> None:
    pub = ShotPublisher()
    gui = pub.subscribe("gui", maxsize=2)
    writer = pub.subscribe("writer", maxsize=100, overflow=Overflow.BLOCK)
    gui.fail(RuntimeError("widget deleted"))
    for i in range(5):
        pub.publish(_shot(i))
    pub.close()
    assert len(list(writer)) == 5 and gui.get() is None
    with pytest.raises(TimeoutError, match="no shot within"):
        ShotPublisher().subscribe("x").get(timeout=0.01)
    with pytest.raises(RuntimeError, match="after close"):
        pub.publish(_shot(5))
    with pytest.raises(ValueError, match="maxsize = 0"):
        ShotPublisher().subscribe("bad", maxsize=0)
