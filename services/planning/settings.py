"""Settings of the planning service and its command gate (`ROADSTREAM_PLANNING_*`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PlanningSettings(BaseSettings):
    """Planning rate, clock and input matching."""

    model_config = SettingsConfigDict(env_prefix="ROADSTREAM_PLANNING_", extra="forbid")

    clock: Literal["wall", "source"] = Field(
        default="wall", description="wall: commands at a fixed rate by the wall clock; source: "
        "one command per perception result, timed by the inputs' stamps (lockstep replay).")
    primary_camera: str = Field(default="front", description="Camera whose frames trigger plans.")
    blind_lane_changes: bool = Field(
        default=True, description="Change lanes whenever the planner finds it best, although "
        "forward cameras cannot see a car coming up from behind in the next lane. false: "
        "change lanes only to evade, when no plan in the lane is safe (safer in traffic from "
        "behind; in the scenario library it costs cpnc_40kph a collision, docs/benchmarks.md).")
    timeout_periods: float = Field(default=4.0, ge=1.0, le=50.0,
                                   description="An input is stale after this many expected "
                                   "periods (registry rate) [-].")
    perception_rate_hz: float | None = Field(
        default=None, gt=0, le=240, description="Expected rate of perception.objects per camera, "
        "when the camera runs slower than the registry's 20 Hz (the perception timeout is "
        "timeout_periods of it); None = the registry rate [Hz].")
