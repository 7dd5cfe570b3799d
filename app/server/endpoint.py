"""Where a run server listens and the token its clients must send.

The server of a data directory writes ``<data_dir>/.steerlab-server.json`` (mode 0600, readable only
by its user): the request and publish endpoints, the token and the server's pid. By default both
sockets are ``ipc://`` files in a private directory (0700) of the user's runtime directory, so only
this user can connect at all; ``tcp://127.0.0.1`` ports are the alternative. Clients of another
user cannot read the file, hence have no token.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

FILE_NAME = ".steerlab-server.json"


class EndpointError(RuntimeError):
    """No server for this data directory, or its endpoint file is unreadable."""


@dataclass(frozen=True)
class Endpoint:
    """How to reach one server."""

    request: str
    publish: str
    token: str
    pid: int
    data_dir: str

    def save(self, path: Path) -> None:
        """Write atomically with mode 0600."""
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)


def endpoint_file(data_dir: Path) -> Path:
    return Path(data_dir) / FILE_NAME


def private_dir(data_dir: Path) -> Path:
    """A 0700 directory for this data directory's ipc sockets (short path: ipc names <= 107 bytes)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    key = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:10]
    d = Path(base) / f"steerlab-{os.getuid()}" / key
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    for p in (d, d.parent):
        os.chmod(p, 0o700)
    return d


def new_token() -> str:
    return secrets.token_urlsafe(32)


def load(data_dir: Path) -> Endpoint:
    """The endpoint of the server of ``data_dir``; EndpointError if there is none."""
    path = endpoint_file(data_dir)
    try:
        data = json.loads(path.read_text())
        ep = Endpoint(**{k: data[k] for k in ("request", "publish", "token", "pid", "data_dir")})
    except FileNotFoundError:
        raise EndpointError(f"no run server for {data_dir} (no {path}); start one with `steerlab serve`") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EndpointError(f"{path}: unreadable server endpoint file: {exc}") from None
    try:
        os.kill(ep.pid, 0)
    except ProcessLookupError:
        raise EndpointError(f"the run server of {data_dir} (pid {ep.pid}) is not running") from None
    except PermissionError:
        pass
    return ep
