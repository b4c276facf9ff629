"""Batched kinematic-bicycle rollout of every candidate at once.

Speed profiles (T, K) are computed once and broadcast over the lateral paths; each
(path, profile) pair gets a steering sequence from the curvature of its reference lateral
path, clipped to the steering limit; the kinematic bicycle model (rear-axle reference) is
then integrated with cumulative sums over time — one tensor op per quantity for all
(T, P, K) samples, no loop over candidates or time. Integration runs in the road frame R
(:mod:`planning.frames`), midpoint rule; the Frenet coordinates of the footprint centre are
derived afterwards for scoring.

Layout: time leads (T, P, K) so that per-sample operations and reductions over time run
over long contiguous rows of candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from planning.config import PlannerConfig
from planning.frames import road_xy_to_frenet
from planning.sampler import CandidateSet
from planning.types import EgoState, VehicleParams


@dataclass(frozen=True, slots=True)
class SpeedSet:
    """Speed profiles shared by every lateral path; tensors (T, K) unless noted."""

    v_mps: Tensor
    accel_mps2: Tensor
    jerk_mps3: Tensor  # backward difference, the first one from the ego's present accel
    dist_m: Tensor  # path length covered at each sample
    step_m: Tensor  # path length covered from each sample to the next (mean speed · dt)
    is_emergency: Tensor  # (K,) bool

    def row(self, k: int) -> SpeedSet:
        """The single profile ``k`` as a (T, 1) set."""
        sl = slice(k, k + 1)
        return SpeedSet(
            v_mps=self.v_mps[:, sl],
            accel_mps2=self.accel_mps2[:, sl],
            jerk_mps3=self.jerk_mps3[:, sl],
            dist_m=self.dist_m[:, sl],
            step_m=self.step_m[:, sl],
            is_emergency=self.is_emergency[sl],
        )


@dataclass(frozen=True, slots=True)
class Rollout:
    """Rolled-out candidates; geometry tensors are (T, P, K), ``speed`` is (T, K).

    The batch keeps only what scoring needs: the footprint centre (road frame and
    Frenet), its extents along / across the road, the mid-step heading and yaw step, the
    (clipped) path curvature, and per-candidate (P, K) summaries. The rear-axle pose and
    steering of a chosen candidate come from :func:`rear_axle_path`.
    """

    t_s: Tensor  # (T,)
    speed: SpeedSet
    centre_x_m: Tensor
    centre_y_m: Tensor
    heading_mid_rad: Tensor  # heading over the step that starts at each sample
    yaw_step_rad: Tensor
    curvature_1pm: Tensor  # after the steering-limit clip
    s_m: Tensor
    d_m: Tensor
    half_len_m: Tensor
    half_wid_m: Tensor
    steer_limited: Tensor  # (P, K) bool: the path needed more than the steering limit
    max_steer_rate_radps: Tensor  # (P, K)
    max_lat_accel_mps2: Tensor  # (P, K), absolute value
    mean_sq_lat_accel: Tensor  # (P, K) [m²/s⁴]

    def select(self, p: int, k: int) -> Rollout:
        """Candidate (p, k) as a single-candidate rollout, geometry (T, 1, 1)."""
        ps, ks = slice(p, p + 1), slice(k, k + 1)
        return Rollout(
            t_s=self.t_s,
            speed=self.speed.row(k),
            centre_x_m=self.centre_x_m[:, ps, ks],
            centre_y_m=self.centre_y_m[:, ps, ks],
            heading_mid_rad=self.heading_mid_rad[:, ps, ks],
            yaw_step_rad=self.yaw_step_rad[:, ps, ks],
            curvature_1pm=self.curvature_1pm[:, ps, ks],
            s_m=self.s_m[:, ps, ks],
            d_m=self.d_m[:, ps, ks],
            half_len_m=self.half_len_m[:, ps, ks],
            half_wid_m=self.half_wid_m[:, ps, ks],
            steer_limited=self.steer_limited[ps, ks],
            max_steer_rate_radps=self.max_steer_rate_radps[ps, ks],
            max_lat_accel_mps2=self.max_lat_accel_mps2[ps, ks],
            mean_sq_lat_accel=self.mean_sq_lat_accel[ps, ks],
        )


def rear_axle_path(roll: Rollout, vehicle: VehicleParams) -> Tensor:
    """(4, T) rows x, y, yaw, steer of the rear axle of a single-candidate rollout."""
    heading = roll.heading_mid_rad[:, 0, 0]
    off = vehicle.rear_axle_to_centre_m
    return torch.stack(
        [
            roll.centre_x_m[:, 0, 0] - off * torch.cos(heading),
            roll.centre_y_m[:, 0, 0] - off * torch.sin(heading),
            heading - 0.5 * roll.yaw_step_rad[:, 0, 0],
            torch.atan(roll.curvature_1pm[:, 0, 0] * vehicle.wheelbase_m),
        ]
    )


def _clip_accel(ego: EgoState, config: PlannerConfig) -> float:
    lim = config.limits
    return min(max(ego.accel_mps2, -lim.max_decel_mps2), lim.max_accel_mps2)


def speed_profiles(
    ego: EgoState, cands: CandidateSet, config: PlannerConfig, t_s: Tensor
) -> SpeedSet:
    """All speed profiles: reach a speed, stop at a point, emergency braking.

    Reach a speed (cubic): from (v0, a0) to (target, 0 accel) in the given time, constant
    afterwards. Stop at a point (quintic distance): from (0, v0, a0) to (distance, 0, 0)
    in the given time, standing still afterwards. Emergency (last row): decel ramps at
    max jerk to max decel until standstill. Speed never goes below 0 (no reversing; a
    profile that would is clipped and its jerk then rules it out); standing still, a = 0.
    """
    lim = config.limits
    v0, a0, dt = ego.speed_mps, _clip_accel(ego, config), config.dt_s
    nc = cands.n_cruise
    t = t_s[None, :]
    target = cands.target_speed_mps[:nc, None]
    big_t = cands.speed_time_s[:nc, None]
    c3 = (2.0 * (v0 - target) + a0 * big_t) / big_t**3
    c2 = -(a0 + 3.0 * c3 * big_t**2) / (2.0 * big_t)
    tt = torch.minimum(t, big_t)
    v_c = v0 + tt * (a0 + tt * (c2 + tt * c3))
    a_c = torch.where(t >= big_t, 0.0, a0 + tt * (2.0 * c2 + 3.0 * c3 * tt))

    dist = cands.stop_distance_m[nc:-1, None]
    big_t = cands.speed_time_s[nc:-1, None]
    inv = 1.0 / big_t
    q3 = (20.0 * dist * inv - 12.0 * v0 - 3.0 * a0 * big_t) * (0.5 * inv * inv)
    q4 = (-30.0 * dist * inv + 16.0 * v0 + 3.0 * a0 * big_t) * (0.5 * inv**3)
    q5 = (12.0 * dist * inv - 6.0 * v0 - a0 * big_t) * (0.5 * inv**4)
    tt = torch.minimum(t, big_t)
    v_s = v0 + tt * (a0 + tt * (3.0 * q3 + tt * (4.0 * q4 + tt * 5.0 * q5)))
    a_s = torch.where(t >= big_t, 0.0, a0 + tt * (6.0 * q3 + tt * (12.0 * q4 + tt * 20.0 * q5)))
    v = torch.cat([v_c, v_s], dim=0)
    a = torch.cat([a_c, a_s], dim=0)

    a_e = torch.clamp(a0 - lim.max_jerk_mps3 * t_s, min=-lim.max_decel_mps2)[None, :]
    v_e = v0 + torch.cat(
        [a_e.new_zeros(1, 1), torch.cumsum(0.5 * (a_e[:, 1:] + a_e[:, :-1]) * dt, dim=1)], dim=1
    )
    v = torch.cat([v, v_e], dim=0).T  # time-major from here on
    a = torch.cat([a, a_e], dim=0).T
    stopped = v <= 0.0
    v = v.clamp_min(0.0)
    a = torch.where(stopped, 0.0, a)

    prev_a = torch.cat([a.new_full((1, a.shape[1]), a0), a[:-1]], dim=0)
    v_mid = torch.cat([0.5 * (v[1:] + v[:-1]), v[-1:]], dim=0)
    step = v_mid * dt
    is_emergency = torch.zeros(v.shape[1], dtype=torch.bool, device=v.device)
    is_emergency[-1] = True
    return SpeedSet(
        v_mps=v,
        accel_mps2=a,
        jerk_mps3=(a - prev_a) / dt,
        dist_m=torch.cumsum(step, dim=0) - step,
        step_m=step,
        is_emergency=is_emergency,
    )


def lateral_curvature(
    ego: EgoState,
    cands: CandidateSet,
    speed: SpeedSet,
    config: PlannerConfig,
    vehicle: VehicleParams,
) -> Tensor:
    """Curvature [1/m] of each quintic lateral path d(σ) sampled along each profile, (T, P, K).

    Boundary values: d, d', d'' at σ = 0 from the ego's offset, heading and present
    steering (so a path starts at the present steering angle); (target, 0, 0) at σ = S,
    where S is the distance profile k covers in the path's lateral time, so every lateral
    move completes on time whatever the speed. The curvature uses the first-order
    small-slope form d''·(1 − 1.5·d'²): the path is only a steering reference, the rollout
    integrates whatever curvature results, exactly.
    """
    kappa = ego.road_curvature_1pm
    d0 = ego.lateral_offset_m
    dd0 = math.tan(ego.heading_rel_rad)
    k0 = math.tan(ego.steer_rad) / vehicle.wheelbase_m
    ddd0 = (k0 - kappa / (1.0 - kappa * d0)) * (1.0 + dd0 * dd0) ** 1.5

    dt = config.dt_s
    n_t = speed.dist_m.shape[0]
    t_end = (n_t - 1) * dt
    idx = torch.clamp(torch.round(cands.lateral_time_s / dt), max=n_t - 1).to(torch.int64)
    beyond = (cands.lateral_time_s - t_end).clamp_min(0.0)  # extrapolate past the horizon
    length = speed.dist_m[idx] + beyond[:, None] * speed.v_mps[-1][None, :]  # (P, K)
    length = length.clamp_min(config.min_lateral_length_m)

    h = cands.target_d_m[:, None] - d0
    inv = 1.0 / length
    inv2 = inv * inv
    c3 = (20.0 * h * inv - 12.0 * dd0 - 3.0 * ddd0 * length) * (0.5 * inv2)
    c4 = (-30.0 * h * inv + 16.0 * dd0 + 3.0 * ddd0 * length) * (0.5 * inv2 * inv)
    c5 = (12.0 * h * inv - 6.0 * dd0 - ddd0 * length) * (0.5 * inv2 * inv2)
    x = torch.minimum(speed.dist_m[:, None, :], length)  # past S the path holds the target
    # Horner with fused multiply-adds: d1 = d', d2 = d''.
    d1 = torch.addcmul(4.0 * c4, x, 5.0 * c5)
    d1 = torch.addcmul(3.0 * c3, x, d1).mul_(x).add_(ddd0).mul_(x).add_(dd0)
    d2 = torch.addcmul(12.0 * c4, x, 20.0 * c5)
    d2 = torch.addcmul(6.0 * c3, x, d2).mul_(x).add_(ddd0)
    curvature = d2.mul_(d1.square_().mul_(-1.5).add_(1.0))
    if kappa != 0.0:
        d = torch.addcmul(c4, x, c5)
        d = torch.addcmul(c3, x, d).mul_(x).add_(0.5 * ddd0).mul_(x).add_(dd0).mul_(x).add_(d0)
        curvature = curvature.add_(kappa / (1.0 - kappa * d))
    return curvature


def emergency_curvature(
    ego: EgoState, config: PlannerConfig, vehicle: VehicleParams, t_s: Tensor
) -> Tensor:
    """Curvature (T, 1, 1) of the emergency stop: no swerve, the steering moves at its
    maximum rate to the angle that follows the lane (zero on a straight road)."""
    kappa = ego.road_curvature_1pm / (1.0 - ego.road_curvature_1pm * ego.lateral_offset_m)
    keep = math.atan(vehicle.wheelbase_m * kappa)
    max_step = config.limits.max_steer_rate_radps * t_s
    steer = ego.steer_rad + torch.clamp(
        torch.full_like(max_step, keep - ego.steer_rad), min=-max_step, max=max_step
    )
    return (torch.tan(steer) / vehicle.wheelbase_m)[:, None, None]


def integrate(
    ego: EgoState,
    speed: SpeedSet,
    curvature: Tensor,
    config: PlannerConfig,
    vehicle: VehicleParams,
    t_s: Tensor,
) -> Rollout:
    """Integrate the kinematic bicycle for curvature (T, P, K) along profiles (T, K).

    ``curvature`` is clipped in place to the steering limit. Mostly in-place arithmetic:
    the batch is larger than the CPU caches, so every extra temporary costs a trip to
    memory.
    """
    lim = config.limits
    dt = config.dt_s
    wheelbase = vehicle.wheelbase_m
    max_curv = math.tan(lim.max_steer_rad) / wheelbase
    steer_limited = (curvature.amax(dim=0) > max_curv) | (curvature.amin(dim=0) < -max_curv)
    curv = curvature.clamp_(-max_curv, max_curv)
    steer = torch.mul(curv, wheelbase).atan_()
    rate_first = (steer[0] - ego.steer_rad).abs_()
    rate = torch.sub(steer[1:], steer[:-1]).abs_().amax(dim=0)
    max_steer_rate = torch.maximum(rate_first, rate).mul_(1.0 / dt)
    del steer, rate

    lat = curv * speed.v_mps.square()[:, None, :]
    max_lat = torch.maximum(lat.amax(dim=0), lat.amin(dim=0).neg_())
    mean_sq_lat = lat.square_().mean(dim=0)
    del lat

    step = speed.step_m[:, None, :]  # (T, 1, K)
    yaw_step = curv * step  # (T, P, K)
    heading_mid = torch.cumsum(yaw_step, dim=0).sub_(yaw_step, alpha=0.5)
    heading_mid.add_(ego.heading_rel_rad)
    # Rear axle by the midpoint rule, then moved forward to the footprint centre (using
    # the mid-step heading: at most half a step of yaw off).
    off = vehicle.rear_axle_to_centre_m
    trig = torch.cos(heading_mid)
    dist = trig * step
    cx = torch.cumsum(dist, dim=0).sub_(dist).add_(trig, alpha=off)
    torch.sin(heading_mid, out=trig)
    torch.mul(trig, step, out=dist)
    cy = torch.cumsum(dist, dim=0).sub_(dist).add_(trig, alpha=off)
    cy.add_(ego.lateral_offset_m)
    del trig, dist
    kappa = ego.road_curvature_1pm
    s, d = road_xy_to_frenet(cx, cy, kappa)
    # Footprint extents along / across the road, bounded with |cos ψ| ≤ 1 and
    # |sin ψ| ≤ |ψ| (conservative by ≤ 1 cm at 0.1 rad; no trigonometry on the batch).
    abs_psi = heading_mid.abs() if kappa == 0.0 else torch.sub(heading_mid, s, alpha=kappa).abs_()
    half_wid = torch.mul(abs_psi, 0.5 * vehicle.length_m).add_(0.5 * vehicle.width_m)
    half_len = abs_psi.mul_(0.5 * vehicle.width_m).add_(0.5 * vehicle.length_m)
    return Rollout(
        t_s=t_s,
        speed=speed,
        centre_x_m=cx,
        centre_y_m=cy,
        heading_mid_rad=heading_mid,
        yaw_step_rad=yaw_step,
        curvature_1pm=curv,
        s_m=s,
        d_m=d,
        half_len_m=half_len,
        half_wid_m=half_wid,
        steer_limited=steer_limited,
        max_steer_rate_radps=max_steer_rate,
        max_lat_accel_mps2=max_lat,
        mean_sq_lat_accel=mean_sq_lat,
    )
