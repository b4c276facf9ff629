"""HMAC-SHA256 signatures of `vehicle.control` commands.

A signed command carries three headers (UTF-8 strings):

    sig-key-id   which key signed it (keys rotate; the vehicle holds the same key by id)
    sig-counter  a per-vehicle counter that increases by one per command (decimal)
    sig-mac      hex HMAC-SHA256(key, DOMAIN + key_id + "\\n" + counter + "\\n" + value),
                 DOMAIN = b"roadstream-control-v1\\n"

where `value` is the exact Kafka value bytes (the JSON command). Any language can verify it:
see docs/vehicle-client.md.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.messages.registry import CONTROL_SIGNATURE_HEADERS

DOMAIN = b"roadstream-control-v1\n"
KEY_ID_HEADER, COUNTER_HEADER, MAC_HEADER = CONTROL_SIGNATURE_HEADERS


class SignatureError(ValueError):
    """A command whose signature headers are missing, malformed or wrong."""


def mac(key: bytes, key_id: str, counter: int, value: bytes) -> str:
    """The hex MAC of one command."""
    message = DOMAIN + key_id.encode() + b"\n" + str(counter).encode() + b"\n" + value
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign(key: bytes, key_id: str, counter: int, value: bytes) -> dict[str, str]:
    """Signature headers for a command value."""
    if counter < 0:
        raise ValueError("counter must be >= 0")
    return {KEY_ID_HEADER: key_id, COUNTER_HEADER: str(counter),
            MAC_HEADER: mac(key, key_id, counter, value)}


@dataclass(frozen=True)
class Signature:
    """The verified signature of a command."""

    key_id: str
    counter: int


def verify(keys: Mapping[str, bytes], headers: Iterable[tuple[str, bytes]], value: bytes) -> Signature:
    """Check a command's signature against the known keys; SignatureError says what is wrong."""
    found = {k: v for k, v in headers if k in CONTROL_SIGNATURE_HEADERS}
    missing = [h for h in CONTROL_SIGNATURE_HEADERS if h not in found]
    if missing:
        raise SignatureError(f"unsigned command: header {missing[0]!r} is missing")
    try:
        key_id = found[KEY_ID_HEADER].decode()
        counter = int(found[COUNTER_HEADER].decode())
        given = found[MAC_HEADER].decode()
    except (UnicodeDecodeError, ValueError) as exc:
        raise SignatureError(f"malformed signature header: {exc}") from exc
    key = keys.get(key_id)
    if key is None:
        raise SignatureError(f"unknown key id {key_id!r}")
    if not hmac.compare_digest(given, mac(key, key_id, counter, value)):
        raise SignatureError(f"MAC mismatch for key {key_id!r}, counter {counter}")
    return Signature(key_id, counter)
