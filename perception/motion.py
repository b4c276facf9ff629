"""Ego-frame motion of tracked objects: filtered position, velocity, range rate and TTC.

Per track id, a constant-velocity Kalman filter runs on the ranged centre and gives position
and velocity; beside it a constant-acceleration filter on the longitudinal coordinate
alone gives the acceleration along the ego's axis (a car ahead braking). The two models suit
what each number is for: a pedestrian starting to walk is a step in velocity (the
constant-velocity model follows it without the lag and overshoot of a second-order model),
a lead car braking is a step in acceleration. The
measurement noise follows the geometry of monocular ranging: along the line of sight a
ground-plane range is uncertain by about ``range² · σ_v / (fy · camera height)`` (one pixel of
box bottom is worth more metres the farther the object), a size-prior range by a fraction of
the range; across it, ``range · σ_u / fx``.

Velocities are relative to the ego vehicle (the ego frame moves with it), which is what TTC
needs; add the ego velocity for over-ground motion.

The filter runs on the centre, not on the contact point: the contact point is where the line
of sight meets the object's near face, so it slides along a car the ego passes (0.4 m
sideways over a second for a car in the next lane, read as 0.8 m/s of drift towards the
ego), and it moves when the ranging method changes. The centre is one point of the object.
Range, range rate and TTC are taken at the contact point of the latest frame, carried over
to the filtered centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from common.calibration import Calibration
from common.kalman import KinematicKalman
from perception.ranging import RangeEstimate, time_to_collision


@dataclass(frozen=True)
class ObjectMotion:
    """Filtered state of one track in the ego frame.

    ``position_m`` ``(x, y)`` of the centre [m]; ``velocity_mps`` ``(vx, vy)`` and
    ``accel_mps2`` ``(ax, 0)`` relative to ego [m/s, m/s²] (only the longitudinal acceleration
    is estimated); ``range_rate_mps`` d(range)/dt, negative when closing; ``ttc_s`` time to
    collision [s] or ``None`` when not closing; range, range rate and TTC are the contact
    point's.
    """

    track_id: int
    position_m: tuple[float, float]
    velocity_mps: tuple[float, float]
    accel_mps2: tuple[float, float]
    range_m: float
    range_rate_mps: float
    ttc_s: float | None


@dataclass(frozen=True)
class MotionConfig:
    """Noise model of the ego-frame filter."""

    accel_std_mps2: float = 3.0  # how hard road users change relative velocity
    jerk_std_mps3: float = 8.0  # how fast they change relative acceleration (longitudinal)
    # An acceleration within this many standard deviations of zero is reported as zero: far
    # away the range is metres uncertain and its second derivative is noise (a car 65 m ahead
    # seen "braking" at 1 m/s² slows the ego down for nothing).
    accel_significance: float = 2.0
    pixel_std: float = 1.5  # box edge noise [px]
    size_prior_rel_std: float = 0.15  # relative range error of a size-prior estimate
    min_std_m: float = 0.1
    initial_velocity_std_mps: float = 15.0
    initial_accel_std_mps2: float = 3.0
    max_age_s: float = 1.0  # forget a track's filter after this long without a measurement


def measurement_cov(est: RangeEstimate, calib: Calibration, cfg: MotionConfig) -> np.ndarray:
    """``(2, 2)`` covariance [m²] of a contact-point estimate in the ego frame."""
    sight = np.array(est.contact_m) - np.array([calib.mount_x_m, calib.mount_y_m])
    dist = max(float(np.linalg.norm(sight)), 1e-3)
    if est.method == "ground":
        radial = dist * dist * cfg.pixel_std / (calib.fy * max(calib.mount_z_m, 0.1))
    else:
        radial = dist * cfg.size_prior_rel_std
    lateral = dist * cfg.pixel_std / calib.fx
    radial, lateral = max(radial, cfg.min_std_m), max(lateral, cfg.min_std_m)
    e_r = sight / dist
    e_l = np.array([-e_r[1], e_r[0]])
    return np.asarray(
        radial**2 * np.outer(e_r, e_r) + lateral**2 * np.outer(e_l, e_l), dtype=np.float64
    )


class EgoMotionFilter:
    """Per-track ego-frame filters for one camera; feed it in time order."""

    def __init__(self, config: MotionConfig | None = None) -> None:
        self.config = config or MotionConfig()
        self._filters: dict[int, tuple[KinematicKalman, KinematicKalman, int]] = {}

    def __contains__(self, track_id: int) -> bool:
        return track_id in self._filters

    def update(
        self, track_id: int, estimate: RangeEstimate, calib: Calibration, stamp_ns: int
    ) -> ObjectMotion:
        """Fuse one track's range estimate taken at ``stamp_ns`` and return its motion."""
        cfg = self.config
        z = np.array(estimate.position_m[:2], dtype=np.float64)
        cov = measurement_cov(estimate, calib, cfg)
        entry = self._filters.get(track_id)
        if entry is None or (stamp_ns - entry[2]) * 1e-9 > cfg.max_age_s:
            std = np.sqrt(np.diag(cov))
            kf = KinematicKalman(z, position_std=std, velocity_std=cfg.initial_velocity_std_mps)
            lon = KinematicKalman(z[:1], position_std=std[0],
                                  velocity_std=cfg.initial_velocity_std_mps,
                                  accel_std=cfg.initial_accel_std_mps2, order=3)
        else:
            kf, lon, last_ns = entry
            dt_s = max(0.0, (stamp_ns - last_ns) * 1e-9)
            kf.predict(dt_s, cfg.accel_std_mps2)
            kf.update(z, meas_cov=cov)
            lon.predict(dt_s, cfg.jerk_std_mps3)
            lon.update(z[:1], meas_cov=cov[:1, :1])
        self._filters[track_id] = (kf, lon, max(stamp_ns, entry[2]) if entry else stamp_ns)
        pos, vel, acc = kf.position, kf.velocity, float(lon.acceleration[0])
        if abs(acc) < cfg.accel_significance * math.sqrt(float(lon.P[2, 2])):
            acc = 0.0
        near = pos + (np.array(estimate.contact_m) - z)
        rng = float(math.hypot(near[0], near[1]))
        rate = float(near @ vel) / rng if rng > 1e-6 else 0.0
        return ObjectMotion(
            track_id=track_id,
            position_m=(float(pos[0]), float(pos[1])),
            velocity_mps=(float(vel[0]), float(vel[1])),
            accel_mps2=(acc, 0.0),
            range_m=rng,
            range_rate_mps=rate,
            ttc_s=time_to_collision(near, vel),
        )

    def prune(self, stamp_ns: int, keep: set[int] | None = None) -> None:
        """Drop filters idle for longer than ``max_age_s`` at ``stamp_ns`` (or not in ``keep``)."""
        limit_ns = int(self.config.max_age_s * 1e9)
        self._filters = {
            tid: entry
            for tid, entry in self._filters.items()
            if stamp_ns - entry[2] <= limit_ns and (keep is None or tid in keep)
        }
