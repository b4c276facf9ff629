"""The simulated world: road, ego (bicycle model), scripted actors, collisions and metrics.

`world.step(dt, None)` runs open loop (the built-in route driver, blind to obstacles);
`world.step(dt, command)` applies an external command (closed loop). Physics runs in
sub-steps of at most `PHYSICS_DT_S` so fast approaches cannot tunnel through an actor.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from common.control import ControlCommand
from simulators.actors import Actor, EgoContext
from simulators.appearance import resolve_appearance
from simulators.camera import Camera
from simulators.collision import OrientedBox, boxes_overlap, impact_speed
from simulators.driver import Route, RouteDriver
from simulators.ground_truth import FrameGroundTruth, compute_ground_truth
from simulators.kinematics import ActuatorLimits, BicycleState, step_bicycle
from simulators.metrics import RunMetrics, planned_distance
from simulators.road import Road
from simulators.scenario import Scenario

if TYPE_CHECKING:
    from simulators.render import CameraRenderer, RenderOptions

PHYSICS_DT_S = 0.01  # [s]
APPEARANCE_STREAM = 1  # sub-stream ids of the scenario seed, so each use draws independently


@dataclass(frozen=True)
class WorldEgoState:
    """The ego as `vehicle.state` reports it; pose of the rear-axle centre in the world frame.

    The simulator's truth, not planning's `planning.types.EgoState` (the ego relative to its
    lane, what the planner plans from): the two meet only through the `vehicle.state`
    contract, which a vehicle fills from localisation and planning reads.
    """

    t_s: float
    x_m: float
    y_m: float
    yaw_rad: float
    speed_mps: float
    accel_mps2: float
    yaw_rate_radps: float
    steer_rad: float
    s_m: float  # station along the road
    d_m: float  # lateral offset from the road centre, + left
    lane: int
    set_speed_mps: float | None = None  # the driver's cruise speed; None: the road's limit

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return asdict(self)


@dataclass(frozen=True)
class CollisionEvent:
    """A contact between the ego footprint and an actor's."""

    t_s: float
    actor_id: str
    track_id: int
    actor_class: str
    impact_speed_mps: float  # relative speed at first contact


class World:
    """A running scenario. Build it with `World.from_scenario`."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.seed = seed
        self.road = Road(scenario.road)
        spec = scenario.ego.vehicle
        self.vehicle = spec
        self.limits = ActuatorLimits.from_spec(spec)
        self.route = Route(scenario.ego)
        self.driver = RouteDriver(self.road, self.route, spec.wheelbase_m)
        self.cameras: dict[str, Camera] = {c.id: Camera.from_spec(c) for c in scenario.cameras}
        self.camera_index = {c.id: i for i, c in enumerate(scenario.cameras)}
        self.actors: list[Actor] = []
        for i, actor_spec in enumerate(scenario.actors):
            rng = np.random.default_rng([seed, APPEARANCE_STREAM, i])
            app = resolve_appearance(actor_spec, rng)
            self.actors.append(Actor(i, scenario.actor_id(i), actor_spec, app, self.road))
        ego = scenario.ego
        d0 = self.road.lane_d(ego.lane)
        x, y, yaw = self.road.frenet_pose(ego.s_m, d0)
        steer0 = math.atan(spec.wheelbase_m * self.road.curvature_at(ego.s_m))
        self._ego = BicycleState(x, y, yaw, ego.speed_mps, steer_rad=steer0)
        self._s_m, self._d_m = ego.s_m, d0
        self.t_s = 0.0
        self.step_count = 0
        self.collisions: list[CollisionEvent] = []
        self._touching: set[int] = set()
        planned = planned_distance(self.route, ego.s_m, ego.speed_mps, scenario.duration_s)
        self.metrics = RunMetrics(planned, ego.s_m)
        self._renderers: dict[tuple[str, int, int], CameraRenderer] = {}
        self.render_cache: dict[object, Any] = {}  # renderer parts shared by all cameras
        self._next_capture_s = {c.id: 0.0 for c in scenario.cameras}

    @classmethod
    def from_scenario(cls, scenario: Scenario, seed: int | None = None) -> World:
        """A world at t = 0; `seed` overrides the scenario's seed."""
        return cls(scenario, scenario.seed if seed is None else seed)

    @property
    def done(self) -> bool:
        """Past the duration, or collided when the scenario ends on collision."""
        if self.t_s >= self.scenario.duration_s - 1e-9:
            return True
        return bool(self.collisions) and self.scenario.end_on_collision

    @property
    def collided(self) -> bool:
        """Whether the ego has hit anything."""
        return bool(self.collisions)

    @property
    def front_overhang_m(self) -> float:
        """Rear axle to front bumper [m]."""
        return self.vehicle.length_m - self.vehicle.rear_overhang_m

    def ego_state(self) -> WorldEgoState:
        """The ego's current state."""
        e = self._ego
        return WorldEgoState(
            t_s=self.t_s, x_m=e.x_m, y_m=e.y_m, yaw_rad=e.yaw_rad, speed_mps=e.speed_mps,
            accel_mps2=e.accel_mps2, yaw_rate_radps=e.yaw_rate_radps, steer_rad=e.steer_rad,
            s_m=self._s_m, d_m=self._d_m, lane=self.road.lane_of(self._d_m),
            set_speed_mps=self.scenario.ego.set_speed_mps,
        )

    def ego_box(self) -> OrientedBox:
        """The ego footprint."""
        e, v = self._ego, self.vehicle
        off = v.length_m / 2 - v.rear_overhang_m
        return OrientedBox(e.x_m + off * math.cos(e.yaw_rad), e.y_m + off * math.sin(e.yaw_rad),
                           e.yaw_rad, v.length_m, v.width_m)

    def route_target(self) -> tuple[int, float]:
        """(lane, speed [m/s]) the route asks for at the ego's station."""
        return self.route.target(self._s_m)

    def ego_velocity(self) -> tuple[float, float]:
        """World velocity of the ego [m/s]."""
        e = self._ego
        return e.speed_mps * math.cos(e.yaw_rad), e.speed_mps * math.sin(e.yaw_rad)

    def step(self, dt_s: float, control: ControlCommand | None = None) -> None:
        """Advance by `dt_s`; `control=None` lets the built-in driver drive (open loop)."""
        if dt_s <= 0:
            raise ValueError(f"dt_s must be positive, got {dt_s}")
        n = max(1, math.ceil(dt_s / PHYSICS_DT_S - 1e-9))
        h = dt_s / n
        for _ in range(n):
            self._substep(h, control)
        self.step_count += 1

    def _substep(self, h: float, control: ControlCommand | None) -> None:
        e = self._ego
        front = self.front_overhang_m
        ctx = EgoContext(self.t_s, e.x_m + front * math.cos(e.yaw_rad),
                         e.y_m + front * math.sin(e.yaw_rad), self._s_m + front, e.speed_mps)
        for actor in self.actors:
            actor.step(h, ctx)
        cmd = control if control is not None else self.driver.command(e, self._s_m)
        self._ego = step_bicycle(e, cmd, h, self.vehicle.wheelbase_m, self.limits)
        self._s_m, self._d_m = self.road.project(self._ego.x_m, self._ego.y_m, self._s_m)
        self.t_s += h
        ego_box = self.ego_box()
        for actor in self.actors:
            touching = boxes_overlap(ego_box, actor.box())
            if touching and actor.index not in self._touching:
                speed = impact_speed(self.ego_velocity(), actor.velocity())
                self.collisions.append(CollisionEvent(self.t_s, actor.actor_id, actor.track_id,
                                                      actor.appearance.actor_class, speed))
                self.metrics.record_collision(self.t_s, actor.actor_id, speed)
            if touching:
                self._touching.add(actor.index)
            else:
                self._touching.discard(actor.index)
        self.metrics.update(self.t_s, self._ego, ego_box, self._s_m, self._d_m, front, self.road,
                            self.actors)

    def due_cameras(self) -> list[str]:
        """Ids of the cameras whose next frame is due at the current time, in scenario order.

        Each call advances the returned cameras' schedules by one period (1 / rate_hz), so a
        loop of `step(dt)` then `due_cameras()` yields every camera at its own rate, starting
        with a frame of each at t = 0.
        """
        due = []
        for cam_id, next_s in self._next_capture_s.items():
            if self.t_s >= next_s - 1e-6:
                due.append(cam_id)
                period = 1.0 / self.cameras[cam_id].rate_hz
                # skip missed periods instead of bursting when the caller steps coarsely
                self._next_capture_s[cam_id] = next_s + period * max(
                    1, math.floor((self.t_s - next_s) / period + 1e-6) + 1)
        return due

    def camera(self, camera: str | Camera) -> Camera:
        """A camera by id (or the given camera itself)."""
        return camera if isinstance(camera, Camera) else self.cameras[camera]

    def ground_truth(self, camera: str | Camera) -> FrameGroundTruth:
        """True objects seen by `camera` now (an id, or a `Camera` e.g. rescaled)."""
        return compute_ground_truth(self, self.camera(camera))

    def render(self, camera: str | Camera, options: RenderOptions | None = None) -> np.ndarray:
        """The camera image now, BGR uint8 (H, W, 3); renderers are cached per camera."""
        from simulators.render import CameraRenderer  # imported late: rendering is optional

        cam = self.camera(camera)
        key = (cam.camera_id, cam.width, cam.height)
        renderer = self._renderers.get(key)
        if renderer is None or (options is not None and options != renderer.options):
            renderer = CameraRenderer(self, cam, options)
            self._renderers[key] = renderer
        return renderer.render(self)
