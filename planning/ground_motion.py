"""Over-ground velocity of tracked objects, filtered in the world frame.

Perception reports each object's motion relative to the ego frame. Over the ground that is
v = v_rel + v_ego + ω × r, and the sum is right only while the ego drives steadily: the
relative filter needs a few tenths of a second to follow what the ego's own steering and
braking do to every object, while ω and v_ego change at once. A parked car 70 m ahead then
seems to slide sideways at 3 m/s for every steering correction of the ego, and a pedestrian
standing at the kerb seems to walk away at 4 m/s while a new track's relative velocity
settles; the planner believes both, and its choice flips with them.

Here each track's ego-frame position is placed in the world with the ego pose of its frame
and a constant-velocity Kalman filter runs on it, so the ego's motion is taken out exactly.
The filter's velocity is the object's own. A new track starts at rest for a pedestrian (they
are slow: the prior is tight) and at the relative estimate's over-ground value for the
others, whose prior speed is wide. Measurement noise grows with range: along the line of
sight a monocular range is uncertain by a few per cent, across it by much less.

Used by the planning service for the lateral velocity of every object and the whole
velocity of pedestrians; along the road a vehicle's relative estimate (range rate) stays the
better number, and the braking-lead logic is tuned to it.

The filters also remember what the camera no longer sees. A car the ego overtakes leaves a
forward camera's view while it is still beside the ego, and a lane change into it looks free;
a pedestrian missed for a few frames is a gap in the road. A confirmed track that goes unseen
is coasted (dead-reckoned at its filtered velocity) for ``coast_beside_s`` when it was last
seen close and off to the side, where it leaves the view, and for ``coast_s`` otherwise. A
coasted car or truck keeps its lane: it is dead-reckoned from where it was last seen (not
from the filter's position, which lags after the last frames' jumps), with only its velocity
along the ego's heading at that time. A car leaving the view is cut by the image edge, its box and so its
lateral position swing in the last frames, and the filter read a car overtaken on the right in
free_cruise_rain as drifting 2 m/s towards the ego; dead-reckoned for three seconds, that ghost
crossed into the ego's lane and the planner braked at 6 m/s² on a free road.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from common.classes import ObjectClass
from common.kalman import ConstantVelocityKalman, KinematicKalman


def rotate(x: float, y: float, angle_rad: float) -> tuple[float, float]:
    """``(x, y)`` turned by ``angle_rad`` (ego axes → world with the ego's yaw; back with −yaw)."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return c * x - s * y, s * x + c * y


@dataclass(frozen=True, slots=True)
class GroundMotionConfig:
    """Noise model of the world-frame filter."""

    accel_std_mps2: dict[ObjectClass, float] = field(default_factory=lambda: {
        ObjectClass.CAR: 3.0, ObjectClass.TRUCK: 2.0, ObjectClass.PEDESTRIAN: 3.0,
        ObjectClass.CYCLIST: 2.5})
    # Prior speed spread of a new track; a pedestrian starts at rest, the others at the
    # over-ground value of perception's relative estimate.
    initial_speed_std_mps: dict[ObjectClass, float] = field(default_factory=lambda: {
        ObjectClass.CAR: 10.0, ObjectClass.TRUCK: 10.0, ObjectClass.PEDESTRIAN: 1.5,
        ObjectClass.CYCLIST: 6.0})
    range_rel_std: float = 0.06  # along the line of sight, times the range
    lateral_rel_std: float = 0.004  # across it, times the range
    min_std_m: float = 0.1
    max_age_s: float = 1.0  # a track unseen this long starts afresh
    coast_s: float = 0.5  # an unseen confirmed track is kept this long [s] ...
    coast_beside_s: float = 3.0  # ... or this long when it was last seen leaving the view
    beside_within_m: float = 20.0  # "close": last seen less than this far ahead [m]
    beside_lateral_m: float = 1.5  # "to the side": this far off the ego's axis [m]
    confirmed_hits: int = 5  # updates before a track is coasted (no ghost of a false alarm)
    jerk_std_mps3: float = 8.0  # how fast a vehicle's acceleration changes (its braking filter)
    initial_accel_std_mps2: float = 3.0
    # Classes coasted along the road only (they keep their lane while unseen).
    lane_keeping: frozenset[ObjectClass] = frozenset({ObjectClass.CAR, ObjectClass.TRUCK})


@dataclass(slots=True)
class _Track:
    kf: ConstantVelocityKalman
    stamp_ns: int
    object_class: ObjectClass
    last_seen_m: tuple[float, float]  # ego-frame position at the last update
    heading_rad: float  # the ego's yaw at the last update (the road's direction, near enough)
    seen_world_m: tuple[float, float]  # world position of the last measurement
    hits: int = 1
    braking: KinematicKalman | None = None  # constant-acceleration filter (vehicles only)


@dataclass(frozen=True, slots=True)
class Coasted:
    """An unseen track, dead-reckoned to the time asked for (world frame)."""

    key: tuple[str, int]
    object_class: ObjectClass
    position_m: tuple[float, float]
    velocity_mps: tuple[float, float]
    keeps_lane: bool = False  # dead-reckoned along its lane (a car or truck)


class GroundMotion:
    """World-frame filters keyed by (camera, track id); feed each camera in time order."""

    def __init__(self, config: GroundMotionConfig | None = None) -> None:
        self.config = config or GroundMotionConfig()
        self._tracks: dict[tuple[str, int], _Track] = {}

    def update(self, key: tuple[str, int], stamp_ns: int, pose: tuple[float, float, float],
               position_m: tuple[float, float], object_class: ObjectClass,
               initial_velocity_mps: tuple[float, float]) -> tuple[float, float]:
        """Fuse one ego-frame position seen at ``stamp_ns`` from the ego ``pose``
        ``(x, y, yaw)``; return the object's over-ground velocity in the world frame.

        ``initial_velocity_mps`` (world frame) seeds a new track of a class that is not
        started at rest.
        """
        cfg = self.config
        x0, y0, yaw = pose
        px, py = position_m
        wx, wy = rotate(px, py, yaw)
        z = np.array([x0 + wx, y0 + wy])
        rng = math.hypot(px, py)
        bearing = math.atan2(py, px) + yaw
        along = max(cfg.min_std_m, cfg.range_rel_std * rng)
        across = max(cfg.min_std_m, cfg.lateral_rel_std * rng)
        u = np.array([math.cos(bearing), math.sin(bearing)])
        w = np.array([-u[1], u[0]])
        cov = along**2 * np.outer(u, u) + across**2 * np.outer(w, w)
        track = self._tracks.get(key)
        if track is None or (stamp_ns - track.stamp_ns) * 1e-9 > cfg.max_age_s:
            kf = ConstantVelocityKalman(z, position_std=np.array([along, across]),
                                        velocity_std=cfg.initial_speed_std_mps.get(
                                            object_class, 10.0))
            kf.P[:2, :2] = cov
            braking = None
            if object_class != ObjectClass.PEDESTRIAN:
                kf.x[2:] = initial_velocity_mps
            if object_class in cfg.lane_keeping:
                braking = KinematicKalman(z, position_std=np.array([along, across]),
                                          velocity_std=cfg.initial_speed_std_mps.get(
                                              object_class, 10.0),
                                          accel_std=cfg.initial_accel_std_mps2, order=3)
                braking.P[:2, :2] = cov
                braking.x[2:4] = initial_velocity_mps
            self._tracks[key] = _Track(kf, stamp_ns, object_class, position_m, yaw,
                                       (float(z[0]), float(z[1])), braking=braking)
        else:
            dt_s = (stamp_ns - track.stamp_ns) * 1e-9
            if dt_s > 0.0:
                track.kf.predict(dt_s, cfg.accel_std_mps2.get(object_class, 3.0))
                track.kf.update(z, meas_cov=cov)
                if track.braking is not None:
                    track.braking.predict(dt_s, cfg.jerk_std_mps3)
                    track.braking.update(z, meas_cov=cov)
                track.stamp_ns = stamp_ns
                track.object_class, track.last_seen_m = object_class, position_m
                track.seen_world_m = (float(z[0]), float(z[1]))
                track.heading_rad = yaw
                track.hits += 1
            kf = track.kf
        vx, vy = kf.velocity
        return float(vx), float(vy)

    def accel(self, key: tuple[str, int]) -> tuple[float, float] | None:
        """A vehicle track's acceleration over the ground (world frame) [m/s²], or ``None``
        (a pedestrian or cyclist, or no such track).

        From a constant-acceleration filter on the world positions: the ego's own braking
        is taken out exactly, which the relative estimate cannot do (a relative acceleration
        too small to resolve reads 0, and adding the ego's braking made every car ahead brake
        with the ego, and the ego brake harder for it). Noisy far away (±0.8 m/s² at 60 m)
        but without that loop, and it sees a lead braking in step with the ego (CCRb: about
        −2 m/s² for a lead at 18 m braking at 2).
        """
        track = self._tracks.get(key)
        if track is None or track.braking is None:
            return None
        ax, ay = (float(v) for v in track.braking.acceleration)
        return ax, ay

    def coast_limit_s(self, track: _Track) -> float:
        """How long an unseen track is kept: long if it was last seen leaving the view."""
        cfg = self.config
        if track.hits < cfg.confirmed_hits:
            return 0.0
        x, y = track.last_seen_m
        beside = x < cfg.beside_within_m and abs(y) > cfg.beside_lateral_m
        return cfg.coast_beside_s if beside else cfg.coast_s

    def coasted(self, stamp_ns: int, seen: set[tuple[str, int]]) -> list[Coasted]:
        """Confirmed tracks not in ``seen``, dead-reckoned to ``stamp_ns`` while within their
        coasting time (cars and trucks along the road only)."""
        out = []
        for key, track in self._tracks.items():
            age_s = (stamp_ns - track.stamp_ns) * 1e-9
            if key in seen or age_s <= 0.0 or age_s > self.coast_limit_s(track):
                continue
            px, py, vx, vy = (float(v) for v in track.kf.x)
            keeps_lane = track.object_class in self.config.lane_keeping
            if keeps_lane:
                ux, uy = math.cos(track.heading_rad), math.sin(track.heading_rad)
                along = vx * ux + vy * uy
                vx, vy = along * ux, along * uy
                # from where it was last seen: after the jumps of a box cut by the image edge
                # the filter's position lags (in free_cruise_fog by 1.8 m, into the ego's lane)
                px, py = track.seen_world_m
            out.append(Coasted(key, track.object_class, (px + vx * age_s, py + vy * age_s),
                               (vx, vy), keeps_lane))
        return out

    def prune(self, stamp_ns: int) -> None:
        """Forget tracks unseen for longer than they are kept (``max_age_s`` or coasting)."""
        keep = {}
        for key, track in self._tracks.items():
            limit_s = max(self.config.max_age_s, self.coast_limit_s(track))
            if (stamp_ns - track.stamp_ns) * 1e-9 <= limit_s:
                keep[key] = track
        self._tracks = keep

    def __len__(self) -> int:
        return len(self._tracks)
