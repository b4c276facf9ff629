"""The open-loop driver: follows the scenario route (lane and speed), blind to obstacles.

Pure pursuit on the route lane centre plus a proportional speed loop. It never brakes for
anything in its way on purpose: open loop shows what happens without a perception stack.
"""

from __future__ import annotations

import math

from common.control import ControlCommand
from simulators.kinematics import BicycleState
from simulators.road import Road
from simulators.scenario import EgoSpec

SPEED_GAIN_PER_S = 0.8  # [1/s] accel per m/s of speed error
MAX_DRIVER_ACCEL_MPS2 = 2.0
MAX_DRIVER_DECEL_MPS2 = 3.0


class Route:
    """Lane and speed the ego should hold at each station."""

    def __init__(self, ego: EgoSpec) -> None:
        legs = sorted(ego.route, key=lambda leg: leg.from_s_m)
        self._legs: list[tuple[float, int, float]] = [(-math.inf, ego.lane, ego.speed_mps)]
        for leg in legs:
            _, lane, speed = self._legs[-1]
            self._legs.append((
                leg.from_s_m,
                leg.lane if leg.lane is not None else lane,
                leg.speed_kph / 3.6 if leg.speed_kph is not None else speed,
            ))

    def target(self, s_m: float) -> tuple[int, float]:
        """(lane, speed [m/s]) in force at station `s_m`."""
        lane, speed = self._legs[0][1:]
        for from_s, leg_lane, leg_speed in self._legs:
            if s_m >= from_s:
                lane, speed = leg_lane, leg_speed
        return lane, speed


class RouteDriver:
    """Lane keeping (pure pursuit) and speed tracking along a `Route`."""

    def __init__(self, road: Road, route: Route, wheelbase_m: float) -> None:
        self.road = road
        self.route = route
        self.wheelbase_m = wheelbase_m

    def command(self, state: BicycleState, s_m: float) -> ControlCommand:
        """The command for the ego at `state`, whose station is `s_m`."""
        v = state.speed_mps
        lookahead = min(max(0.9 * v + 4.0, 6.0), 40.0)  # [m]
        lane, _ = self.route.target(s_m + lookahead)
        tx, ty, _ = self.road.frenet_pose(s_m + lookahead, self.road.lane_d(lane))
        dx, dy = tx - state.x_m, ty - state.y_m
        c, s = math.cos(state.yaw_rad), math.sin(state.yaw_rad)
        local_x, local_y = c * dx + s * dy, -s * dx + c * dy
        dist2 = max(local_x * local_x + local_y * local_y, 1e-6)
        steer = math.atan(self.wheelbase_m * 2.0 * local_y / dist2)
        _, speed = self.route.target(s_m)
        accel = SPEED_GAIN_PER_S * (speed - v)
        accel = min(max(accel, -MAX_DRIVER_DECEL_MPS2), MAX_DRIVER_ACCEL_MPS2)
        return ControlCommand(steering_tire_angle_rad=steer, accel_mps2=accel, target_speed_mps=speed)
