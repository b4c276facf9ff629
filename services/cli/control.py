"""`roadstream control tail [--verify]`: the control stream as a vehicle sees it."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from services.broker.clients import client_kwargs, consumer_kwargs
from services.cli.common import CommandError, run_async, settings_from
from services.control.client import CommandVerifier
from services.control.settings import load_control_settings, parse_keyring
from services.control.signing import CommandRejected
from services.messages import VEHICLE_CONTROL, ControlClock, MessageError, VehicleControl


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `control tail`."""
    p = sub.add_parser("control", help="the control stream as a vehicle sees it")
    csub = p.add_subparsers(dest="control_command", required=True)
    t = csub.add_parser(
        "tail", help="print vehicle.control commands, with --verify accepted/rejected and why",
        description="Consume vehicle.control from ROADSTREAM_BOOTSTRAP_SERVERS (the address "
                    "`roadstream run` prints) and print one line per command. With --verify "
                    "each command is checked as docs/vehicle-client.md says, by one verifier "
                    "per vehicle, and the line says accepted or rejected with the reason.")
    t.add_argument("--verify", action="store_true", help="verify every command")
    t.add_argument("--keys", type=Path, default=None, metavar="FILE",
                   help="keyring JSON {key_id: base64 key} (a run's control.keys.json); "
                        "default: ROADSTREAM_CONTROL_KEYS")
    t.add_argument("--vehicle", default=None, help="only this vehicle id")
    t.add_argument("--from-beginning", action="store_true",
                   help="start at the oldest command kept (default: the newest)")
    t.add_argument("--count", type=int, default=None, metavar="N", help="stop after N commands")
    t.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="stop after S seconds without a command")
    t.add_argument("--json", action="store_true", help="one JSON object per command")
    t.set_defaults(func=cmd_tail)


def keyring_of(path: Path | None) -> dict[str, bytes]:
    """The keyring from ``path`` or from the control settings; CommandError when none."""
    if path is None:
        return load_control_settings().keyring()
    try:
        return parse_keyring(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CommandError(f"--keys {path}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise CommandError(f"--keys {path}: {exc}") from None


def judge(verifiers: dict[str, CommandVerifier], keyring: dict[str, bytes],
          headers: list[tuple[str, bytes]], value: bytes) -> dict[str, Any]:
    """One command's line: its fields and, with ``verifiers``, the verdict of its vehicle's."""
    try:
        command = VehicleControl.decode(value, source="vehicle.control value")
    except MessageError as exc:
        return {"verdict": "rejected", "reason": "malformed", "why": str(exc)}
    line: dict[str, Any] = {"vehicle_id": command.vehicle_id, "seq": command.seq,
                            "stamp_ns": command.stamp_ns, "mode": command.mode.value,
                            "accel_mps2": command.accel_mps2,
                            "steer_rad": command.steering_tire_angle_rad,
                            "clock": command.clock.value}
    if not keyring:
        return line
    verifier = verifiers.setdefault(command.vehicle_id,
                                    CommandVerifier(keyring, command.vehicle_id))
    try:
        verifier.check(headers, value, time.time_ns(), ControlClock.WALL)
    except CommandRejected as exc:
        return {**line, "verdict": "rejected", "reason": exc.reason.value, "why": str(exc)}
    return {**line, "verdict": "accepted"}


def cmd_tail(args: argparse.Namespace) -> int:
    """Print the control stream."""
    settings = settings_from(args)
    if settings.embedded:
        raise CommandError("no broker configured: set ROADSTREAM_BOOTSTRAP_SERVERS to the "
                           "address `roadstream run` prints (or your cluster's)")
    keyring = keyring_of(args.keys) if args.verify else {}
    bootstrap = settings.bootstrap_servers
    return run_async(_tail(args, settings, bootstrap, keyring))


async def _tail(args: argparse.Namespace, settings: Any, bootstrap: str,
                keyring: dict[str, bytes]) -> int:
    options = {**consumer_kwargs(settings), "auto_offset_reset":
               "earliest" if args.from_beginning else "latest"}
    consumer = AIOKafkaConsumer(VEHICLE_CONTROL.name, group_id=None,
                                **client_kwargs(settings, bootstrap, "control-tail"), **options)
    await consumer.start()
    verifiers: dict[str, CommandVerifier] = {}
    seen = 0
    quiet_since = time.monotonic()
    try:
        while args.count is None or seen < args.count:
            batch = await consumer.getmany(timeout_ms=200)
            if not batch:
                if args.timeout is not None and time.monotonic() - quiet_since > args.timeout:
                    break
                continue
            quiet_since = time.monotonic()
            for records in batch.values():
                for r in records:
                    line = judge(verifiers, keyring, list(r.headers or ()), r.value or b"")
                    if args.vehicle and line.get("vehicle_id") != args.vehicle:
                        continue
                    seen += 1
                    print(json.dumps(line) if args.json else _text(line), flush=True)
    finally:
        await consumer.stop()
    return 0


def _text(line: dict[str, Any]) -> str:
    verdict = line.get("verdict", "")
    why = f" {line['reason']}: {line['why']}" if verdict == "rejected" else ""
    return (f"{line.get('vehicle_id', '?'):<10} seq {line.get('seq', '?'):>6}  "
            f"{line.get('mode', '?'):<16} accel {line.get('accel_mps2', 0):+6.2f} m/s²  "
            f"{verdict}{why}").rstrip()
