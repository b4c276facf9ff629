"""Base of every payload on the wire: strict pydantic models that carry their schema version."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class MessageError(ValueError):
    """A value or header set that does not match its contract; the message names the input."""


class Payload(BaseModel):
    """A JSON value on a roadstream topic.

    Fields are only ever added (never renamed or re-typed); `schema_version` says which
    revision of the model wrote the value. Unknown fields are ignored on read so that an older
    consumer keeps working when a producer adds a field.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    schema_version: int = Field(default=1, ge=1, description="Revision of this payload's schema.")

    @classmethod
    def decode(cls, raw: bytes, *, source: str = "value") -> Self:
        """Parse JSON bytes into this payload, raising MessageError that names the source."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise MessageError(f"{source}: not a valid {cls.__name__}: {describe(exc)}") from exc

    def encode(self) -> bytes:
        """Serialise to compact JSON bytes (the Kafka value)."""
        return self.model_dump_json(exclude_none=False).encode()


def describe(exc: ValidationError, limit: int = 4) -> str:
    """`field.path: reason; …` for the first `limit` errors of a validation failure."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
             for e in exc.errors()[:limit]]
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
