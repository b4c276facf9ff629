"""Pure planning: trajectory sampling and scoring, tracking control, command limits, gate.

No Kafka here (services/ wires this to topics). Entry points:
- :class:`planning.planner.Planner` — ``plan(ego, obstacles) -> PlanResult``;
- :class:`planning.controller.TrajectoryController` — ``step(trajectory, ...) -> ControlCommand``
  (``common.control``; the object classes are ``common.classes``);
- :func:`planning.limits.clamp` and :class:`planning.gate.Gate` — the last checks before a
  command is published.
"""

from planning.config import CostWeights, PlannerConfig
from planning.controller import ControllerConfig, TrajectoryController
from planning.gate import Gate, GateConfig, GateEvent, GateMode, GateOutput
from planning.limits import CLAMP_FIELDS, CommandLimits, clamp
from planning.planner import Planner
from planning.types import (
    Behaviour,
    EgoState,
    Obstacle,
    PlanResult,
    Trajectory,
    VehicleParams,
)

__all__ = [
    "CLAMP_FIELDS",
    "Behaviour",
    "CommandLimits",
    "ControllerConfig",
    "CostWeights",
    "EgoState",
    "Gate",
    "GateConfig",
    "GateEvent",
    "GateMode",
    "GateOutput",
    "Obstacle",
    "PlanResult",
    "Planner",
    "PlannerConfig",
    "Trajectory",
    "TrajectoryController",
    "VehicleParams",
    "clamp",
]
