"""Base of every payload on the wire: strict pydantic models that carry their schema version.

Bounds every value of the contract obeys, so that any client language can hold it and a hostile
value is refused at decode rather than deep inside a service:

- integers fit a signed 64-bit integer (`Int64`, `UInt64`);
- strings have a maximum length (`Id`: 128 characters, `Label`, `Text`);
- floats are finite (`allow_inf_nan=False` in every model's config; JSON has no NaN anyway).
"""

from __future__ import annotations

from typing import Annotated, Final, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
ID_MAX_CHARS: Final = 128  # vehicle, camera, run, key and model ids
TEXT_MAX_CHARS: Final = 8192  # free text: error messages, details

#: A signed 64-bit integer.
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
#: A non-negative signed 64-bit integer: counters, sequence numbers, stamps [ns].
UInt64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
#: A non-empty identifier (vehicle, camera, ...).
Id = Annotated[str, Field(min_length=1, max_length=ID_MAX_CHARS)]
#: A short name that may be empty: a run id, a behaviour, a dictionary key.
Label = Annotated[str, Field(max_length=ID_MAX_CHARS)]
#: Free text.
Text = Annotated[str, Field(max_length=TEXT_MAX_CHARS)]

#: The configuration every model of the contract shares: unknown fields are ignored (a newer
#: producer may add some), values never change once built, and floats must be finite.
MODEL_CONFIG: Final = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


class MessageError(ValueError):
    """A value or header set that does not match its contract; the message names the input."""


class Payload(BaseModel):
    """A JSON value on a roadstream topic.

    Fields are only ever added (never renamed or re-typed); `schema_version` says which
    revision of the model wrote the value. Unknown fields are ignored on read so that an older
    consumer keeps working when a producer adds a field.
    """

    model_config = MODEL_CONFIG

    schema_version: int = Field(default=1, ge=1, le=INT64_MAX,
                                description="Revision of this payload's schema.")

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
