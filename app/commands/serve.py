"""Start the run server: the acquisition process that owns the lab and runs a queue of runs.

Clients (`steerlab queue`, `steerlab status`, `steerlab run --server`, `steerlab gui`, the Python
client app.client.Client) find it through the configuration's data directory. Ctrl-C or SIGTERM
stops the current run after its shot, closes its file and exits; a second one aborts the run.
The log is <data_dir>/steerlab-server.log.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.labconfig import LabConfigError, load_lab_config
from app.paths import default_config
from app.signals import stop_then_abort

PROG = "steerlab serve"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="lab configuration (default: the virtual lab)")
    parser.add_argument("--tcp", action="store_true",
                        help="listen on 127.0.0.1 ports instead of private ipc sockets")


def run(args: argparse.Namespace) -> int:
    from app.server.endpoint import EndpointError, load
    from app.server.queue import QueueError
    from app.server.server import RunServer
    try:
        config = load_lab_config(args.config or default_config())
        try:
            other = load(config.data_dir)
            print(f"{PROG}: a run server (pid {other.pid}) already serves {config.data_dir}", file=sys.stderr)
            return 2
        except EndpointError:
            pass
        server = RunServer(config, tcp=args.tcp)
    except (LabConfigError, QueueError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2

    def ready(endpoint: object) -> None:
        print(f"{PROG}: serving {config.data_dir} ({config.name}); requests {server.endpoint.request}, "
              f"log {server.log_path}", file=sys.stderr, flush=True)

    with stop_then_abort(lambda: server.request_stop(False), lambda: server.request_stop(True)):
        server.serve_forever(ready)
    print(f"{PROG}: stopped", file=sys.stderr)
    return 0


