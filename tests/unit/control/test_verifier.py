"""The vehicle side beyond the vectors: bounds from the gate limits, state, clocks."""

from __future__ import annotations

import pytest

from planning.limits import CommandLimits
from services.control.client import (
    BOUNDS_MARGIN,
    CommandRejected,
    CommandVerifier,
    VehicleBounds,
    VerifierPolicy,
)
from services.control.signing import Reason, Signer
from services.messages import ControlClock, VehicleControl
from services.messages.examples import vehicle_control

KEY = b"k" * 32
KEYS = {"k": KEY}


def check(verifier: CommandVerifier, signer: Signer, cmd: VehicleControl, now_ns: int,
          now_clock: ControlClock = ControlClock.WALL) -> VehicleControl:
    signed = signer.sign(cmd)
    headers = [(k, v.encode()) for k, v in signed.headers.items()]
    return verifier.check(headers, signed.value, now_ns, now_clock)


def reason(verifier: CommandVerifier, signer: Signer, cmd: VehicleControl, now_ns: int,
           now_clock: ControlClock = ControlClock.WALL) -> Reason:
    with pytest.raises(CommandRejected) as err:
        check(verifier, signer, cmd, now_ns, now_clock)
    return err.value.reason


def test_bounds_are_the_gate_limits_widened_by_the_margin() -> None:
    lim = CommandLimits()
    bounds = VehicleBounds.from_limits()
    assert bounds.max_decel_mps2 == pytest.approx(lim.max_decel_mps2 * BOUNDS_MARGIN)
    assert bounds.max_steer_rate_radps == pytest.approx(lim.max_steer_rate_radps * BOUNDS_MARGIN)
    assert VehicleBounds.from_limits(CommandLimits(max_speed_mps=10.0), margin=1.0).max_speed_mps == 10.0


def test_every_command_the_gate_may_send_is_inside_the_bounds() -> None:
    lim = CommandLimits()
    extreme = vehicle_control().model_copy(update={
        "target_speed_mps": lim.max_speed_mps, "accel_mps2": -lim.max_decel_mps2,
        "jerk_mps3": -lim.max_jerk_mps3, "steering_tire_angle_rad": -lim.max_steer_rad,
        "steering_tire_rotation_rate_radps": lim.max_steer_rate_radps})
    assert VehicleBounds.from_limits().violations(extreme) == []


def test_a_rejected_command_does_not_move_the_freshness() -> None:
    cmd = vehicle_control()
    signer = Signer(KEYS, "k", epoch=3)
    verifier = CommandVerifier(KEYS, "ego")
    check(verifier, signer, cmd, cmd.stamp_ns)
    too_fast = cmd.model_copy(update={"target_speed_mps": 90.0})
    assert reason(verifier, signer, too_fast, cmd.stamp_ns) == Reason.OUT_OF_BOUNDS
    assert verifier.last_accepted == (3, 1)
    assert check(verifier, signer, cmd, cmd.stamp_ns) == cmd
    assert verifier.last_accepted == (3, 3)


def test_a_persisted_freshness_survives_a_vehicle_restart() -> None:
    cmd = vehicle_control()
    signer = Signer(KEYS, "k", epoch=3)
    first = CommandVerifier(KEYS, "ego")
    for _ in range(4):
        check(first, signer, cmd, cmd.stamp_ns)
    stale = Signer(KEYS, "k", epoch=3)  # its commands are a replay of counters 1..4
    restarted = CommandVerifier(KEYS, "ego", last_accepted=first.last_accepted)
    assert reason(restarted, stale, cmd, cmd.stamp_ns) == Reason.REPLAYED


def test_the_command_names_the_vehicle_not_the_kafka_key() -> None:
    cmd = vehicle_control().model_copy(update={"vehicle_id": "neighbour"})
    assert reason(CommandVerifier(KEYS, "ego"), Signer(KEYS, "k"), cmd,
                  cmd.stamp_ns) == Reason.WRONG_VEHICLE


def test_source_clock_expiry_is_checked_only_on_the_source_clock() -> None:
    cmd = vehicle_control().model_copy(update={"clock": ControlClock.SOURCE})
    late = cmd.valid_until_ns + 1
    signer = Signer(KEYS, "k")
    # a wall-clock vehicle cannot tell: lockstep time runs behind its clock
    assert check(CommandVerifier(KEYS, "ego"), signer, cmd, late + 10**12) == cmd
    # the simulated vehicle runs on that clock and checks it
    assert reason(CommandVerifier(KEYS, "ego"), signer, cmd, late,
                  ControlClock.SOURCE) == Reason.EXPIRED
    strict = CommandVerifier(KEYS, "ego", policy=VerifierPolicy(require_wall_clock=True))
    assert reason(strict, signer, cmd, cmd.stamp_ns) == Reason.CLOCK


def test_the_maximum_window_is_the_policy_s() -> None:
    cmd = vehicle_control().model_copy(update={"valid_until_ns": vehicle_control().stamp_ns
                                               + 2_000_000_000})
    signer = Signer(KEYS, "k")
    assert reason(CommandVerifier(KEYS, "ego"), signer, cmd, cmd.stamp_ns) == \
        Reason.VALIDITY_WINDOW
    wide = CommandVerifier(KEYS, "ego", policy=VerifierPolicy(max_window_ns=2_000_000_000))
    assert check(wide, signer, cmd, cmd.stamp_ns) == cmd
