"""A small closed-loop world for planner tests: straight multi-lane road, kinematic ego.

World frame: x along the road, y left; lane i is centred at y = i · lane width. Objects
move at constant velocity, or brake along x to a stop from ``brake_after_s`` on (perceived with
their true acceleration). The ego is a kinematic bicycle whose actuators follow the
published command exactly (accel and steering, speed never negative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from common.classes import ObjectClass
from planning.controller import TrajectoryController
from planning.gate import Gate, GateConfig
from planning.planner import Planner
from planning.types import EgoState, Obstacle, PlanResult, VehicleParams


@dataclass
class WorldObject:
    x_m: float
    y_m: float
    vx_mps: float = 0.0
    vy_mps: float = 0.0
    object_class: ObjectClass = ObjectClass.CAR
    brake_mps2: float = 0.0  # deceleration along x, from brake_after_s on, to a stop
    brake_after_s: float = 0.0

    def accel_mps2(self, t_s: float) -> float:
        braking = self.brake_mps2 > 0.0 and t_s >= self.brake_after_s and self.vx_mps > 0.0
        return -self.brake_mps2 if braking else 0.0

    def size_m(self) -> tuple[float, float]:
        return Obstacle(0.0, 0.0, object_class=self.object_class).size_m()


@dataclass
class EgoWorld:
    x_m: float = 0.0
    y_m: float = 0.0
    yaw_rad: float = 0.0
    speed_mps: float = 10.0
    accel_mps2: float = 0.0
    steer_rad: float = 0.0


@dataclass
class Log:
    plans: list[PlanResult] = field(default_factory=list)
    ego: list[EgoWorld] = field(default_factory=list)
    collided: bool = False
    min_gap_m: float = math.inf  # smallest footprint gap to any object (Chebyshev)


@dataclass
class ClosedLoop:
    """Planner → controller → gate (fresh inputs, so only the clamp acts) → vehicle."""

    ego: EgoWorld
    objects: list[WorldObject]
    n_lanes: int = 1
    lane_width_m: float = 3.5
    speed_limit_mps: float = 13.9
    set_speed_mps: float | None = None  # the driver's cruise speed (None: the limit)
    planner: Planner = field(default_factory=Planner)
    vehicle: VehicleParams = field(default_factory=VehicleParams)
    plan_dt_s: float = 0.1
    sim_dt_s: float = 0.02

    def __post_init__(self) -> None:
        self.controller = TrajectoryController(vehicle=self.vehicle)
        self.gate = Gate(GateConfig())
        self.time_ns = 0
        self.time_s = 0.0  # world time, advanced by every physics step

    def ego_state(self) -> EgoState:
        e = self.ego
        lane = min(max(round(e.y_m / self.lane_width_m), 0), self.n_lanes - 1)
        return EgoState(
            speed_mps=e.speed_mps,
            accel_mps2=e.accel_mps2,
            steer_rad=e.steer_rad,
            lateral_offset_m=e.y_m - lane * self.lane_width_m,
            heading_rel_rad=e.yaw_rad,
            lane_index=lane,
            n_lanes=self.n_lanes,
            lane_width_m=self.lane_width_m,
            speed_limit_mps=self.speed_limit_mps,
            set_speed_mps=self.set_speed_mps,
        )

    def perceived(self) -> list[Obstacle]:
        e = self.ego
        c, s = math.cos(e.yaw_rad), math.sin(e.yaw_rad)
        out = []
        for o in self.objects:
            dx, dy = o.x_m - e.x_m, o.y_m - e.y_m
            out.append(
                Obstacle(
                    x_m=c * dx + s * dy,
                    y_m=-s * dx + c * dy,
                    vx_mps=c * o.vx_mps + s * o.vy_mps,
                    vy_mps=-s * o.vx_mps + c * o.vy_mps,
                    ax_mps2=c * o.accel_mps2(self.time_s),
                    ay_mps2=-s * o.accel_mps2(self.time_s),
                    object_class=o.object_class,
                )
            )
        return out

    def footprint_gap_m(self) -> float:
        """Smallest Chebyshev gap between the ego's bounding box and any object's."""
        e, v = self.ego, self.vehicle
        cx = e.x_m + v.rear_axle_to_centre_m * math.cos(e.yaw_rad)
        cy = e.y_m + v.rear_axle_to_centre_m * math.sin(e.yaw_rad)
        hl = 0.5 * (abs(math.cos(e.yaw_rad)) * v.length_m + abs(math.sin(e.yaw_rad)) * v.width_m)
        hw = 0.5 * (abs(math.sin(e.yaw_rad)) * v.length_m + abs(math.cos(e.yaw_rad)) * v.width_m)
        gap = math.inf
        for o in self.objects:
            length, width = o.size_m()
            gap_x = abs(o.x_m - cx) - hl - 0.5 * length
            gap_y = abs(o.y_m - cy) - hw - 0.5 * width
            gap = min(gap, max(gap_x, gap_y))
        return gap

    def run(self, duration_s: float, stop_when_stopped_s: float | None = None) -> Log:
        log = Log()
        still_s = 0.0
        substeps = round(self.plan_dt_s / self.sim_dt_s)
        for _ in range(round(duration_s / self.plan_dt_s)):
            previous = log.plans[-1].target_lane_index if log.plans else None
            result = self.planner.plan(self.ego_state(), self.perceived(), previous)
            log.plans.append(result)
            cmd = self.controller.step(
                result.trajectory, speed_mps=self.ego.speed_mps, dt_s=self.plan_dt_s
            )
            self.gate.on_perception(self.time_ns, None)
            self.gate.on_vehicle_state(self.time_ns, self.ego.speed_mps)
            self.gate.on_command(cmd, self.time_ns)
            out = self.gate.tick(self.time_ns).command
            for _ in range(substeps):
                self._step(out.accel_mps2, out.steering_tire_angle_rad)
                gap = self.footprint_gap_m()
                log.min_gap_m = min(log.min_gap_m, gap)
                log.collided = log.collided or gap < 0.0
            self.time_ns += round(self.plan_dt_s * 1e9)
            log.ego.append(EgoWorld(**vars(self.ego)))
            still_s = still_s + self.plan_dt_s if self.ego.speed_mps < 0.05 else 0.0
            if stop_when_stopped_s is not None and still_s >= stop_when_stopped_s:
                break
        return log

    def _step(self, accel_mps2: float, steer_rad: float) -> None:
        e, dt = self.ego, self.sim_dt_s
        if e.speed_mps <= 0.0 and accel_mps2 < 0.0:
            accel_mps2 = 0.0  # brake holds at standstill; no reversing
        v_next = max(e.speed_mps + accel_mps2 * dt, 0.0)
        v_mid = 0.5 * (e.speed_mps + v_next)
        yaw_rate = v_mid * math.tan(steer_rad) / self.vehicle.wheelbase_m
        heading = e.yaw_rad + 0.5 * yaw_rate * dt
        e.x_m += v_mid * math.cos(heading) * dt
        e.y_m += v_mid * math.sin(heading) * dt
        e.yaw_rad += yaw_rate * dt
        e.accel_mps2 = (v_next - e.speed_mps) / dt
        e.speed_mps = v_next
        e.steer_rad = steer_rad
        for o in self.objects:
            a = o.accel_mps2(self.time_s)
            vx_next = max(o.vx_mps + a * dt, 0.0) if a else o.vx_mps
            o.x_m += 0.5 * (o.vx_mps + vx_next) * dt
            o.y_m += o.vy_mps * dt
            o.vx_mps = vx_next
        self.time_s += dt
