"""Sampling planner: behaviour in closed loop and single-plan scenarios, and its limits."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from common.classes import ObjectClass
from planning.config import PlannerConfig
from planning.frames import ego_to_road_xy, road_xy_to_frenet
from planning.planner import Planner
from planning.types import Behaviour, EgoState, Obstacle, PlanResult, VehicleParams
from tests.unit.planning.closed_loop import ClosedLoop, EgoWorld, WorldObject
from tests.unit.planning.curves import PREVIEW, on_curve

LIMITS = PlannerConfig().limits
VEHICLE = VehicleParams()


@pytest.fixture(scope="module")
def planner() -> Planner:
    return Planner()


def assert_within_limits(result: PlanResult, ego: EgoState) -> None:
    """The chosen trajectory respects accel, jerk, steering, steering-rate limits."""
    traj = result.trajectory
    dt = float(np.diff(traj.t_s)[0])
    tol = 1e-3
    a = traj.accel_mps2
    assert a.max() <= LIMITS.max_accel_mps2 + tol
    assert a.min() >= -LIMITS.max_decel_mps2 - tol
    a_prev = np.concatenate([[np.clip(ego.accel_mps2, -LIMITS.max_decel_mps2,
                                      LIMITS.max_accel_mps2)], a[:-1]])
    assert np.abs(a - a_prev).max() / dt <= LIMITS.max_jerk_mps3 + tol
    # Speed changes agree with the accel bounds (mean accel over each step).
    dv = np.diff(traj.v_mps) / dt
    assert dv.max() <= LIMITS.max_accel_mps2 + 0.05
    assert dv.min() >= -LIMITS.max_decel_mps2 - 0.05
    assert np.abs(traj.steer_rad).max() <= LIMITS.max_steer_rad + tol
    steer_prev = np.concatenate([[ego.steer_rad], traj.steer_rad[:-1]])
    assert np.abs(traj.steer_rad - steer_prev).max() / dt <= LIMITS.max_steer_rate_radps + tol


def test_grid_has_over_a_thousand_candidates_and_a_5s_trajectory(planner: Planner) -> None:
    result = planner.plan(EgoState(speed_mps=10.0), [])
    assert result.n_candidates >= 1000
    traj = result.trajectory
    assert traj.t_s[0] == 0.0
    assert traj.t_s[-1] == pytest.approx(5.0)
    assert np.allclose(np.diff(traj.t_s), 0.1)
    assert len({len(traj.t_s), len(traj.x_m), len(traj.y_m), len(traj.v_mps),
                len(traj.yaw_rad), len(traj.accel_mps2)}) == 1
    assert result.behaviour == Behaviour.CRUISE
    assert result.any_safe
    # Free road below the limit: speed up towards it, keep the lane.
    assert traj.v_mps[-1] > 10.0
    assert np.abs(traj.y_m).max() < 0.3


def test_free_road_holds_the_drivers_set_speed_below_the_limit(planner: Planner) -> None:
    ego = EgoState(speed_mps=10.0, speed_limit_mps=14.0, set_speed_mps=10.0)
    assert ego.desired_speed_mps(LIMITS.max_speed_mps) == 10.0
    traj = planner.plan(ego, []).trajectory
    # Held, not sped up towards the limit (as the free-road plan without a set speed does).
    assert np.abs(traj.v_mps - 10.0).max() < 0.3
    faster = EgoState(speed_mps=10.0, speed_limit_mps=14.0, set_speed_mps=20.0)
    assert faster.desired_speed_mps(LIMITS.max_speed_mps) == 14.0  # never above the limit
    assert planner.plan(faster, []).trajectory.v_mps[-1] > 11.0


class LaggingTracker(ClosedLoop):
    """Perception that sees only half of an object's lateral speed (a track that lags)."""

    def perceived(self) -> list[Obstacle]:
        return [replace(o, vy_mps=0.5 * o.vy_mps) for o in super().perceived()]


@pytest.mark.parametrize("kph", [40.0, 50.0])
def test_yields_to_a_crossing_pedestrian_instead_of_racing_it(kph: float) -> None:
    # Euro NCAP CPNA: an adult walks in from the right kerb at 5 km/h, timed to meet the
    # ego; perception under-reads its lateral speed. Racing it with a lane change at full
    # speed looks possible on that reading; the ego must brake for it instead.
    v = kph / 3.6
    walker = WorldObject(x_m=v * 3.34 + 2.0, y_m=-4.0, vy_mps=5.0 / 3.6,
                         object_class=ObjectClass.PEDESTRIAN)
    log = LaggingTracker(ego=EgoWorld(speed_mps=v), objects=[walker], n_lanes=2,
                         speed_limit_mps=50.0 / 3.6, set_speed_mps=v).run(6.0)
    assert not log.collided
    assert log.min_gap_m > 1.5
    assert min(e.speed_mps for e in log.ego) < 3.5  # it slowed for the pedestrian


def test_stops_for_a_stationary_obstacle_in_its_lane_closed_loop() -> None:
    loop = ClosedLoop(
        ego=EgoWorld(speed_mps=12.0),
        objects=[WorldObject(x_m=60.0, y_m=0.0)],
        n_lanes=1,
    )
    log = loop.run(duration_s=30.0, stop_when_stopped_s=1.0)
    assert not log.collided
    assert loop.ego.speed_mps < 0.05
    gap = loop.footprint_gap_m()
    assert 0.5 < gap < 15.0, f"stopped {gap:.1f} m from the obstacle"
    behaviours = {p.behaviour for p in log.plans}
    assert behaviours & {Behaviour.STOP, Behaviour.FOLLOW}
    assert Behaviour.EMERGENCY_BRAKE not in behaviours
    assert all(p.any_safe for p in log.plans)
    assert abs(loop.ego.y_m) < 0.3  # stayed in its lane


@pytest.mark.parametrize(("gap_m", "decel_mps2"), [(12.0, 2.0), (40.0, 6.0)])
def test_ccrb_braking_lead_is_not_hit(gap_m: float, decel_mps2: float) -> None:
    """Euro NCAP CCRb at 50 km/h: the car ahead brakes to a stop 2 s in; the ego stops behind.

    Predicting the lead at constant speed, the planner leaves its braking too late for the
    12 m gap; predicting it braking on (planning.obstacles), it does not.
    """
    v0 = 50 / 3.6
    lead_x = VEHICLE.rear_axle_to_centre_m + 0.5 * VEHICLE.length_m + gap_m + 2.3
    lead = WorldObject(x_m=lead_x, y_m=0.0, vx_mps=v0, brake_mps2=decel_mps2, brake_after_s=2.0)
    loop = ClosedLoop(ego=EgoWorld(speed_mps=v0), objects=[lead], n_lanes=1,
                      speed_limit_mps=25.0)
    log = loop.run(duration_s=20.0, stop_when_stopped_s=1.0)
    assert lead.vx_mps == 0.0
    assert not log.collided, f"hit the braking car (smallest gap {log.min_gap_m:.2f} m)"
    assert log.min_gap_m > 0.5
    assert loop.ego.speed_mps < 0.05


#: A planner that changes lanes only to evade (``blind_lane_changes`` off).
IN_LANE_FIRST = PlannerConfig(blind_lane_changes=False)


def test_changes_lane_around_a_stopped_car_when_the_left_lane_is_free(planner: Planner) -> None:
    ego = EgoState(speed_mps=12.0, lane_index=0, n_lanes=2)
    result = planner.plan(ego, [Obstacle(x_m=45.0, y_m=0.0)])
    assert result.behaviour == Behaviour.LANE_CHANGE_LEFT
    assert result.target_lane_index == 1
    assert result.trajectory.y_m[-1] == pytest.approx(3.5, abs=0.7)
    assert result.min_clearance_m is not None
    assert result.min_clearance_m > 0.0
    assert_within_limits(result, ego)


def test_lane_change_closed_loop_passes_the_stopped_car() -> None:
    stopped = WorldObject(x_m=50.0, y_m=0.0)
    loop = ClosedLoop(ego=EgoWorld(speed_mps=12.0), objects=[stopped], n_lanes=2)
    log = loop.run(duration_s=10.0)
    assert not log.collided
    assert loop.ego.x_m > stopped.x_m + 10.0
    assert loop.ego.y_m == pytest.approx(3.5, abs=0.7)
    assert any(p.behaviour == Behaviour.LANE_CHANGE_LEFT for p in log.plans)


def test_without_blind_lane_changes_it_stops_behind_the_stopped_car_instead() -> None:
    """The same road as above, lane changes only to evade: the free left lane may hold a car
    coming up from behind that no forward camera sees, so the ego stops in its lane, although
    the lane change is safe as far as it knows."""
    planner = Planner(IN_LANE_FIRST)
    ego = EgoState(speed_mps=12.0, lane_index=0, n_lanes=2)
    obstacles = [Obstacle(x_m=45.0, y_m=0.0)]
    result = planner.plan(ego, obstacles)
    assert result.any_safe
    assert result.behaviour in {Behaviour.STOP, Behaviour.FOLLOW}
    assert result.target_lane_index == 0
    assert np.abs(result.trajectory.y_m).max() < 0.7
    assert_within_limits(result, ego)
    stopped = WorldObject(x_m=50.0, y_m=0.0)
    loop = ClosedLoop(ego=EgoWorld(speed_mps=12.0), objects=[stopped], n_lanes=2,
                      planner=planner)
    log = loop.run(duration_s=20.0, stop_when_stopped_s=1.0)
    assert not log.collided
    assert loop.ego.speed_mps < 0.05
    assert abs(loop.ego.y_m) < 0.5
    assert loop.ego.x_m < stopped.x_m
    assert not any(p.behaviour == Behaviour.LANE_CHANGE_LEFT for p in log.plans)


def test_without_blind_lane_changes_it_still_swerves_when_no_plan_in_its_lane_is_safe(
) -> None:
    """At 20 m/s a stopped car 40 m ahead is too close to stop behind: only the free left
    lane is safe, and the ego takes it (an evasion is the last resort the rule keeps)."""
    planner = Planner(IN_LANE_FIRST)
    stopped = [Obstacle(x_m=40.0, y_m=0.0)]
    one_lane = planner.plan(EgoState(speed_mps=20.0, lane_index=0, n_lanes=1), stopped)
    assert not one_lane.any_safe  # in its lane, nothing is safe
    result = planner.plan(EgoState(speed_mps=20.0, lane_index=0, n_lanes=2), stopped)
    assert result.any_safe
    assert result.behaviour == Behaviour.LANE_CHANGE_LEFT
    assert result.target_lane_index == 1


def test_brakes_instead_of_changing_lane_when_the_left_lane_is_occupied(
    planner: Planner,
) -> None:
    ego = EgoState(speed_mps=12.0, lane_index=0, n_lanes=2)
    obstacles = [
        Obstacle(x_m=45.0, y_m=0.0),
        Obstacle(x_m=2.0, y_m=3.5, vx_mps=12.0),  # alongside, same speed
    ]
    result = planner.plan(ego, obstacles)
    assert result.any_safe
    assert result.behaviour in {Behaviour.STOP, Behaviour.FOLLOW}
    assert result.target_lane_index == 0
    assert np.abs(result.trajectory.y_m).max() < 0.7
    assert result.trajectory.v_mps[-1] < ego.speed_mps - 2.0
    assert_within_limits(result, ego)


def test_stops_in_lane_closed_loop_when_the_left_lane_is_jammed() -> None:
    objects = [WorldObject(x_m=50.0, y_m=0.0)] + [
        WorldObject(x_m=x, y_m=3.5) for x in (-12.0, 0.0, 12.0, 24.0, 36.0, 48.0, 60.0)
    ]
    loop = ClosedLoop(ego=EgoWorld(speed_mps=12.0), objects=objects, n_lanes=2)
    log = loop.run(duration_s=30.0, stop_when_stopped_s=1.0)
    assert not log.collided
    assert loop.ego.speed_mps < 0.05
    assert abs(loop.ego.y_m) < 0.5
    assert loop.ego.x_m < 50.0
    assert not any(p.behaviour == Behaviour.LANE_CHANGE_LEFT for p in log.plans)


@pytest.mark.parametrize(
    ("ego", "obstacles"),
    [
        (EgoState(speed_mps=0.0), []),
        (EgoState(speed_mps=25.0, speed_limit_mps=33.0, n_lanes=3, lane_index=1),
         [Obstacle(60.0, 0.0, 15.0, 0.0), Obstacle(30.0, 3.5, 25.0, 0.0)]),
        (EgoState(speed_mps=8.0, accel_mps2=-2.0, steer_rad=0.05, n_lanes=2,
                  lateral_offset_m=0.4, heading_rel_rad=0.03),
         [Obstacle(25.0, 0.0, 2.0, 0.0, object_class=ObjectClass.CYCLIST)]),
        (EgoState(speed_mps=15.0, road_curvature_1pm=0.01, n_lanes=2),
         [Obstacle(40.0, 1.0, 0.0, 0.0, object_class=ObjectClass.PEDESTRIAN)]),
    ],
)
def test_chosen_trajectories_respect_the_limits(
    planner: Planner, ego: EgoState, obstacles: list[Obstacle]
) -> None:
    result = planner.plan(ego, obstacles)
    assert result.any_safe
    assert_within_limits(result, ego)
    if result.min_clearance_m is not None:
        assert result.min_clearance_m >= 0.0


def test_no_safe_candidate_brakes_as_hard_as_allowed_straight_ahead(planner: Planner) -> None:
    ego = EgoState(speed_mps=15.0, n_lanes=1)
    result = planner.plan(ego, [Obstacle(x_m=7.0, y_m=0.0)])  # about 1 m from the bumper
    assert not result.any_safe
    assert result.n_safe == 0
    assert result.behaviour == Behaviour.EMERGENCY_BRAKE
    traj = result.trajectory
    assert traj.accel_mps2.min() == pytest.approx(-LIMITS.max_decel_mps2, abs=1e-4)
    moving = traj.v_mps[1:] > 0.0  # the brake is released once stopped
    # Deceleration only grows (jerk-limited ramp) while moving, speed never increases.
    assert np.all(np.diff(traj.accel_mps2)[moving] <= 1e-6)
    assert np.all(np.diff(traj.v_mps) <= 1e-6)
    assert np.abs(traj.y_m).max() < 0.05
    assert np.abs(traj.steer_rad).max() < 1e-6
    # Stopping distance with a 0.6 s ramp to 6 m/s²: v²/2a plus the ramp's extra.
    assert traj.x_m[-1] == pytest.approx(15.0**2 / 12.0 + 15.0 * 0.3, abs=1.0)


def test_stays_in_lane_on_a_curved_road(planner: Planner) -> None:
    kappa = 1.0 / 150.0
    ego = EgoState(speed_mps=12.0, road_curvature_1pm=kappa, steer_rad=float(np.arctan(2.7 * kappa)))
    traj = planner.plan(ego, []).trajectory
    xr, yr = ego_to_road_xy(torch.from_numpy(traj.x_m), torch.from_numpy(traj.y_m), 0.0, 0.0)
    _, d = road_xy_to_frenet(xr, yr, kappa)
    assert float(d.abs().max()) < 0.3
    assert traj.yaw_rad[-1] == pytest.approx(kappa * traj.x_m[-1], abs=0.1)


def test_pedestrian_crossing_ahead_is_avoided_or_stopped_for(planner: Planner) -> None:
    ego = EgoState(speed_mps=10.0, n_lanes=1)
    ped = Obstacle(x_m=30.0, y_m=-3.0, vx_mps=0.0, vy_mps=1.5,
                   object_class=ObjectClass.PEDESTRIAN)
    result = planner.plan(ego, [ped])
    assert result.any_safe
    assert result.min_clearance_m is not None
    assert result.min_clearance_m > 0.0
    assert result.trajectory.v_mps[-1] < ego.speed_mps


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_plan_matches_cpu() -> None:
    ego = EgoState(speed_mps=12.0, lane_index=0, n_lanes=2)
    obstacles = [Obstacle(x_m=45.0, y_m=0.0)]
    cpu = Planner().plan(ego, obstacles)
    gpu = Planner(device="cuda").plan(ego, obstacles)
    assert gpu.behaviour == cpu.behaviour
    assert gpu.n_safe == pytest.approx(cpu.n_safe, rel=0.02)
    assert np.allclose(gpu.trajectory.y_m, cpu.trajectory.y_m, atol=0.05)


def test_prediction_keeps_a_braking_object_braking_and_ignores_lateral_motion_away() -> None:
    from planning.obstacles import predict_obstacles

    cfg, ego = PlannerConfig(), EgoState(speed_mps=14.0)
    t = torch.arange(cfg.n_steps, dtype=torch.float64) * cfg.dt_s
    objects = [
        Obstacle(x_m=30.0, y_m=0.0, vx_mps=10.0, ax_mps2=-4.0),  # braking: stops in 2.5 s
        Obstacle(x_m=30.0, y_m=0.0, vx_mps=10.0, ax_mps2=2.0),  # speeding up: held at 10 m/s
        Obstacle(x_m=40.0, y_m=0.0, vx_mps=10.0, vy_mps=-2.0),  # in lane, drifting right
        Obstacle(x_m=40.0, y_m=3.5, vx_mps=10.0, vy_mps=-1.0),  # left lane, coming over
        Obstacle(x_m=40.0, y_m=3.5, vx_mps=10.0, vy_mps=1.0),  # left lane, moving away
    ]
    obs = predict_obstacles(objects, ego, t, cfg, VEHICLE)
    s0 = float(obs.s0_m[0])
    assert float(obs.s_end_m[0]) == pytest.approx(s0 + 10.0 * 2.5 - 0.5 * 4.0 * 2.5**2, abs=1e-6)
    assert float(obs.vs_end_mps[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(obs.s_end_m[1]) == pytest.approx(s0 + 10.0 * 5.0, abs=1e-6)
    assert float(obs.vs_end_mps[1]) == pytest.approx(10.0)
    assert obs.vd_mps.tolist() == pytest.approx([0.0, 0.0, 0.0, -1.0, 0.0])


@pytest.mark.parametrize("truck_s_m", [40.0, 60.0])
def test_a_truck_in_the_next_lane_of_a_curve_ahead_is_passed_without_braking(
    planner: Planner, truck_s_m: float
) -> None:
    """free_cruise_dusk / free_cruise_fog: entering a left-hand curve, a truck in the right
    lane already follows it. Read in a straight frame it drifts towards the ego's lane and
    the planner brakes; with the map's curvature preview it stays in its lane."""
    x, y, phi = on_curve(truck_s_m, -3.5)
    truck = Obstacle(x_m=x, y_m=y, vx_mps=22.0 * np.cos(phi), vy_mps=22.0 * np.sin(phi),
                     object_class=ObjectClass.TRUCK)
    ego = EgoState(speed_mps=27.8, lane_index=1, n_lanes=2, speed_limit_mps=27.8)
    previewed = planner.plan(replace(ego, curvature_preview_1pm=PREVIEW, preview_step_m=5.0),
                             [truck])
    assert previewed.trajectory.accel_mps2.min() > -0.5
    assert np.abs(previewed.trajectory.y_m).max() < 1.0  # and keeps its lane
    straight = planner.plan(ego, [truck])
    assert straight.trajectory.accel_mps2.min() < -1.0
