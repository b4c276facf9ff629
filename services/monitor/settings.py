"""Settings of the safety monitor (`ROADSTREAM_MONITOR_*`): thresholds, budgets, references."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.in_path import PATH_HALF_WIDTH_M
from services.messages import TOPICS
from services.settings import SettingsError, invalid_setting_line

ENV_PREFIX = "ROADSTREAM_MONITOR_"

#: Topics the command gate acts on: losing one of them is critical, not a warning.
DEFAULT_CRITICAL_TOPICS = ("camera.frames", "vehicle.state", "perception.objects", "vehicle.control")


def _known_topics(value: tuple[str, ...]) -> tuple[str, ...]:
    known = {t.name for t in TOPICS}
    unknown = [t for t in value if t not in known]
    if unknown:
        raise ValueError(f"unknown topic(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return value


class MonitorSettings(BaseSettings):
    """Thresholds and budgets of every monitor check; defaults suit the 10/20 Hz registry rates."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    # --- the loop
    tick_s: float = Field(default=0.1, gt=0, le=5,
                          description="Period of the check loop that detects silence [s].")
    start_from: Literal["latest", "earliest"] = Field(
        default="latest", description="Where a new monitor group starts reading each topic.")
    clock: Literal["wall", "simulation"] = Field(
        default="wall", description="The clock the data runs on. Either way a message's time "
        "is its data stamp and each run is judged on its own data clock; wall (real time): "
        "stamps are also checked against the wall clock (future stamps, a run silent on every "
        "topic); simulation (lockstep, or a replay at any speed): never against the wall clock.")
    rates_hz: dict[str, float] = Field(
        default_factory=dict, description="Expected rates that differ from the registry's, by "
        "topic (e.g. a camera run at 10 Hz: camera.frames, perception.objects) [Hz].")
    # --- liveness
    stale_periods: float = Field(default=10.0, gt=1,
                                 description="A key is stale after this many expected periods.")
    critical_topics: tuple[str, ...] = Field(
        default=DEFAULT_CRITICAL_TOPICS, description="Topics whose staleness is critical.")
    forget_after_s: float = Field(default=300.0, gt=0,
                                  description="Forget a run (and its keys) that has been silent "
                                  "this long on the wall clock [s].")
    stale_hold_s: float = Field(default=0.5, ge=0, le=60,
                                description="A key behind its run's data clock is stale once it "
                                "stays behind this long on the wall clock [s].")
    alive_after_messages: int = Field(default=5, ge=1, le=1000,
                                      description="A stale key is alive again after this many "
                                      "fresh messages in a row.")
    run_silence_s: float = Field(default=2.0, gt=0, le=600,
                                 description="Wall clock only: a live run with no message on "
                                 "any topic for this long, that did not announce its end, is "
                                 "stale on every topic [s].")
    clock_skew_tolerance_s: float = Field(default=2.0, gt=0, le=3600,
                                          description="A data stamp further than this ahead of "
                                          "the monitor's clock is refused (clock_skew) [s].")
    clock_skew_event_window_s: float = Field(default=60.0, gt=0,
                                             description="At most one clock_skew event per "
                                             "topic in this window [s].")
    # --- frequency
    frequency_window: int = Field(default=100, ge=2, le=10_000,
                                  description="Messages in the rate average.")
    frequency_min_messages: int = Field(default=20, ge=2,
                                        description="Fewer messages than this: no verdict yet.")
    frequency_min_ratio: float = Field(default=0.9, gt=0, le=1,
                                       description="Low below this fraction of the expected rate.")
    frequency_hysteresis: float = Field(default=0.02, ge=0, le=0.5,
                                        description="OK again at min_ratio + this (no flapping).")
    # --- latency
    latency_budgets_ms: dict[str, float] = Field(
        default_factory=lambda: {"perception": 150.0, "planning": 50.0, "control": 250.0},
        description="Budget per stage [ms]; stages without a budget are not checked.")
    latency_event_window_s: float = Field(default=10.0, gt=0,
                                          description="At most one event per stage and vehicle "
                                          "in this window [s].")
    # --- collision risk
    ttc_warning_s: float = Field(default=3.0, gt=0, description="TTC below this: warning [s].")
    ttc_critical_s: float = Field(default=1.5, gt=0, description="TTC below this: critical [s].")
    risk_path_half_width_m: float = Field(
        default=PATH_HALF_WIDTH_M, gt=0, description="An object is on a collision course when "
        "its predicted centre at its TTC is within this distance of the ego's axis [m].")
    track_forget_s: float = Field(default=2.0, gt=0,
                                  description="Forget a track not seen for this long [s].")
    # --- consumer lag
    lag_interval_s: float = Field(default=5.0, ge=0,
                                  description="Period of the consumer-lag probe [s]; 0 = off.")
    lag_threshold_messages: int = Field(default=100, ge=1,
                                        description="Event when a group lags more on a topic.")
    # --- detection drift
    drift_reference: Path | None = Field(
        default=None, description="JSON reference distribution (scores, counts); none = the "
        "first drift_reference_frames frames.")
    drift_reference_frames: int = Field(default=200, ge=10,
                                        description="Frames in a self-built reference.")
    drift_window_frames: int = Field(default=200, ge=10,
                                     description="Frames in the rolling test window.")
    drift_every_frames: int = Field(default=50, ge=1, description="Test every this many frames.")
    drift_p_value: float = Field(default=0.01, gt=0, lt=1,
                                 description="Drift when a KS p-value is below this.")
    drift_max_scores: int = Field(default=5000, ge=10,
                                  description="Most detection scores kept per sample.")

    @field_validator("critical_topics")
    @classmethod
    def _known_critical(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known_topics(value)

    @field_validator("rates_hz")
    @classmethod
    def _known_rates(cls, value: dict[str, float]) -> dict[str, float]:
        _known_topics(tuple(value))
        bad = [k for k, v in value.items() if v <= 0]
        if bad:
            raise ValueError(f"rates must be > 0 Hz: {', '.join(bad)}")
        return value

    @field_validator("latency_budgets_ms")
    @classmethod
    def _positive_budgets(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if v <= 0]
        if bad:
            raise ValueError(f"budgets must be > 0 ms: {', '.join(bad)}")
        return value

    @field_validator("drift_reference")
    @classmethod
    def _reference_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {str(value)!r} does not exist")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.ttc_critical_s >= self.ttc_warning_s:
            raise ValueError("ttc_critical_s must be below ttc_warning_s")
        if self.frequency_min_messages > self.frequency_window:
            raise ValueError("frequency_min_messages must not exceed frequency_window")
        return self


def load_monitor_settings(**overrides: object) -> MonitorSettings:
    """Read `ROADSTREAM_MONITOR_*` (overrides win); SettingsError with one line when invalid."""
    try:
        return MonitorSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(invalid_setting_line(exc, ENV_PREFIX)) from None
