"""Settings of the command gate and of the vehicle-side client (`ROADSTREAM_CONTROL_*`)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ControlSettings(BaseSettings):
    """Signing key, command validity and rate."""

    model_config = SettingsConfigDict(env_prefix="ROADSTREAM_CONTROL_", extra="forbid")

    hmac_key: SecretStr = Field(
        default=SecretStr("roadstream-development-key-change-me"),
        description="HMAC-SHA256 key shared with the vehicle; set a real secret in production.")
    key_id: str = Field(default="dev-1", min_length=1, description="Id of the signing key.")
    rate_hz: float = Field(default=20.0, gt=0, le=200, description="Command rate [Hz].")
    valid_for_ms: float = Field(default=200.0, gt=0, le=10_000,
                                description="valid_until = stamp + this [ms].")

    def keys(self) -> dict[str, bytes]:
        """The key ring a vehicle client verifies with."""
        return {self.key_id: self.hmac_key.get_secret_value().encode()}
