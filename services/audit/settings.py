"""Settings of the audit service and CLI (`ROADSTREAM_AUDIT_*`); CLI flags override them."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.settings import SettingsError, invalid_setting_line


class AuditSettings(BaseSettings):
    """Where the audit trail is kept and how hard to try when the database is busy."""

    model_config = SettingsConfigDict(env_prefix="ROADSTREAM_AUDIT_", extra="forbid")

    url: str = Field(default="sqlite:///runs/audit.db", min_length=1,
                     description="sqlite:///PATH (relative), sqlite:////PATH (absolute), a file "
                                 "path, or postgresql://USER:PASSWORD@HOST:PORT/DB.")
    busy_timeout_s: float = Field(default=30.0, gt=0, le=600,
                                  description="Wait this long for the database write lock or a "
                                              "PostgreSQL connection [s].")
    retry_backoff_s: float = Field(default=1.0, ge=0, le=60,
                                   description="Pause before an event whose write failed on an "
                                               "unavailable database is delivered again [s].")


def load_audit_settings(**overrides: Any) -> AuditSettings:
    """AuditSettings from `ROADSTREAM_AUDIT_*`, then the non-None overrides (CLI flags).

    Raises SettingsError with one line naming the variable, like the shared settings do.
    """
    try:
        return AuditSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        # the URL may carry a database password
        raise SettingsError(invalid_setting_line(exc, "ROADSTREAM_AUDIT_", frozenset({"url"}))) from None
