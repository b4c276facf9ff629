"""Collision risk from TTC, and stop commands of the gate."""

from __future__ import annotations

from services.messages import (
    ControlMode,
    DetectedObject,
    PerceptionObjects,
    Severity,
    VehicleControl,
)
from services.messages.examples import perception_objects, vehicle_control
from services.monitor.findings import (
    COLLISION_RISK,
    CONTROL_RESUMED,
    EMERGENCY_STOP,
    MINIMAL_RISK_STOP,
)
from services.monitor.risk import CollisionRiskCheck, ControlModeCheck
from tests.unit.evaluation.helpers import moving
from tests.unit.monitor.helpers import ns, obs


def frame(seq: int, ttcs: dict[int, float | None]) -> PerceptionObjects:
    base = perception_objects()
    car = base.objects[0]
    objects: list[DetectedObject] = [car.model_copy(update={"track_id": t, "ttc_s": ttc})
                                     for t, ttc in ttcs.items()]
    return base.model_copy(update={"objects": objects,
                                   "source": base.source.model_copy(update={"seq": seq})})


def run(check: CollisionRiskCheck,
        ttcs_per_frame: list[dict[int, float | None]]) -> list[tuple[int, Severity]]:
    out = []
    for i, ttcs in enumerate(ttcs_per_frame):
        found = check.observe(obs("perception.objects", "ego/front", 0.1 * i, i), frame(i, ttcs),
                              ns(0.1 * i))
        out += [(f.details["track_id"], f.severity) for f in found]
    return out


def test_closing_object_escalates_warning_then_critical_once_each() -> None:
    check = CollisionRiskCheck(warning_s=3.0, critical_s=1.5)
    ttcs = [5.0, 4.0, 2.9, 2.7, 2.5, 2.0, 1.6, 1.4, 1.2, 1.0]
    assert run(check, [{7: t} for t in ttcs]) == [(7, Severity.WARNING), (7, Severity.CRITICAL)]


def test_event_carries_refs_and_details() -> None:
    check = CollisionRiskCheck(warning_s=3.0, critical_s=1.5)
    found = check.observe(obs("perception.objects", "ego/front", 0.0, 42), frame(9, {3: 1.0}), ns(0))
    assert len(found) == 1
    f = found[0]
    assert f.type == COLLISION_RISK
    assert f.refs.frame_seq == 9
    assert f.refs.offset == 42
    assert f.refs.topic == "perception.objects"
    assert f.details["ttc_s"] == 1.0
    assert f.details["class"] == "car"
    assert f.details["threshold_s"] == 1.5


def test_noise_at_a_threshold_does_not_repeat_but_a_clear_release_rearms() -> None:
    check = CollisionRiskCheck(warning_s=3.0, critical_s=1.5)
    noisy = [2.9, 3.1, 2.95, 3.2, 2.9]  # hovers at the warning threshold
    assert run(check, [{1: t} for t in noisy]) == [(1, Severity.WARNING)]
    check2 = CollisionRiskCheck(warning_s=3.0, critical_s=1.5)
    released = [2.9, 5.0, 2.9]  # clearly safe in between: a new approach
    assert run(check2, [{1: t} for t in released]) == [(1, Severity.WARNING), (1, Severity.WARNING)]


def test_objects_without_ttc_or_receding_are_no_risk() -> None:
    check = CollisionRiskCheck()
    assert run(check, [{1: None, 2: -1.0, 3: 10.0}]) == []


def test_tracks_are_forgotten() -> None:
    check = CollisionRiskCheck(forget_s=1.0)
    check.observe(obs("perception.objects", "ego/front", 0.0), frame(0, {1: 2.0}), ns(0.0))
    check.observe(obs("perception.objects", "ego/front", 5.0, 1), frame(1, {}), ns(5.0))
    again = check.observe(obs("perception.objects", "ego/front", 5.1, 2), frame(2, {1: 2.0}),
                          ns(5.1))
    assert len(again) == 1


def command(seq: int, mode: ControlMode, run_id: str = "r1") -> VehicleControl:
    return vehicle_control().model_copy(update={"seq": seq, "mode": mode, "run_id": run_id})


def test_mode_changes_are_events_and_repeats_are_not() -> None:
    check = ControlModeCheck()
    modes = [ControlMode.NORMAL, ControlMode.NORMAL, ControlMode.COMFORTABLE_STOP,
             ControlMode.COMFORTABLE_STOP, ControlMode.EMERGENCY_STOP, ControlMode.EMERGENCY_STOP,
             ControlMode.NORMAL]
    out = []
    for seq, mode in enumerate(modes):
        out += check.observe(obs("vehicle.control", "ego", 0.05 * seq, seq), command(seq, mode))
    assert [(f.type, f.severity) for f in out] == [
        (MINIMAL_RISK_STOP, Severity.WARNING), (EMERGENCY_STOP, Severity.CRITICAL),
        (CONTROL_RESUMED, Severity.INFO)]
    estop = out[1]
    assert estop.refs.command_seq == 4
    assert estop.refs.frame_seq == 7
    assert estop.details["from_mode"] == "comfortable_stop"


def test_first_command_already_stopping_is_reported() -> None:
    check = ControlModeCheck()
    out = check.observe(obs("vehicle.control", "ego", 0.0), command(0, ControlMode.EMERGENCY_STOP))
    assert [f.type for f in out] == [EMERGENCY_STOP]


def test_redelivered_or_older_commands_are_ignored_within_a_run() -> None:
    check = ControlModeCheck()
    check.observe(obs("vehicle.control", "ego", 0.0), command(5, ControlMode.NORMAL))
    assert check.observe(obs("vehicle.control", "ego", 0.1), command(3, ControlMode.EMERGENCY_STOP)) == []
    # a new run restarts the sequence
    out = check.observe(obs("vehicle.control", "ego", 0.2), command(0, ControlMode.EMERGENCY_STOP, "r2"))
    assert [f.type for f in out] == [EMERGENCY_STOP]


def test_only_objects_on_a_collision_course_are_a_risk() -> None:
    # ego at 11 m/s: a car parked beside the lane 2.8 m off closes as the ego passes it; a
    # pedestrian 4 m off walking in at 1.4 m/s is 1.4 m off the axis when its TTC runs out
    # (evaluation/test_safety.py tests the rule itself on these three)
    parked = moving(1, 8.0, 2.8, -11.0, 0.0, 0.73)
    walker = moving(2, 20.0, 4.0, -11.0, -1.4, 1.84)
    ahead = moving(3, 25.0, 0.2, -8.0, 0.0, 2.9)
    check = CollisionRiskCheck(warning_s=3.0, critical_s=1.5)
    base = perception_objects()
    found = check.observe(obs("perception.objects", "ego/front", 0.0), base.model_copy(
        update={"objects": [parked, walker, ahead]}), ns(0))
    assert sorted((f.details["track_id"], f.severity) for f in found) == [
        (2, Severity.WARNING), (3, Severity.WARNING)]
    assert found[0].details["lateral_miss_m"] is not None


def test_an_ended_runs_stop_and_the_next_runs_commands_do_not_flap() -> None:
    # the gate still commands the ended run r1's stop while run r2 of the same vehicle drives
    check = ControlModeCheck()
    out = []
    for i in range(20):
        out += check.observe(obs("vehicle.control", "ego", 0.05 * i, 2 * i),
                             command(100 + i, ControlMode.COMFORTABLE_STOP, "r1"))
        out += check.observe(obs("vehicle.control", "ego", 0.05 * i, 2 * i + 1),
                             command(1 + i, ControlMode.NORMAL, "r2"))
    assert [(f.type, f.run_id) for f in out] == [(MINIMAL_RISK_STOP, "r1")]


def test_old_runs_are_forgotten_beyond_the_cap() -> None:
    check = ControlModeCheck(max_runs=2)
    for run in ("a", "b", "c"):
        check.observe(obs("vehicle.control", "ego", 0.0), command(5, ControlMode.NORMAL, run))
    # a redelivery of run c's command is still recognised; run a was forgotten, so an old
    # sequence number of its reads as a first command (remembered, it would be ignored)
    redelivered = command(5, ControlMode.EMERGENCY_STOP, "c")
    assert check.observe(obs("vehicle.control", "ego", 0.1), redelivered) == []
    old = check.observe(obs("vehicle.control", "ego", 0.1), command(1, ControlMode.EMERGENCY_STOP, "a"))
    assert [f.type for f in old] == [EMERGENCY_STOP]
