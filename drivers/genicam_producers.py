"""GenTL producers (``.cti`` files) shared by all GenICam cameras of this process.

A GenTL producer can be opened only once per process: a second ``Harvester`` loading the same
``.cti`` sees no devices at all (measured with viky.cti), and ``Harvester.update()`` destroys every
camera already opened through it. So the cameras of one process share one ``Harvester`` per list
of producer files, reference-counted: the first ``acquire_producers`` loads and scans, the last
``release_producers`` unloads. A device plugged in meanwhile shows up once every camera of that
producer list is closed (the next scan).
"""
from __future__ import annotations

import glob
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from genicam import gentl
from harvesters.core import Harvester

from drivers.camera_base import CameraIdentity

log = logging.getLogger(__name__)


@dataclass
class ProducerSession:
    """One loaded set of producers: its Harvester and how many cameras use it."""

    files: tuple[str, ...]
    harvester: Harvester
    users: int = 0

    @property
    def device_infos(self) -> list[Any]:
        return list(self.harvester.device_info_list)


_sessions: dict[tuple[str, ...], ProducerSession] = {}
_lock = threading.Lock()


def producers_from_env(variable: str = "GENICAM_GENTL64_PATH") -> list[str]:
    """The ``.cti`` files in the folders listed in ``$GENICAM_GENTL64_PATH`` (the GenTL standard)."""
    files: list[str] = []
    for folder in os.environ.get(variable, "").split(os.pathsep):
        if folder:
            files.extend(sorted(glob.glob(os.path.join(folder, "*.cti"))))
    return files


def _check_files(cti_files: Sequence[str]) -> tuple[str, ...]:
    if isinstance(cti_files, (str, bytes, os.PathLike)):
        raise ValueError(f"camera: cti_files must be a list of .cti paths, got the single {cti_files!r}")
    files = tuple(os.path.realpath(os.fspath(f)) for f in cti_files)
    if not files:
        raise ValueError("camera: no GenTL producer (.cti) given; see producers_from_env()")
    for f in files:
        if not os.path.isfile(f):
            raise FileNotFoundError(f"camera: GenTL producer file {f!r} does not exist")
    return files


def acquire_producers(cti_files: Sequence[str]) -> ProducerSession:
    """Load (or reuse) the producers ``cti_files`` and return the session; pair with release."""
    key = _check_files(cti_files)
    with _lock:
        session = _sessions.get(key)
        if session is None:
            shared = sorted({f for k in _sessions for f in k} & set(key))
            if shared:
                raise ValueError(f"camera: producer(s) {shared} already loaded with another list of "
                                 f"cti files; give all cameras of this process the same cti_files")
            h = Harvester()
            try:
                for f in key:
                    h.add_file(f)
                h.update()
            except BaseException:
                h.reset()
                raise
            session = ProducerSession(files=key, harvester=h)
            _sessions[key] = session
        session.users += 1
        return session


def release_producers(session: ProducerSession, ia: Any = None) -> None:
    """Give back a session (after destroying ``ia``, which is forgotten); the last user unloads."""
    with _lock:
        if ia is not None and ia in session.harvester.image_acquirers:
            session.harvester.image_acquirers.remove(ia)
        session.users -= 1
        if session.users > 0:
            return
        _sessions.pop(session.files, None)
    try:
        session.harvester.reset()
    except Exception as e:
        log.warning("unloading GenTL producers %s failed: %s", session.files, e)


def identity_of(info: Any) -> CameraIdentity:
    """CameraIdentity from a harvesters DeviceInfo (empty strings where the producer has none)."""
    def text(name: str) -> str:
        try:
            value = getattr(info, name)
        except gentl.GenericException:
            return ""
        return "" if value is None else str(value)
    return CameraIdentity(vendor=text("vendor"), model=text("model"),
                          serial_number=text("serial_number"), device_id=text("id_"),
                          version=text("version"))


def discover(cti_files: Sequence[str]) -> list[CameraIdentity]:
    """Identities of the devices the producers ``cti_files`` see (opens none of them).

    While cameras of this producer list are open, this is the list scanned when the first opened.
    """
    session = acquire_producers(cti_files)
    try:
        return [identity_of(info) for info in session.device_infos]
    finally:
        release_producers(session)
