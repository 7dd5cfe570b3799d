"""The run server's queue of runs and its history of finished runs, kept in one small JSON file in
the data directory (``server-state.json``, written atomically after every change) so that both
survive a restart of the server. A run that was running when the server died goes to the history
as "interrupted" with its file (every committed shot is in it: the writer is crash-safe), and
the queue resumes with the next item.
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "server-state.json"
HISTORY_KEPT = 500


class QueueError(ValueError):
    """A queue command that cannot be done (unknown id, bad position, ...)."""


@dataclass
class QueueItem:
    """One queued run: the plan's TOML text (and where it came from) and the run options."""

    id: str
    plan_toml: str
    plan_source: str = "<client>"
    shots: int | None = None
    state: str | None = None
    seed: int | None = None
    out: str | None = None
    added_at: float = field(default_factory=time.time)
    #: the chosen split the run starts with ({axis, position_px, gap_px, a_side}; None: the config's)
    regions: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> QueueItem:
        return cls(**{k: d[k] for k in ("id", "plan_toml", "plan_source", "shots", "state", "seed", "out",
                                         "added_at", "regions") if k in d})


class RunQueue:
    """Thread-safe queue + history, persisted to ``state_path``."""

    def __init__(self, state_path: Path) -> None:
        self.path = Path(state_path)
        self._lock = threading.Lock()
        self.items: list[QueueItem] = []
        self.history: list[dict[str, Any]] = []
        self.paused = False
        self.current: dict[str, Any] | None = None
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            self.items = [QueueItem.from_json(d) for d in data.get("queue", [])]
            self.history = list(data.get("history", []))[-HISTORY_KEPT:]
            self.paused = bool(data.get("paused", False))
            current = data.get("current")
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise QueueError(f"{self.path}: unreadable server state ({exc}); move it away to start afresh") from None
        if current:        # the server died during this run: its file holds every committed shot
            self.history.append(dict(current, end_state="interrupted (server stopped)", ended_at=time.time()))
            self._save()

    def _save(self) -> None:
        data = {"queue": [asdict(i) for i in self.items], "history": self.history[-HISTORY_KEPT:],
                "paused": self.paused, "current": self.current}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, allow_nan=False))
        os.replace(tmp, self.path)

    # --- commands --------------------------------------------------------------------------------
    def add(self, item: QueueItem) -> QueueItem:
        with self._lock:
            item.id = item.id or uuid.uuid4().hex[:8]
            self.items.append(item)
            self._save()
        return item

    def _index(self, item_id: str) -> int:
        for i, it in enumerate(self.items):
            if it.id == item_id:
                return i
        raise QueueError(f"no queued run with id {item_id!r}; queued: {[it.id for it in self.items]}")

    def remove(self, item_id: str) -> None:
        with self._lock:
            del self.items[self._index(item_id)]
            self._save()

    def move(self, item_id: str, position: int) -> None:
        """Move a queued run to ``position`` (0 = next)."""
        with self._lock:
            if not (isinstance(position, int) and 0 <= position < len(self.items)):
                raise QueueError(f"position {position!r}: expected 0..{len(self.items) - 1}")
            item = self.items.pop(self._index(item_id))
            self.items.insert(position, item)
            self._save()

    def clear(self) -> int:
        with self._lock:
            n = len(self.items)
            self.items.clear()
            self._save()
        return n

    def set_paused(self, paused: bool) -> None:
        with self._lock:
            self.paused = paused
            self._save()

    def take(self) -> QueueItem | None:
        """The next run to execute (removed from the queue), None when empty or paused."""
        with self._lock:
            if self.paused or not self.items:
                return None
            item = self.items.pop(0)
            self._save()
            return item

    def started(self, item: QueueItem, path: str) -> None:
        with self._lock:
            self.current = {"id": item.id, "file": path, "plan_source": item.plan_source,
                            "started_at": time.time()}
            self._save()

    def finished(self, end_state: str, summary: dict[str, Any] | None, error: str = "") -> None:
        with self._lock:
            entry = dict(self.current or {}, end_state=end_state, ended_at=time.time(), error=error,
                         summary=summary or {})
            self.history.append(entry)
            self.current = None
            self._save()

    def listing(self) -> dict[str, Any]:
        with self._lock:
            return {"paused": self.paused, "current": self.current,
                    "queue": [asdict(i) | {"plan_toml": i.plan_toml[:2000]} for i in self.items],
                    "history": self.history[-50:]}
