"""The sampling planner: sample → roll out → score → choose, in one batched pass.

Frame: candidates are rolled out in a road-aligned frame (origin at the ego's foot point on
its lane's centre line, x along the lane) and scored in the Frenet frame of that centre line
(:mod:`planning.frames`); the chosen trajectory is returned in the ego frame at the planning
instant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from planning.config import PlannerConfig
from planning.cost import Workspace, evaluate, min_clearance_m
from planning.frames import road_to_ego_xy
from planning.obstacles import ObstacleTensors, predict_obstacles
from planning.rollout import (
    Rollout,
    SpeedSet,
    emergency_curvature,
    integrate,
    lateral_curvature,
    rear_axle_path,
    speed_profiles,
)
from planning.sampler import CandidateSet, sample_candidates
from planning.types import (
    Behaviour,
    EgoState,
    Obstacle,
    PlanResult,
    Trajectory,
    VehicleParams,
)

_STOP_SPEED_MPS = 0.5  # a target below this is a stop
_FOLLOW_SLACK_MPS = 1.0  # slower than the desired speed by more than this, behind a lead


def _in_lane_first(safe: torch.Tensor, cands: CandidateSet) -> torch.Tensor:
    """The safe candidates that stay in the ego's lane, or every safe one when none does.

    With ``PlannerConfig.blind_lane_changes`` False a lane change is the last resort of an
    evasion, never a choice among safe plans. On the device, no sync.
    """
    in_lane = (cands.lane_shift == 0)[:, None].expand(-1, cands.n_speed).reshape(-1)
    kept = safe & in_lane
    return torch.where(kept.any(), kept, safe)


class Planner:
    """Sampling-based trajectory planner.

    ``device`` is where the batch runs ("cpu", "cuda", a ``torch.device``); the caller
    picks it (CUDA when present). Between calls the planner keeps only its configuration
    and a scratch workspace: one instance serves any number of vehicles, one call at a
    time (it is not thread-safe).
    """

    def __init__(
        self,
        config: PlannerConfig | None = None,
        *,
        vehicle: VehicleParams | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.config = config if config is not None else PlannerConfig()
        self.vehicle = vehicle if vehicle is not None else VehicleParams()
        self.device = torch.device(device)
        self.dtype = dtype
        n = self.config.n_steps
        self._t_s = torch.arange(n, device=self.device, dtype=dtype) * self.config.dt_s
        self._workspace = Workspace()

    def plan(self, ego: EgoState, obstacles: Sequence[Obstacle],
             previous_lane: int | None = None) -> PlanResult:
        """Choose a trajectory for ``ego`` among the sampled candidates.

        Obstacles are in the ego frame (see :class:`planning.types.Obstacle`).
        ``previous_lane``: the ``target_lane_index`` of this vehicle's previous plan, if any
        (aiming elsewhere costs ``CostWeights.consistency``). Returns the lowest-cost safe
        candidate (with ``PlannerConfig.blind_lane_changes`` False: the lowest-cost safe one
        that stays in its lane, when there is one), or the emergency stop straight ahead when
        none is safe (``any_safe`` False).
        """
        cfg, veh = self.config, self.vehicle
        with torch.inference_mode():
            cands = sample_candidates(ego, cfg, self.device, self.dtype)
            speed = speed_profiles(ego, cands, cfg, self._t_s)
            curvature = lateral_curvature(ego, cands, speed, cfg, veh)
            roll = integrate(ego, speed, curvature, cfg, veh, self._t_s)
            obs = predict_obstacles(obstacles, ego, self._t_s, cfg, veh)
            ev = evaluate(roll, cands, obs, ego, cfg, self._workspace, previous_lane)
            safe = ev.safe if cfg.blind_lane_changes else _in_lane_first(ev.safe, cands)
            masked = torch.where(safe, ev.total, math.inf)
            # One device → host transfer for the choice.
            idx, n_safe = (int(v) for v in torch.stack([masked.argmin(), safe.sum()]).tolist())
            if n_safe == 0:
                return self._fallback(ego, cands, speed, obs)
            p, k = cands.split(idx)
            chosen = roll.select(p, k)
            behaviour = self._behaviour(
                ego, obs, k == cands.emergency_k, int(cands.lane_shift[p]),
                float(cands.target_speed_mps[k]), float(cands.target_d_m[p]),
                float(speed.v_mps[0, k]), float(speed.v_mps[-1, k]),
            )
            return self._result(
                ego, chosen, {key: t[idx] for key, t in ev.terms.items()}, ev.total[idx],
                behaviour, cands, n_safe, int(cands.lane_shift[p]), obs,
            )

    def _fallback(
        self, ego: EgoState, cands: CandidateSet, speed: SpeedSet, obs: ObstacleTensors
    ) -> PlanResult:
        """The emergency stop straight ahead, scored like any candidate for the report."""
        cfg, veh = self.config, self.vehicle
        one = speed.row(cands.emergency_k)
        curvature = emergency_curvature(ego, cfg, veh, self._t_s)
        roll = integrate(ego, one, curvature, cfg, veh, self._t_s)
        single = CandidateSet(
            lane_shift=cands.lane_shift[:1] * 0,
            target_d_m=torch.full_like(cands.target_d_m[:1], ego.lateral_offset_m),
            lateral_time_s=cands.lateral_time_s[:1],
            target_speed_mps=cands.target_speed_mps[-1:],
            speed_time_s=cands.speed_time_s[-1:],
            stop_distance_m=cands.stop_distance_m[-1:],
            n_cruise=0,
        )
        ev = evaluate(roll, single, obs, ego, cfg)
        return self._result(
            ego, roll, {key: t[0] for key, t in ev.terms.items()}, ev.total[0],
            Behaviour.EMERGENCY_BRAKE, cands, 0, 0, obs,
        )

    def _result(
        self,
        ego: EgoState,
        chosen: Rollout,
        terms_t: dict[str, torch.Tensor],
        total_t: torch.Tensor,
        behaviour: Behaviour,
        cands: CandidateSet,
        n_safe: int,
        shift: int,
        obs: ObstacleTensors,
    ) -> PlanResult:
        """Package a single-candidate rollout (P = K = 1) as the planner's answer."""
        sp = chosen.speed
        rows = torch.cat(
            [rear_axle_path(chosen, self.vehicle), sp.v_mps.T, sp.accel_mps2.T], dim=0
        )
        x_r, y_r, yaw_r, steer, v, a = rows.double().cpu().numpy()
        names = list(terms_t)
        values = torch.stack([terms_t[k] for k in names] + [total_t]).double().cpu().numpy()
        terms = {k: float(values[i]) for i, k in enumerate(names)}
        terms["total"] = float(values[-1])
        x_e, y_e = road_to_ego_xy(x_r, y_r, ego.lateral_offset_m, ego.heading_rel_rad)
        trajectory = Trajectory(
            t_s=self._t_s.double().cpu().numpy(),
            x_m=x_e,
            y_m=y_e,
            yaw_rad=yaw_r - ego.heading_rel_rad,
            v_mps=v,
            accel_mps2=a,
            steer_rad=steer,
        )
        lane = ego.lane_index + shift
        return PlanResult(
            trajectory=trajectory,
            behaviour=behaviour,
            cost_terms=terms,
            any_safe=n_safe > 0,
            n_candidates=cands.n,
            n_safe=n_safe,
            target_lane_index=min(max(lane, 0), max(ego.n_lanes - 1, 0)),
            min_clearance_m=min_clearance_m(chosen, obs),
        )

    def _behaviour(
        self,
        ego: EgoState,
        obs: ObstacleTensors,
        emergency: bool,
        shift: int,
        target_v: float,
        target_d: float,
        v_start: float,
        v_end: float,
    ) -> Behaviour:
        if emergency:
            return Behaviour.EMERGENCY_BRAKE
        if shift > 0:
            return Behaviour.LANE_CHANGE_LEFT
        if shift < 0:
            return Behaviour.LANE_CHANGE_RIGHT
        if target_v < _STOP_SPEED_MPS or (v_end < _STOP_SPEED_MPS and v_end < v_start):
            return Behaviour.STOP
        v_des = ego.desired_speed_mps(self.config.limits.max_speed_mps)
        if obs.m > 0 and target_v < v_des - _FOLLOW_SLACK_MPS:
            s0, right, left = (
                torch.stack([obs.s0_m, obs.right_m[:, 0], obs.left_m[:, 0]]).cpu().numpy()
            )
            look_m = max(50.0, 4.0 * ego.speed_mps + 10.0)
            half_w = 0.5 * self.vehicle.width_m
            lead = (
                (s0 > 0.0)
                & (s0 < look_m)
                & (right < target_d + half_w)
                & (left > target_d - half_w)
            )  # ignored objects sit far to the side: never a lead
            if bool(lead.any()):
                return Behaviour.FOLLOW
        return Behaviour.CRUISE

