"""Test-wide fixtures: Qt offscreen before any Qt import, opt-in hardware tests, leak checks."""
from __future__ import annotations

import os
import threading
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device-address", action="store", default=None,
                     help="VISA/serial address of a real instrument; enables tests marked 'hardware'")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--device-address"):
        return
    skip = pytest.mark.skip(reason="needs a real instrument: pass --device-address")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


_IGNORED_THREAD_PREFIXES = ("pydevd", "QDBus", "asyncio_", "ThreadPoolExecutor", "Dask", "IO loop",
                            "Profile", "TCP-Executor", "AsyncProcess", "Nanny", "Worker")


@pytest.fixture(autouse=True)
def no_leaked_threads(request: pytest.FixtureRequest):
    """Fail a test that leaves a non-daemon or server thread running after its fixtures are gone."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while True:
        leaked = [t for t in threading.enumerate()
                  if t not in before and t.is_alive()
                  and not t.name.startswith(_IGNORED_THREAD_PREFIXES)]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"test leaked threads: {[t.name for t in leaked]}"
