"""The virtual lab as a lab of its own: the emulated instruments and the atoms in a separate process,
for steerlab configured as a *real* lab (``[lab] kind = "real"``) to drive through the instruments'
addresses only.

    python -m drivers.simulated.standalone --config LAB.toml --images DIR [--seed S]
        [--microwave-port P] [--card-port P] [--truths FILE.jsonl]

``LAB.toml``: its ``[virtual_lab]`` table (the physics, as in app/configs/virtual-lab.toml) with the
card's channels from ``[timing_card.channels]`` and the push beam from ``[calibration_plans]
blast_channel`` unless ``[virtual_lab]`` names them itself. The camera is Basler's camera emulator
(pylon CamEmu) in the steerlab process, which exposes the image files this process writes into
``DIR`` after each program of the card (drivers/simulated/image_files.py). Once listening, one line
of JSON on stdout gives the addresses (``microwave``, ``timing_card``), ``images``,
``frame_shape`` [rows, columns] and ``adc_bits``. SIGTERM or SIGINT stops it; ``--truths`` then
receives one JSON line per program the card ran (``sequence``, ``n_atoms``, ``n1``, ``n2``,
``state``, the microwave ``pulses`` as [area_rad, phase_rad]); the last 2000 are kept.
Bad input: one line naming the file, field and value, exit status 2.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drivers.simulated.image_files import ImageFileSensor
from drivers.simulated.lab import VirtualLab
from drivers.simulated.lab_config import VirtualLabConfig, VirtualLabConfigError


def world_table(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The [virtual_lab] table of a lab configuration, with its channels and push beam filled in."""
    table = data.get("virtual_lab", {})
    if not isinstance(table, Mapping):
        raise VirtualLabConfigError(f"{source}: [virtual_lab] must be a table")
    table = dict(table)
    card = data.get("timing_card", {})
    channels = card.get("channels") if isinstance(card, Mapping) else None
    if "channels" not in table and isinstance(channels, Mapping):
        bits: dict[str, Any] = {}
        for name, value in channels.items():
            bits[name] = value.get("bit") if isinstance(value, Mapping) else value
        table["channels"] = bits
    plans = data.get("calibration_plans", {})
    if "blast_channel" not in table and isinstance(plans, Mapping) and plans.get("blast_channel"):
        table["blast_channel"] = plans["blast_channel"]
    return table


def truth_line(shot: Any) -> str:
    """One JSON line of what a program run did to the atoms (drivers.simulated.lab.LabShot)."""
    t = shot.truth
    return json.dumps({"sequence": shot.sequence, "n_atoms": int(t.n_atoms), "n1": int(t.n1),
                       "n2": int(t.n2), "state": t.state,
                       "pulses": [[float(p.area_rad), float(p.phase_rad)] for p in shot.pulses]})


def main(argv: list[str] | None = None) -> int:
    """Run the standalone virtual lab until SIGTERM/SIGINT; 0 on a clean stop, 2 on bad input."""
    ap = argparse.ArgumentParser(prog="python -m drivers.simulated.standalone",
                                 description="the virtual lab's instruments and atoms as a lab of its own")
    ap.add_argument("--config", required=True, help="lab configuration with a [virtual_lab] table")
    ap.add_argument("--images", required=True, help="directory the camera emulator reads its frames from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--microwave-port", type=int, default=0, help="TCP port of the SCPI source (0: any)")
    ap.add_argument("--card-port", type=int, default=0, help="TCP port of the timing card (0: any)")
    ap.add_argument("--truths", default="", help="JSON-lines file of the shots' truth, written at the end")
    args = ap.parse_args(argv)
    source = args.config
    try:
        data = tomllib.loads(Path(source).read_text(encoding="utf-8"))
        config = VirtualLabConfig.from_mapping(world_table(data, source), source)
        for name, port in (("--microwave-port", args.microwave_port), ("--card-port", args.card_port)):
            if not 0 <= port <= 65535:
                raise VirtualLabConfigError(f"{name} {port}: expected a TCP port 0..65535")
        sensor = ImageFileSensor(args.images, adc_bits=config.adc_bits)
    except OSError as exc:
        print(f"{source}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except tomllib.TOMLDecodeError as exc:
        print(f"{source}: not valid TOML: {exc}", file=sys.stderr)
        return 2
    except (VirtualLabConfigError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    lab = VirtualLab(config, seed=args.seed, microwave_port=args.microwave_port,
                     card_port=args.card_port, sensor=sensor)
    try:
        lab.start()
    except OSError as exc:
        print(f"standalone virtual lab: cannot listen: {exc}", file=sys.stderr)
        return 1
    try:
        h, w = config.frame_shape
        print(json.dumps({"microwave": lab.microwave_address, "timing_card": lab.card_address,
                          "images": str(Path(args.images).resolve()), "frame_shape": [h, w],
                          "adc_bits": config.adc_bits}), flush=True)
        while not stop.wait(0.2):
            pass
    finally:
        lab.stop()
        if args.truths:
            Path(args.truths).write_text("".join(truth_line(s) + "\n" for s in list(lab.truths)),
                                         encoding="utf-8")
        for error in lab.errors:
            print(f"standalone virtual lab: {error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
