"""Settings of the audit service and CLI (`ROADSTREAM_AUDIT_*`); CLI flags override them.

There is no built-in audit key. It comes from `key` or `key_file`; with neither, a SQLite
trail keeps it in `<database>.key` beside the database (audit.db → audit.key), generated with
mode 0600 when the trail is created (services/audit/trail.py). The anchor file defaults to
`<database>.anchors` beside a SQLite database; a PostgreSQL trail must name both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.settings import SettingsError, invalid_setting_line

#: Shortest audit key accepted [characters]; a generated key has 64 (32 random bytes, hex).
MIN_KEY_CHARS = 32


class AuditSettings(BaseSettings):
    """Where the audit trail, its key and its anchors are kept, and how hard to try."""

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
    key: SecretStr | None = Field(
        default=None, min_length=MIN_KEY_CHARS,
        description="The audit HMAC key itself (prefer key_file, which keeps it out of the "
                    "environment).")
    key_file: Path | None = Field(
        default=None, description="File whose first line is the audit HMAC key. Default: "
                                  "<database>.key beside a SQLite database.")
    anchor_file: Path | None = Field(
        default=None, description="Append-only file of signed chain heads; keep it where the "
                                  "database's users cannot write. Default: <database>.anchors "
                                  "beside a SQLite database.")
    anchor_every_rows: int = Field(default=100, ge=1, le=1_000_000,
                                   description="Anchor the head after this many new rows.")
    anchor_every_s: float = Field(default=10.0, gt=0, le=86_400,
                                  description="Anchor the head when it moved and this long has "
                                              "passed since the last anchor [s].")

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        if self.key is not None and self.key_file is not None:
            raise ValueError("set ROADSTREAM_AUDIT_KEY or ROADSTREAM_AUDIT_KEY_FILE, not both")
        return self


def load_audit_settings(**overrides: Any) -> AuditSettings:
    """AuditSettings from `ROADSTREAM_AUDIT_*`, then the non-None overrides (CLI flags).

    Raises SettingsError with one line naming the variable, like the shared settings do.
    """
    try:
        return AuditSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        # the URL may carry a database password, and the key is a secret
        raise SettingsError(invalid_setting_line(exc, "ROADSTREAM_AUDIT_",
                                                 frozenset({"url", "key"}))) from None
