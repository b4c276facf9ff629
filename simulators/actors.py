"""Scripted actors: Frenet motion along the road, driven by behaviours with triggers."""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulators.appearance import Appearance
from simulators.collision import OrientedBox
from simulators.road import Road
from simulators.scenario import ActorSpec, Brake, Cross, CutIn, FollowLane, Stop, Trigger

STRIDE_M = {"pedestrian": 1.4, "cyclist": 2.2}  # [m] travelled per gait / pedal cycle
BRAKE_LIGHT_DECEL_MPS2 = 0.8  # [m/s²] deceleration that lights the brake lights


@dataclass(frozen=True)
class EgoContext:
    """What triggers look at: the ego front bumper and speed."""

    t_s: float
    front_x_m: float
    front_y_m: float
    front_s_m: float
    speed_mps: float


def trigger_fired(trigger: Trigger, actor_xy: tuple[float, float], actor_s: float,
                  ego: EgoContext) -> bool:
    """Whether `trigger` holds now; a trigger with no condition fires at once."""
    if trigger.time_s is not None:
        return ego.t_s >= trigger.time_s - 1e-9
    if trigger.distance_m is not None:
        gap = math.hypot(actor_xy[0] - ego.front_x_m, actor_xy[1] - ego.front_y_m)
        return gap <= trigger.distance_m
    if trigger.ttc_s is not None:
        gap_s = actor_s - ego.front_s_m
        return ego.speed_mps > 0.1 and gap_s / ego.speed_mps <= trigger.ttc_s
    return True


class Actor:
    """One scripted actor; state in Frenet coordinates of the road."""

    def __init__(self, index: int, actor_id: str, spec: ActorSpec, appearance: Appearance,
                 road: Road) -> None:
        self.index = index
        self.track_id = index + 1  # 0 is kept for "no track" downstream
        self.actor_id = actor_id
        self.spec = spec
        self.appearance = appearance
        self.road = road
        base = road.lane_d(spec.lane if spec.lane is not None else 0)
        self.s_m = spec.s_m
        self.d_m = (spec.d_m if spec.d_m is not None else base) + spec.offset_m
        self.speed_mps = spec.speed_mps  # along the road, over ground
        self.lat_speed_mps = 0.0  # d(d)/dt, positive to the left
        self.heading_rel_rad = math.radians(spec.heading_deg)
        self.target_speed_mps = self.speed_mps
        self.long_rate_mps2 = 2.0
        self.held_brake = False
        self.indicator = 0  # -1 right, +1 left
        self.gait_phase_rad = 0.0
        self._fired = [False] * len(spec.behaviours)
        self._lane_change: tuple[float, float, float, float] | None = None  # d0, d1, t0, T
        self._walk: tuple[float, float, float] | None = None  # signed speed, left [m], accel

    @property
    def moving(self) -> bool:
        """True while the actor moves."""
        return abs(self.speed_mps) > 0.05 or abs(self.lat_speed_mps) > 0.05

    @property
    def brake_lights(self) -> bool:
        """Brake lights: decelerating hard enough, or standing after a brake/stop."""
        decel = self.speed_mps > self.target_speed_mps + 0.01 and (
            self.long_rate_mps2 >= BRAKE_LIGHT_DECEL_MPS2
        )
        return decel or (self.held_brake and self.speed_mps < 0.05)

    def pose(self) -> tuple[float, float, float]:
        """World x, y [m] and yaw [rad] of the actor centre."""
        x, y, h = self.road.frenet_pose(self.s_m, self.d_m)
        return x, y, h + self.heading_rel_rad

    def velocity(self) -> tuple[float, float]:
        """World velocity [m/s]."""
        _, _, h = self.road.frenet_pose(self.s_m, 0.0)
        c, s = math.cos(h), math.sin(h)
        return (self.speed_mps * c - self.lat_speed_mps * s,
                self.speed_mps * s + self.lat_speed_mps * c)

    def box(self) -> OrientedBox:
        """Ground footprint."""
        x, y, yaw = self.pose()
        return OrientedBox(x, y, yaw, self.appearance.length_m, self.appearance.width_m)

    def _start(self, behaviour: object, t_s: float) -> None:
        if isinstance(behaviour, FollowLane):
            self.target_speed_mps = behaviour.speed_kph / 3.6
            self.long_rate_mps2 = behaviour.accel_mps2
            self.held_brake = False
        elif isinstance(behaviour, Brake):
            self.target_speed_mps = behaviour.target_speed_kph / 3.6
            self.long_rate_mps2 = behaviour.decel_mps2
            self.held_brake = behaviour.target_speed_kph == 0
        elif isinstance(behaviour, CutIn):
            d1 = self.road.lane_d(behaviour.target_lane)
            self._lane_change = (self.d_m, d1, t_s, behaviour.duration_s)
            self.indicator = 1 if d1 > self.d_m else -1
        elif isinstance(behaviour, Cross):
            sign = 1.0 if behaviour.direction == "left" else -1.0
            self._walk = (sign * behaviour.speed_kph / 3.6, behaviour.distance_m, behaviour.accel_mps2)
        elif isinstance(behaviour, Stop):
            self.target_speed_mps = 0.0
            self.long_rate_mps2 = behaviour.decel_mps2
            self.held_brake = True
            if self._walk is not None:
                self._walk = (0.0, math.inf, behaviour.decel_mps2)

    def step(self, dt: float, ego: EgoContext) -> None:
        """Fire due behaviours, then advance by `dt` [s]."""
        if self.spec.behaviours:
            xy = self.pose()[:2]
            for i, beh in enumerate(self.spec.behaviours):
                if not self._fired[i] and trigger_fired(beh.trigger, xy, self.s_m, ego):
                    self._fired[i] = True
                    self._start(beh, ego.t_s)
        self._step_longitudinal(dt)
        self._step_lateral(dt, ego.t_s + dt)
        ground = math.hypot(self.speed_mps, self.lat_speed_mps)
        stride = STRIDE_M.get(self.appearance.actor_class)
        if stride is not None:
            self.gait_phase_rad = (self.gait_phase_rad + 2 * math.pi * ground * dt / stride) % (
                2 * math.pi
            )
        if ground > 0.3:  # face the way it moves; keep the last heading when standing
            self.heading_rel_rad = math.atan2(self.lat_speed_mps, self.speed_mps)

    def _step_longitudinal(self, dt: float) -> None:
        v, target, rate = self.speed_mps, self.target_speed_mps, self.long_rate_mps2
        v = min(target, v + rate * dt) if v < target else max(target, v - rate * dt)
        k = self.road.curvature_at(self.s_m)
        self.s_m += (self.speed_mps + v) / 2 * dt / max(1.0 - k * self.d_m, 0.2)
        self.speed_mps = v

    def _step_lateral(self, dt: float, t_next: float) -> None:
        if self._lane_change is not None:
            d0, d1, t0, dur = self._lane_change
            tau = min(max((t_next - t0) / dur, 0.0), 1.0)
            new_d = d0 + (d1 - d0) * (1 - math.cos(math.pi * tau)) / 2
            self.lat_speed_mps = (new_d - self.d_m) / dt
            self.d_m = new_d
            if tau >= 1.0:
                self._lane_change = None
                self.lat_speed_mps = 0.0
                self.indicator = 0
        elif self._walk is not None:
            want, left, accel = self._walk
            vd = self.lat_speed_mps
            vd = min(want, vd + accel * dt) if vd < want else max(want, vd - accel * dt)
            # slow down in time to stop at the end of the walk
            stop_speed = math.sqrt(max(2 * accel * left, 0.0))
            vd = max(min(vd, stop_speed), -stop_speed)
            step = vd * dt
            self.d_m += step
            left -= abs(step)
            self.lat_speed_mps = vd
            if left <= 1e-3 or (want == 0.0 and abs(vd) < 1e-3):
                self._walk = None
                self.lat_speed_mps = 0.0
            else:
                self._walk = (want, left, accel)
