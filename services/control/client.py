"""The vehicle-side client of `vehicle.control`: verify, then act; never drop silently.

A vehicle stack in Python subscribes with `VehicleControlClient`; stacks in other languages
follow docs/vehicle-client.md (and check themselves against docs/control-test-vectors.json).
:class:`CommandVerifier` accepts a command only when every check passes, in this order (the
first that fails names the rejection, a :class:`~services.control.signing.Reason`):

1. signature headers present, once each, canonical; key id in the keyring; MAC matches;
2. the value is a `vehicle.control` command naming this vehicle (whatever the Kafka key says);
3. (epoch, counter) strictly greater than the last accepted pair: no replay, across restarts;
4. on the wall clock unless the vehicle accepts the source clock (lockstep runs);
5. validity window 0 <= valid_until - stamp <= the maximum;
6. not expired: now <= valid_until, checked when the command is on the clock `now` is on;
7. every value inside the vehicle's physical bounds (:class:`VehicleBounds`).

Every rejection becomes a `safety.events` entry (source `vehicle-client`, type
`command_rejected`), which the audit service stores with the other events.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from planning.limits import CommandLimits
from services.control.signing import CommandRejected, Reason, verify
from services.messages import (
    VEHICLE_CONTROL,
    ControlClock,
    EventRefs,
    MessageError,
    Severity,
    VehicleControl,
)
from services.runtime.delivery import Record
from services.runtime.events import safety_event
from services.runtime.service import ServiceRuntime

__all__ = ["BOUNDS_MARGIN", "CommandRejected", "CommandVerifier", "Reason", "VehicleBounds",
           "VehicleControlClient", "VerifierPolicy"]

#: The vehicle's envelope is the gate's limits widened by this factor. The gate clamps every
#: command to its limits, so genuine commands stay well inside; the margin leaves room for a
#: gate tuned a little differently while a value no car should be asked for is refused.
BOUNDS_MARGIN = 1.25


@dataclass(frozen=True)
class VehicleBounds:
    """Physical bounds a vehicle enforces on every command value (magnitudes, positive)."""

    max_speed_mps: float
    max_accel_mps2: float
    max_decel_mps2: float
    max_jerk_mps3: float
    max_steer_rad: float
    max_steer_rate_radps: float

    @classmethod
    def from_limits(cls, limits: CommandLimits | None = None,
                    margin: float = BOUNDS_MARGIN) -> VehicleBounds:
        """The gate's command limits (planning.limits) times ``margin``."""
        lim = limits or CommandLimits()
        return cls(max_speed_mps=lim.max_speed_mps * margin,
                   max_accel_mps2=lim.max_accel_mps2 * margin,
                   max_decel_mps2=lim.max_decel_mps2 * margin,
                   max_jerk_mps3=lim.max_jerk_mps3 * margin,
                   max_steer_rad=lim.max_steer_rad * margin,
                   max_steer_rate_radps=lim.max_steer_rate_radps * margin)

    def violations(self, command: VehicleControl) -> list[str]:
        """`field=value` for each value outside the bounds (a NaN is outside every bound)."""
        checks = (
            ("target_speed_mps", command.target_speed_mps, 0.0, self.max_speed_mps),
            ("accel_mps2", command.accel_mps2, -self.max_decel_mps2, self.max_accel_mps2),
            ("jerk_mps3", command.jerk_mps3, -self.max_jerk_mps3, self.max_jerk_mps3),
            ("steering_tire_angle_rad", command.steering_tire_angle_rad,
             -self.max_steer_rad, self.max_steer_rad),
            ("steering_tire_rotation_rate_radps", command.steering_tire_rotation_rate_radps,
             -self.max_steer_rate_radps, self.max_steer_rate_radps),
        )
        return [f"{name}={value!r} outside [{lo:g}, {hi:g}]" for name, value, lo, hi in checks
                if not (math.isfinite(value) and lo <= value <= hi)]


@dataclass(frozen=True)
class VerifierPolicy:
    """What a vehicle tolerates besides the signature."""

    bounds: VehicleBounds = field(default_factory=VehicleBounds.from_limits)
    max_window_ns: int = 1_000_000_000  # longest valid_until - stamp accepted [ns]
    require_wall_clock: bool = False  # reject source-clock commands (expiry not checkable)


class CommandVerifier:
    """Verification state of one vehicle: its keyring, its id and the last accepted freshness.

    Pure: the clock is passed in. ``last_accepted`` restores the (epoch, counter) a vehicle
    persisted before a restart of its own; without it, the first signed command sets it.
    """

    def __init__(self, keyring: Mapping[str, bytes], vehicle_id: str, *,
                 policy: VerifierPolicy | None = None,
                 last_accepted: tuple[int, int] | None = None) -> None:
        self.keyring = dict(keyring)
        self.vehicle_id = vehicle_id
        self.policy = policy or VerifierPolicy()
        self.last_accepted = last_accepted

    def check(self, headers: Iterable[tuple[str, bytes]], value: bytes, now_ns: int,
              now_clock: ControlClock = ControlClock.WALL) -> VehicleControl:
        """Return the command if it may be acted on; raise CommandRejected otherwise.

        ``now_ns`` is the present time on ``now_clock``; expiry is checked for commands on
        that clock only. Only an accepted command moves the last accepted freshness.
        """
        signature = verify(self.keyring, headers, value)
        try:
            command = VehicleControl.decode(value, source="vehicle.control value")
        except MessageError as exc:
            raise CommandRejected(Reason.MALFORMED, str(exc)) from exc
        if command.vehicle_id != self.vehicle_id:
            raise CommandRejected(Reason.WRONG_VEHICLE, f"command for vehicle "
                                  f"{command.vehicle_id!r}, this is {self.vehicle_id!r}")
        last = self.last_accepted
        if last is not None and signature.freshness <= last:
            raise CommandRejected(Reason.REPLAYED, f"(epoch, counter) {signature.freshness} is "
                                  f"not after the last accepted {last} (replayed or reordered)")
        if self.policy.require_wall_clock and command.clock != ControlClock.WALL:
            raise CommandRejected(Reason.CLOCK, f"command on the {command.clock} clock; this "
                                  "vehicle requires the wall clock")
        window_ns = command.valid_until_ns - command.stamp_ns
        if not 0 <= window_ns <= self.policy.max_window_ns:
            raise CommandRejected(Reason.VALIDITY_WINDOW, f"valid_until - stamp = "
                                  f"{window_ns / 1e6:g} ms, outside [0, "
                                  f"{self.policy.max_window_ns / 1e6:g}] ms")
        if command.clock == now_clock and now_ns > command.valid_until_ns:
            raise CommandRejected(Reason.EXPIRED, f"command seq {command.seq} expired "
                                  f"{(now_ns - command.valid_until_ns) / 1e6:.1f} ms ago")
        violations = self.policy.bounds.violations(command)
        if violations:
            raise CommandRejected(Reason.OUT_OF_BOUNDS, "; ".join(violations))
        self.last_accepted = signature.freshness
        return command


OnCommand = Callable[[VehicleControl], Awaitable[None]]


class VehicleControlClient:
    """Subscribes one vehicle to `vehicle.control` on a service frame.

    Records keyed for another vehicle are routed past (counted in ``skipped``): the Kafka key
    only routes, the verifier binds a command to this vehicle by its signed `vehicle_id`.
    """

    def __init__(self, frame: ServiceRuntime, keyring: Mapping[str, bytes], vehicle_id: str,
                 on_command: OnCommand, *, policy: VerifierPolicy | None = None,
                 clock: Callable[[], int] = time.time_ns,
                 now_clock: ControlClock = ControlClock.WALL) -> None:
        self.frame = frame
        self.vehicle_id = vehicle_id
        self.verifier = CommandVerifier(keyring, vehicle_id, policy=policy)
        self.on_command = on_command
        self.clock = clock
        self.now_clock = now_clock
        self.accepted = 0
        self.skipped = 0
        self.rejected: dict[str, int] = {}
        frame.consume(VEHICLE_CONTROL, group_id=f"{frame.group_id}.{vehicle_id}")(self.handle)

    async def handle(self, record: Record) -> None:
        """Verify one command; act on it or raise an audit event."""
        if record.key is not None and record.key != self.vehicle_id.encode():
            self.skipped += 1
            return
        try:
            command = self.verifier.check(record.headers, record.value, self.clock(),
                                          self.now_clock)
        except CommandRejected as exc:
            self.rejected[exc.reason] = self.rejected.get(exc.reason, 0) + 1
            await self.frame.emit(safety_event(
                source="vehicle-client", type_="command_rejected", severity=Severity.CRITICAL,
                vehicle_id=self.vehicle_id,
                details={"reason": str(exc.reason), "error": str(exc)},
                refs=EventRefs(topic=record.topic, partition=record.partition,
                               offset=record.offset)))
            return
        self.accepted += 1
        await self.on_command(command)
