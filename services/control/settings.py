"""Settings of the command gate and of the vehicle-side client (`ROADSTREAM_CONTROL_*`).

There is no built-in signing key. The keyring comes from configuration:

    ROADSTREAM_CONTROL_KEYS       JSON object {key_id: key}, each key the standard base64
                                  (RFC 4648, padded) of at least 32 random bytes
    ROADSTREAM_CONTROL_KEY_ID     the key the gate signs with (default: the only key)
    ROADSTREAM_CONTROL_VEHICLE_KEY_IDS  JSON {vehicle_id: key_id}: per-vehicle keys

`ROADSTREAM_CONTROL_DEV_KEY=1` instead selects a fixed, published development key: for a
laptop only, it logs a warning whenever it is used. `roadstream run` makes a random key per
run (:meth:`ControlSettings.ephemeral`). A service that needs a key without one stops with
one line (:meth:`ControlSettings.keyring` raises SettingsError).
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any, Final, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.control.client import VerifierPolicy

# the keyring format is shared with the events keyring: defined once, in signing
from services.control.signing import MIN_KEY_BYTES, Signer, keyring_json, parse_keyring
from services.settings import SettingsError, invalid_setting_line

log = logging.getLogger(__name__)

ENV_PREFIX: Final = "ROADSTREAM_CONTROL_"
#: The development key: published here and in the docs, so it protects nothing.
DEV_KEY_ID: Final = "dev"
DEV_KEY: Final = b"roadstream-dev-key-not-a-secret!"
NO_KEY_LINE: Final = (
    "no control signing key: set ROADSTREAM_CONTROL_KEYS to a JSON keyring {key_id: base64 key} "
    "(docs/vehicle-client.md), or ROADSTREAM_CONTROL_DEV_KEY=1 on a development machine")


class ControlSettings(BaseSettings):
    """The signing keyring, command validity and rate (gate) and what a vehicle tolerates."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    keys: SecretStr | None = Field(
        default=None, description="JSON keyring {key_id: key}, each key the standard base64 "
                                  f"of at least {MIN_KEY_BYTES} random bytes.")
    key_id: str | None = Field(
        default=None, description="Id of the key the gate signs with; default: the only key "
                                  "of the keyring.")
    vehicle_key_ids: dict[str, str] = Field(
        default_factory=dict, description="Per-vehicle keys: JSON {vehicle_id: key_id}; other "
                                          "vehicles are signed with key_id.")
    dev_key: bool = Field(
        default=False, description="Use the published development key (never in production; "
                                   "logs a warning).")
    rate_hz: float = Field(default=20.0, gt=0, le=200, description="Command rate [Hz].")
    valid_for_ms: float = Field(default=200.0, gt=0, le=10_000,
                                description="valid_until = stamp + this [ms].")
    max_window_ms: float = Field(
        default=1000.0, gt=0, le=10_000,
        description="Vehicle side: reject a command whose valid_until - stamp exceeds this [ms].")
    require_wall_clock: bool = Field(
        default=False, description="Vehicle side: reject commands on the source clock, whose "
                                   "expiry a vehicle cannot check (lockstep runs send those).")

    @field_validator("keys")
    @classmethod
    def _check_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_keyring(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _check_choice(self) -> Self:
        if self.dev_key and self.keys is not None:
            raise ValueError("set ROADSTREAM_CONTROL_KEYS or ROADSTREAM_CONTROL_DEV_KEY, not both")
        if self.valid_for_ms > self.max_window_ms:
            raise ValueError(f"valid_for_ms={self.valid_for_ms:g} exceeds max_window_ms="
                             f"{self.max_window_ms:g}: vehicles would reject every command")
        if self.keys is None and not self.dev_key:
            return self  # checked when a key is needed: stack settings need none
        ring = self._ring()
        if self.key_id is None and len(ring) > 1:
            raise ValueError("ROADSTREAM_CONTROL_KEY_ID must name the signing key of a keyring "
                             "with several keys")
        for kid in (self.signing_key_id(), *self.vehicle_key_ids.values()):
            if kid not in ring:
                raise ValueError(f"key id {kid!r} is not in the keyring ({', '.join(sorted(ring))})")
        return self

    @classmethod
    def ephemeral(cls, **overrides: Any) -> ControlSettings:
        """Settings with a random key used by one run only (`roadstream run`)."""
        key_id = f"run-{secrets.token_hex(4)}"
        keys = keyring_json({key_id: secrets.token_bytes(MIN_KEY_BYTES)})
        return cls(**{**overrides, "keys": SecretStr(keys), "key_id": key_id, "dev_key": False})

    @property
    def uses_dev_key(self) -> bool:
        """True when the published development key signs (an event-worthy fact at start)."""
        return self.dev_key

    def keyring(self) -> dict[str, bytes]:
        """Key id → key; SettingsError (one line) when none is configured."""
        if self.dev_key:
            log.warning("control commands use the published development key "
                        "(ROADSTREAM_CONTROL_DEV_KEY=1): anyone can forge them")
        return self._ring()

    def _ring(self) -> dict[str, bytes]:
        if self.dev_key:
            return {DEV_KEY_ID: DEV_KEY}
        if self.keys is None:
            raise SettingsError(NO_KEY_LINE)
        return parse_keyring(self.keys.get_secret_value())

    def signing_key_id(self) -> str:
        """The key id the gate signs with."""
        if self.key_id is not None:
            return self.key_id
        ring = self._ring()
        if len(ring) != 1:
            raise SettingsError("ROADSTREAM_CONTROL_KEY_ID must name the signing key")
        return next(iter(ring))

    def signer(self, *, epoch: int | None = None) -> Signer:
        """The gate's signer: a new epoch (unless given), the configured keys."""
        return Signer(self.keyring(), self.signing_key_id(), epoch=epoch,
                      vehicle_key_ids=self.vehicle_key_ids)

    def policy(self) -> VerifierPolicy:
        """What a vehicle verifying with these settings tolerates (bounds: the default)."""
        return VerifierPolicy(max_window_ns=round(self.max_window_ms * 1e6),
                              require_wall_clock=self.require_wall_clock)

    def environment(self) -> dict[str, str]:
        """These settings as `ROADSTREAM_CONTROL_*` variables, keys included, for a child process."""
        env = {ENV_PREFIX + "RATE_HZ": repr(self.rate_hz),
               ENV_PREFIX + "VALID_FOR_MS": repr(self.valid_for_ms),
               ENV_PREFIX + "MAX_WINDOW_MS": repr(self.max_window_ms),
               ENV_PREFIX + "REQUIRE_WALL_CLOCK": str(self.require_wall_clock).lower(),
               ENV_PREFIX + "DEV_KEY": str(self.dev_key).lower()}
        if self.keys is not None:
            env[ENV_PREFIX + "KEYS"] = self.keys.get_secret_value()
        if self.key_id is not None:
            env[ENV_PREFIX + "KEY_ID"] = self.key_id
        if self.vehicle_key_ids:
            env[ENV_PREFIX + "VEHICLE_KEY_IDS"] = json.dumps(self.vehicle_key_ids)
        return env


def load_control_settings(**overrides: Any) -> ControlSettings:
    """ControlSettings from `ROADSTREAM_CONTROL_*` and the overrides; SettingsError (one line
    naming the variable, never a key) when a value is invalid."""
    try:
        return ControlSettings(**overrides)
    except ValidationError as exc:
        raise SettingsError(invalid_setting_line(exc, ENV_PREFIX, frozenset({"keys"}))) from None
