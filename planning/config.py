"""Planner configuration: sampling grid, horizon, prediction uncertainty and cost weights."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from common.classes import ObjectClass
from planning.limits import CommandLimits


@dataclass(frozen=True, slots=True)
class CostWeights:
    """Weights of the soft cost terms; each term is normalised to be O(1) before weighting."""

    progress: float = 1.0  # mean squared shortfall from the desired speed
    distance: float = 2.0  # squared shortfall from the reachable distance (see cost.py)
    accel: float = 0.2
    jerk: float = 0.05
    lat_accel: float = 0.3
    lane_offset: float = 0.3  # final distance from a lane centre
    lane_change: float = 0.25  # per lane changed
    proximity: float = 2.0  # entering the headway / lateral comfort zone of an object
    speed_limit: float = 5.0
    # Aiming at another lane than the previous plan did: without it two near-equal choices
    # (swerve from a pedestrian at the kerb, or not) alternate every cycle and the ego weaves,
    # which also swings every object across the camera frame.
    consistency: float = 0.3


@dataclass(frozen=True, slots=True)
class PlannerConfig:
    """Everything the sampling planner needs besides the inputs (defaults: 1692 candidates).

    Candidates = lateral paths [3 lanes (right, current, left) × ``lane_offsets_m`` ×
    ``lateral_times_s``] × speed profiles [``n_target_speeds`` × ``speed_times_s``
    (reach a speed) + ``stop_distances_m`` × ``stop_times_s`` (stop at a point) + one
    emergency braking]. Lanes that do not exist are still sampled (fixed tensor shapes,
    constant run time) and rejected by the road-bounds check.
    """

    dt_s: float = 0.1
    horizon_s: float = 5.0
    lane_offsets_m: tuple[float, ...] = (-0.5, 0.0, 0.5)  # within the target lane
    lateral_times_s: tuple[float, ...] = (2.5, 4.0)  # time to reach the offset
    n_target_speeds: int = 12  # evenly from 0 to the speed limit
    speed_times_s: tuple[float, ...] = (1.0, 2.0, 3.0, 4.5, 6.0, 8.0)  # time to reach it
    stop_distances_m: tuple[float, ...] = (3.0, 6.0, 10.0, 15.0, 22.0, 32.0, 45.0)
    stop_times_s: tuple[float, ...] = (2.5, 4.0, 6.0)  # time to come to rest there
    min_lateral_length_m: float = 6.0  # shortest path over which a lateral move is spread
    limits: CommandLimits = field(default_factory=CommandLimits)
    max_lat_accel_mps2: float = 4.0
    # Prediction uncertainty: the footprint is grown by sigma0 + growth·t, separately along
    # and across the road (lateral growth small, or cars in adjacent lanes would block).
    # Along the road the growth scales with the object's speed between
    # ``growth_speed_floor`` (standing still: it may start to move) and 1 (at
    # ``growth_full_speed_mps`` and above): a parked car does not drift metres away.
    sigma0_lon_m: float = 0.3
    sigma0_lat_m: float = 0.2
    growth_lon_mps: dict[ObjectClass, float] = field(
        default_factory=lambda: {
            ObjectClass.CAR: 0.5,
            ObjectClass.TRUCK: 0.5,
            ObjectClass.PEDESTRIAN: 0.3,
            ObjectClass.CYCLIST: 0.4,
        }
    )
    growth_lat_mps: dict[ObjectClass, float] = field(
        default_factory=lambda: {
            ObjectClass.CAR: 0.1,
            ObjectClass.TRUCK: 0.1,
            ObjectClass.PEDESTRIAN: 0.3,
            ObjectClass.CYCLIST: 0.2,
        }
    )
    growth_speed_floor: float = 0.3
    # A pedestrian or cyclist walking towards the ego's line also claims the strip it will
    # cross in the next ``crossing_margin_s`` (its box is stretched ahead of it along its
    # lateral motion by vd · margin): the ego may pass behind a crossing road user or wait
    # for it, never race it across its path (a post-encroachment time of at least the
    # margin). Without it, a pedestrian stepping in from the kerb leaves a gap ahead of it
    # that a lane change at full speed fits through, and the plan flips between that and
    # passing behind every cycle (Euro NCAP CPNA at 40 km/h: hit while undecided).
    crossing_margin_s: float = 2.0
    # A pedestrian seen moving towards the ego's line at ``crossing_detect_mps`` or more is
    # predicted to go on at a walking pace at least: one that has just stepped off the kerb
    # is still speeding up, and its tracked speed lags behind (a constant-velocity prediction
    # at half the speed draws a gap in front of it that is not there). The threshold sits
    # above the tracker's noise for pedestrians standing still (99th percentile 0.2 m/s
    # towards the line in the CPNA runs); the pace is Euro NCAP's adult walking speed.
    crossing_detect_mps: float = 0.5
    crossing_speed_mps: dict[ObjectClass, float] = field(
        default_factory=lambda: {ObjectClass.PEDESTRIAN: 5.0 / 3.6})
    growth_full_speed_mps: float = 5.0
    # Comfort zone around objects (soft): headway gap ahead/behind and a lateral buffer.
    standstill_gap_m: float = 2.0
    headway_s: float = 1.2
    lateral_buffer_m: float = 0.8
    # Terminal check: at the horizon end the ego must still be able to stop behind any
    # object in its corridor, braking at this fraction of max decel (RSS-like).
    terminal_brake_fraction: float = 0.7
    # Reachable distance for the progress term: speed up at this rate to the desired
    # speed, but stop the standstill gap behind the first object in the final corridor.
    progress_accel_mps2: float = 1.5
    # Change lanes whenever the best safe candidate does, although a rig of forward cameras
    # cannot see a car coming up from behind in the next lane (free_cruise_fog and
    # free_cruise_dusk in real time: hit some 5 s in, half-way across the line, by a car at
    # 125 km/h). False: change lanes only to evade, when no candidate that stays in its lane
    # is safe. Not the default: in lockstep over the whole library it cost cpnc_40kph a
    # collision (kept in lane, the ego hits the child it passed by changing lane) and the mean
    # score 78.1 → 70.8 (docs/benchmarks.md). Lane changes are sampled either way (fixed
    # tensor shapes); the rule acts at the choice.
    blind_lane_changes: bool = True
    weights: CostWeights = field(default_factory=CostWeights)

    @property
    def n_steps(self) -> int:
        """Number of time samples including t = 0."""
        return round(self.horizon_s / self.dt_s) + 1

    @property
    def n_candidates(self) -> int:
        """Sampled candidates, the emergency-braking profiles included."""
        return self._n_lateral * (self.n_target_speeds * len(self.speed_times_s) + self._n_fixed)

    @property
    def _n_lateral(self) -> int:
        return 3 * len(self.lane_offsets_m) * len(self.lateral_times_s)

    @property
    def _n_fixed(self) -> int:
        return len(self.stop_distances_m) * len(self.stop_times_s) + 1

    def with_candidate_count(self, n_candidates: int) -> PlannerConfig:
        """Same config with ``n_target_speeds`` chosen so the grid is close to ``n_candidates``."""
        n_speeds = round((n_candidates / self._n_lateral - self._n_fixed) / len(self.speed_times_s))
        return replace(self, n_target_speeds=max(2, n_speeds))
