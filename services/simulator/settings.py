"""Settings of the simulator service (`ROADSTREAM_SIM_*`); the CLI flags override them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimulatorSettings(BaseSettings):
    """How a scenario is streamed."""

    model_config = SettingsConfigDict(env_prefix="ROADSTREAM_SIM_", extra="forbid")

    scenario: str = Field(default="", description="Scenario name or file; empty = the default.")
    loop: Literal["open", "closed"] = Field(
        default="open", description="open: scripted ego; closed: the ego obeys vehicle.control.")
    clock: Literal["realtime", "lockstep"] = Field(
        default="realtime", description="realtime: paced to the wall clock; lockstep: frame N+1 "
        "only after the control for frame N (or the timeout).")
    speed: float = Field(default=1.0, gt=0, le=100, description="Realtime speed factor.")
    vehicles: int = Field(default=1, ge=1, le=64, description="Independent ego vehicles.")
    seed: int | None = Field(default=None, description="Override the scenario's seed.")
    duration_s: float | None = Field(default=None, gt=0, description="Override the duration [s].")
    camera_rate_hz: float | None = Field(
        default=None, gt=0, le=240, description="Render each camera at most this often; the "
        "world, vehicle.state and control still run at the scenario's rate. None = the "
        "scenario's camera rates [Hz].")
    max_lag_ms: float | None = Field(
        default=200.0, gt=0, description="Real time at speed ≤ 1: while the loop is more than "
        "this behind the wall clock it skips the frames due (counted as frames_skipped) and "
        "catches up; below it, a late tick is caught up without a skip (a skipped frame is a "
        "gap perception and the gate see). None = never skip [ms].")
    jpeg_quality: int = Field(default=85, ge=10, le=100)
    lockstep_timeout_s: float = Field(default=2.0, gt=0, le=60,
                                      description="Wait at most this for a control [s].")
    ground_truth: bool = Field(default=True, description="Publish sim.ground_truth.")
    engage_within_s: float = Field(
        default=2.0, ge=0, le=60, description="Closed loop: until the stack's first `normal` "
        "command, the scenario's own driver holds the route, as a test driver does until the "
        "system under test is engaged; after this long the stack's commands apply whatever "
        "they are (the fallback stop when there are none). 0 = from the first tick [s].")
