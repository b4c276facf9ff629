"""Candidate sampling: lateral targets × speed targets, as a product grid.

A candidate is a pair (lateral path p, speed profile k):
- lateral paths: lane shift (right / current / left) × offset within the target lane ×
  time to reach it; the path is a quintic in path length (see :mod:`planning.rollout`);
- speed profiles: target speed × time to reach it (cubic speed, i.e. quartic distance, as
  in Werling et al. 2010); stop distance × time to come to rest there (quintic distance,
  Werling's stopping mode); and one emergency-braking profile (hardest braking the limits
  allow), always the last one.
Keeping the two axes separate lets speed-only quantities be computed once per profile and
broadcast over the lateral paths; candidate ``n = p * K + k``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from planning.config import PlannerConfig
from planning.types import EgoState

LANE_SHIFTS = (-1, 0, 1)  # right, current, left (lane_index grows to the left)


@dataclass(frozen=True, slots=True)
class CandidateSet:
    """Grid parameters on the planner's device: lateral axis (P,), speed axis (K,)."""

    lane_shift: Tensor  # (P,) int64: -1 right, 0 current, +1 left
    target_d_m: Tensor  # (P,) target offset from the current lane's centre line (Frenet d)
    lateral_time_s: Tensor  # (P,)
    target_speed_mps: Tensor  # (K,) 0 for stopping and emergency profiles
    speed_time_s: Tensor  # (K,) time to reach the speed / come to rest; 0 for emergency
    stop_distance_m: Tensor  # (K,) > 0 for stop-at-a-point profiles, 0 otherwise
    n_cruise: int  # the first n_cruise profiles reach a speed, then come the stopping ones

    @property
    def n_lateral(self) -> int:
        """P, the number of lateral paths."""
        return int(self.lane_shift.shape[0])

    @property
    def n_speed(self) -> int:
        """K, the number of speed profiles (emergency braking included)."""
        return int(self.target_speed_mps.shape[0])

    @property
    def n(self) -> int:
        """Number of candidates, P·K."""
        return self.n_lateral * self.n_speed

    @property
    def emergency_k(self) -> int:
        """Index of the emergency-braking speed profile."""
        return self.n_speed - 1

    def split(self, index: int) -> tuple[int, int]:
        """(p, k) of flat candidate ``index``."""
        return divmod(index, self.n_speed)


def sample_candidates(
    ego: EgoState, config: PlannerConfig, device: torch.device, dtype: torch.dtype
) -> CandidateSet:
    """The sampling grid for this ego state (one tensor op per axis, no loops)."""
    shifts = torch.tensor(LANE_SHIFTS, device=device, dtype=dtype)
    offsets = torch.tensor(config.lane_offsets_m, device=device, dtype=dtype)
    lat_times = torch.tensor(config.lateral_times_s, device=device, dtype=dtype)
    lateral = torch.cartesian_prod(shifts, offsets, lat_times)

    speed_cap = max(0.0, min(ego.speed_limit_mps, config.limits.max_speed_mps))
    speeds = torch.linspace(0.0, speed_cap, config.n_target_speeds, device=device, dtype=dtype)
    lon_times = torch.tensor(config.speed_times_s, device=device, dtype=dtype)
    cruise = torch.cartesian_prod(speeds, lon_times)  # (speed, time)
    stops = torch.cartesian_prod(
        torch.tensor(config.stop_times_s, device=device, dtype=dtype),
        torch.tensor(config.stop_distances_m, device=device, dtype=dtype),
    )  # (time, distance)
    n_cruise = cruise.shape[0]
    zeros = cruise.new_zeros(stops.shape[0] + 1)
    return CandidateSet(
        lane_shift=lateral[:, 0].round().to(torch.int64),
        target_d_m=lateral[:, 0] * ego.lane_width_m + lateral[:, 1],
        lateral_time_s=lateral[:, 2],
        target_speed_mps=torch.cat([cruise[:, 0], zeros]),
        speed_time_s=torch.cat([cruise[:, 1], stops[:, 0], zeros[:1]]),
        stop_distance_m=torch.cat([cruise.new_zeros(n_cruise), stops[:, 1], zeros[:1]]),
        n_cruise=n_cruise,
    )
