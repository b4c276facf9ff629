"""Candidate scoring, batched over objects × paths × profiles × time.

Objects come predicted and grown by :mod:`planning.obstacles`.

Hard constraints (a candidate that breaks one is unsafe): footprint overlap with any grown
object box at any sample, leaving the road, breaking accel / jerk / steering / steering
rate / lateral accel limits, and the terminal check (at the horizon end the ego can still
stop behind every object ahead in its corridor). Soft terms are normalised to O(1) and
weighted (``CostWeights``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from planning.config import PlannerConfig
from planning.obstacles import ObstacleTensors
from planning.rollout import Rollout
from planning.sampler import CandidateSet
from planning.types import EgoState

_TOL = 1e-3  # numerical slack on limit checks


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Scores of all candidates, flat (N,) with n = p·K + k."""

    total: Tensor
    safe: Tensor
    collision: Tensor
    off_road: Tensor
    infeasible: Tensor
    terminal_unsafe: Tensor
    terms: dict[str, Tensor]


class Workspace:
    """Reusable scratch tensors for the (objects × candidates × time) gap computation.

    Allocating those ~10 MB tensors on every call costs more than computing them (fresh
    pages); the planner keeps one workspace, so a planner instance is not thread-safe.
    """

    def __init__(self) -> None:
        self._bufs: list[Tensor] = []

    def get(self, m: int, like: Tensor) -> list[Tensor]:
        """Three scratch tensors of shape (m, *like.shape) on like's device and dtype."""
        bufs = self._bufs
        if (
            not bufs
            or bufs[0].shape[0] < m
            or bufs[0].shape[1:] != like.shape
            or bufs[0].device != like.device
            or bufs[0].dtype != like.dtype
        ):
            cap = max(m, 8 if not bufs else int(bufs[0].shape[0]))
            bufs = [like.new_empty((cap, *like.shape)) for _ in range(3)]
            self._bufs = bufs
        return [b[:m] for b in bufs]


@dataclass(frozen=True, slots=True)
class EgoBounds:
    """Edges of the ego footprint along / across the road, each (T, P, K) [m]."""

    rear: Tensor
    front: Tensor
    right: Tensor
    left: Tensor


def ego_bounds(roll: Rollout) -> EgoBounds:
    """Footprint edges of every candidate at every sample."""
    return EgoBounds(
        rear=roll.s_m - roll.half_len_m,
        front=roll.s_m + roll.half_len_m,
        right=roll.d_m - roll.half_wid_m,
        left=roll.d_m + roll.half_wid_m,
    )


def relevant_obstacles(
    ego_box: EgoBounds, roll: Rollout, obs: ObstacleTensors, config: PlannerConfig
) -> ObstacleTensors:
    """Drop objects that no candidate can touch or approach: only a cost saving.

    An object is kept when, at some sample, its grown box comes within the comfort zone
    (or the terminal stopping distance) of the envelope of all candidate footprints;
    objects the ego is not responsible for (behind it in its corridor) are dropped too.
    Everything the scoring would see as a collision, an intrusion or a terminal violation
    is kept, so the choice is unchanged.
    """
    if obs.m == 0:
        return obs
    s_lo = ego_box.rear.amin(dim=(1, 2))  # (T,)
    s_hi = ego_box.front.amax(dim=(1, 2))
    d_lo = ego_box.right.amin(dim=(1, 2))
    d_hi = ego_box.left.amax(dim=(1, 2))
    v_max = float(roll.speed.v_mps.max())
    brake = config.terminal_brake_fraction * config.limits.max_decel_mps2
    reach_s = config.standstill_gap_m + config.headway_s * v_max + v_max * v_max / (2 * brake)
    reach_d = config.lateral_buffer_m
    near = (
        (obs.rear_m < s_hi + reach_s)
        & (obs.front_m > s_lo - reach_s)
        & (obs.right_m < d_hi + reach_d)
        & (obs.left_m > d_lo - reach_d)
    ).any(dim=1)
    return obs.subset(near & ~obs.ignored)


def box_gaps(
    ego_box: EgoBounds,
    obs: ObstacleTensors,
    inv_scale_s: Tensor | None = None,
    inv_scale_d: float = 1.0,
    workspace: Workspace | None = None,
) -> Tensor:
    """Chebyshev gap between the ego footprint and each grown object box, (M, T, P·K).

    The gap along the road is multiplied by ``inv_scale_s`` (T, K) and the one across by
    ``inv_scale_d`` before taking the larger: the result is negative exactly when the boxes
    overlap, whatever the (positive) scales; with the comfort-zone scales it is below 1
    inside the comfort zone. ``ego_box`` is scaled in place (consumed). Layout: the inner
    dimension is the P·K candidates, contiguous for the ego terms and a broadcast scalar
    for the object terms, which vectorises well.
    """
    n_t, n_p, n_k = ego_box.rear.shape
    obj_rear, obj_front = obs.rear_m[:, :, None], obs.front_m[:, :, None]  # (M, T, 1)
    obj_right, obj_left = obs.right_m[:, :, None], obs.left_m[:, :, None]
    rear, front = ego_box.rear.view(n_t, -1), ego_box.front.view(n_t, -1)
    right, left = ego_box.right.view(n_t, -1), ego_box.left.view(n_t, -1)
    if inv_scale_s is None:
        inv_s = torch.ones_like(rear)
    else:
        inv_s = inv_scale_s[:, None, :].expand(n_t, n_p, n_k).reshape(n_t, -1)
        rear.mul_(inv_s)
        front.mul_(inv_s)
    if inv_scale_d != 1.0:
        right.mul_(inv_scale_d)
        left.mul_(inv_scale_d)
        obj_right, obj_left = obj_right * inv_scale_d, obj_left * inv_scale_d
    a, b, c = (workspace if workspace is not None else Workspace()).get(obs.m, rear)
    # Along: max(ego rear − object front, object rear − ego front), scaled.
    torch.addcmul(rear, obj_front, inv_s, value=-1.0, out=a)
    torch.addcmul(front.neg_(), obj_rear, inv_s, out=b)
    torch.maximum(a, b, out=a)
    # Across: max(ego right − object left, object right − ego left), scaled.
    torch.sub(right, obj_left, out=b)
    torch.sub(obj_right, left, out=c)
    torch.maximum(b, c, out=b)
    return torch.maximum(a, b, out=a)


def _reachable_s(ego: EgoState, roll: Rollout, config: PlannerConfig) -> float:
    """Frenet s of the footprint centre if the ego sped up to the desired speed."""
    horizon = float(roll.t_s[-1])
    v0 = max(ego.speed_mps, 0.0)
    v_des = ego.desired_speed_mps(config.limits.max_speed_mps)
    if v0 >= v_des:
        travel = v_des * horizon
    else:
        t_acc = min((v_des - v0) / config.progress_accel_mps2, horizon)
        v_acc = v0 + config.progress_accel_mps2 * t_acc
        travel = 0.5 * (v0 + v_acc) * t_acc + v_des * (horizon - t_acc)
    return float(roll.s_m[0].reshape(-1)[0]) + travel


def _object_terms(
    roll: Rollout,
    ego_box: EgoBounds,
    obs: ObstacleTensors,
    config: PlannerConfig,
    workspace: Workspace | None,
    reach_s: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(collision, comfort-zone intrusion in [0, 1], terminal unsafe, reachable s [m]),
    each (P, K). The reachable s is ``reach_s`` capped a standstill gap behind the first
    object in the candidate's corridor at the horizon end."""
    shape = roll.s_m.shape[1:]
    no = torch.zeros(shape, dtype=torch.bool, device=roll.s_m.device)
    obs = relevant_obstacles(ego_box, roll, obs, config)
    if obs.m == 0:
        return no, roll.s_m.new_zeros(shape), no, roll.s_m.new_full(shape, reach_s)

    # Terminal check at the last sample, (P, K, M): can the ego still stop behind every
    # object ahead in its corridor, both braking (the object from its own speed)?
    rear, right, left = obs.rear_m[:, -1], obs.right_m[:, -1], obs.left_m[:, -1]
    front_end = ego_box.front[-1, :, :, None]
    right_end, left_end = ego_box.right[-1, :, :, None], ego_box.left[-1, :, :, None]
    ahead = obs.s_end_m > roll.s_m[-1, :, :, None]
    in_corridor = (right_end < left) & (right < left_end)
    brake = config.terminal_brake_fraction * config.limits.max_decel_mps2
    v_end = roll.speed.v_mps[-1][:, None]  # (K, 1)
    v_obj = obs.vs_end_mps.clamp_min(0.0)
    needed = (v_end * v_end - v_obj * v_obj) / (2.0 * brake)  # (K, M)
    short = rear - front_end < needed
    blocking = ahead & in_corridor
    terminal = (blocking & short).any(dim=-1)
    hl_end = roll.half_len_m[-1, :, :, None]
    stop_s = torch.where(blocking, rear - hl_end - config.standstill_gap_m, reach_s)
    reachable = stop_s.amin(dim=-1).clamp_max_(reach_s)

    headway = config.standstill_gap_m + config.headway_s * roll.speed.v_mps  # (T, K)
    q = box_gaps(
        ego_box, obs, headway.reciprocal_(), 1.0 / config.lateral_buffer_m, workspace
    )
    # Elementwise min over contiguous slabs (objects, then time): cheap reductions.
    min_q = q.amin(dim=0).amin(dim=0).view(shape)
    collision = min_q < 0.0
    intrusion = min_q.neg_().add_(1.0).clamp_(0.0, 1.0)
    return collision, intrusion, terminal, reachable


def min_clearance_m(roll: Rollout, obs: ObstacleTensors) -> float | None:
    """Smallest gap [m] of a single-candidate rollout to any grown object box."""
    if obs.m == 0 or bool(obs.ignored.all()):
        return None
    return float(box_gaps(ego_bounds(roll), obs).min())


def evaluate(
    roll: Rollout,
    cands: CandidateSet,
    obs: ObstacleTensors,
    ego: EgoState,
    config: PlannerConfig,
    workspace: Workspace | None = None,
    previous_lane: int | None = None,
) -> Evaluation:
    """Hard checks and weighted soft cost of every candidate.

    ``previous_lane``: the lane index the previous plan aimed at; candidates aiming elsewhere
    pay the consistency term (none without it).
    """
    lim = config.limits
    w = config.weights
    sp = roll.speed
    lane_w = ego.lane_width_m

    ego_box = ego_bounds(roll)
    right_edge = -(ego.lane_index + 0.5) * lane_w
    left_edge = (ego.n_lanes - ego.lane_index - 0.5) * lane_w
    off_road = (ego_box.right.amin(dim=0) < right_edge) | (ego_box.left.amax(dim=0) > left_edge)
    reach_s = _reachable_s(ego, roll, config)
    collision, intrusion, terminal, reachable = _object_terms(
        roll, ego_box, obs, config, workspace, reach_s
    )
    s_start = roll.s_m[0]
    shortfall = (reachable - roll.s_m[-1]).clamp_min_(0.0)
    wanted = (reachable - s_start).clamp_min_(5.0)  # short distances: do not blow up

    # Speed-only checks once per profile (K,). The emergency profile is built at the
    # limits on purpose (and releases the brake at standstill): exempt.
    a, j = sp.accel_mps2, sp.jerk_mps3
    speed_bad = (
        (a.amax(dim=0) > lim.max_accel_mps2 + _TOL)
        | (a.amin(dim=0) < -lim.max_decel_mps2 - _TOL)
        | (j.abs().amax(dim=0) > lim.max_jerk_mps3 + _TOL)
    ) & ~sp.is_emergency
    infeasible = (
        speed_bad[None, :]
        | roll.steer_limited
        | (roll.max_steer_rate_radps > lim.max_steer_rate_radps + _TOL)
        | (roll.max_lat_accel_mps2 > config.max_lat_accel_mps2)
    )

    v = sp.v_mps
    v_des = ego.desired_speed_mps(lim.max_speed_mps)
    d_end = roll.d_m[-1]
    lane_err = d_end - torch.round(d_end / lane_w) * lane_w
    zeros = roll.d_m.new_zeros(roll.d_m.shape[1:])  # (P, K): broadcasts the per-axis terms
    terms = {
        "progress": w.progress
        * ((v_des - v).clamp_min(0.0) / max(v_des, 1.0)).square().mean(dim=0),
        "distance": w.distance * (shortfall / wanted).square(),
        "accel": w.accel * (a / 2.0).square().mean(dim=0),
        "jerk": w.jerk * (j / 5.0).square().mean(dim=0),
        "lat_accel": w.lat_accel * roll.mean_sq_lat_accel / 4.0,
        "lane_offset": w.lane_offset * (lane_err / (0.5 * lane_w)).square(),
        "lane_change": w.lane_change * cands.lane_shift.abs().to(v.dtype)[:, None],
        "proximity": w.proximity * intrusion.square(),
        "speed_limit": w.speed_limit
        * (v - ego.speed_limit_mps).clamp_min(0.0).square().mean(dim=0),
        "consistency": w.consistency
        * (cands.lane_shift + ego.lane_index != previous_lane).to(v.dtype)[:, None]
        if previous_lane is not None else zeros,
    }
    flat = {k: (t + zeros).reshape(-1) for k, t in terms.items()}
    total = torch.stack(list(flat.values()), dim=0).sum(dim=0)
    safe = ~(collision | off_road | infeasible | terminal)
    return Evaluation(
        total=total,
        safe=safe.reshape(-1),
        collision=collision.reshape(-1),
        off_road=off_road.reshape(-1),
        infeasible=infeasible.reshape(-1),
        terminal_unsafe=terminal.reshape(-1),
        terms=flat,
    )
