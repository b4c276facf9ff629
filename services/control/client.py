"""The vehicle-side client of `vehicle.control`: verify, then act; never drop silently.

A vehicle stack in Python subscribes with `VehicleControlClient`; stacks in other languages
follow docs/vehicle-client.md. A command is accepted only when

1. its MAC verifies with a known key (`sig-key-id`, `sig-counter`, `sig-mac` headers),
2. its counter is greater than the last accepted one for that vehicle (no replay, no reordering),
3. it is fresh: `valid_until_ns` has not passed.

Every rejection becomes a `safety.events` entry (source `vehicle-client`, type
`command_rejected`), which the audit service stores with the other events.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from services.control.signing import SignatureError, verify
from services.runtime.delivery import Record
from services.runtime.events import safety_event
from services.runtime.service import ServiceRuntime
from services.messages import VEHICLE_CONTROL, EventRefs, MessageError, Severity, VehicleControl


class CommandRejected(Exception):  # noqa: N818 - a rejection, not a failure of the client
    """A command the vehicle must not act on; `reason` is a short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class CommandVerifier:
    """Pure verification state for the commands of one or more vehicles (clock injected)."""

    keys: Mapping[str, bytes]
    last_counter: dict[str, int] = field(default_factory=dict)

    def check(self, headers: Iterable[tuple[str, bytes]], value: bytes, now_ns: int) -> VehicleControl:
        """Return the command if it may be acted on; raise CommandRejected otherwise."""
        headers = list(headers)
        try:
            signature = verify(self.keys, headers, value)
        except SignatureError as exc:
            raise CommandRejected("bad_signature", str(exc)) from exc
        try:
            command = VehicleControl.decode(value, source="vehicle.control")
        except MessageError as exc:
            raise CommandRejected("malformed", str(exc)) from exc
        last = self.last_counter.get(command.vehicle_id)
        if last is not None and signature.counter <= last:
            raise CommandRejected(
                "replayed_counter",
                f"counter {signature.counter} is not after the last accepted {last} "
                f"(replayed or reordered)")
        if command.valid_until_ns < now_ns:
            raise CommandRejected(
                "expired", f"command seq {command.seq} expired "
                f"{(now_ns - command.valid_until_ns) / 1e6:.1f} ms ago")
        self.last_counter[command.vehicle_id] = signature.counter
        return command


OnCommand = Callable[[VehicleControl], Awaitable[None]]


class VehicleControlClient:
    """Subscribes a vehicle to `vehicle.control` on a service frame."""

    def __init__(self, frame: ServiceRuntime, keys: Mapping[str, bytes], vehicle_id: str,
                 on_command: OnCommand, *, clock: Callable[[], int] = time.time_ns) -> None:
        self.frame = frame
        self.vehicle_id = vehicle_id
        self.verifier = CommandVerifier(keys)
        self.on_command = on_command
        self.clock = clock
        self.accepted = 0
        self.rejected: dict[str, int] = {}
        frame.consume(VEHICLE_CONTROL, group_id=f"{frame.group_id}.{vehicle_id}")(self.handle)

    async def handle(self, record: Record) -> None:
        """Verify one command; act on it or raise an audit event."""
        if record.key is not None and record.key.decode(errors="replace") != self.vehicle_id:
            return
        try:
            command = self.verifier.check(record.headers, record.value, self.clock())
        except CommandRejected as exc:
            self.rejected[exc.reason] = self.rejected.get(exc.reason, 0) + 1
            await self.frame.emit(safety_event(
                source="vehicle-client", type_="command_rejected", severity=Severity.CRITICAL,
                vehicle_id=self.vehicle_id, details={"reason": exc.reason, "error": str(exc)},
                refs=EventRefs(topic=record.topic, partition=record.partition,
                               offset=record.offset)))
            return
        self.accepted += 1
        await self.on_command(command)
