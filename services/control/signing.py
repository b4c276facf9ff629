"""HMAC-SHA256 signatures of `vehicle.control` commands, with a SecOC-style freshness value.

The same layout signs `safety.events` (services/runtime/event_signing.py) under a domain of
its own, so a MAC made for one stream never verifies on the other: each stream names its
`domain` (the first line of the MAC input); the control domain is the default.

A signed command carries four headers, looked up by name (ASCII text):

    sig-key-id   the key that signed it: 1-64 of [A-Za-z0-9._-] (keys rotate; a vehicle
                 holds a keyring, key id -> key)
    sig-epoch    the gate's start: decimal, canonical; changes with every gate start and
                 only grows (the wall clock in ms at start)
    sig-counter  per vehicle and epoch, 1, 2, 3, ...: decimal, canonical
    sig-mac      lowercase hex HMAC-SHA256(key, mac_input(...)), 64 characters

Canonical decimal: 1 to 19 ASCII digits, no sign, no space, no leading zero unless the
number is 0, at most 2^63 - 1. The MAC input is defined once, in :func:`mac_input`:

    "roadstream-control-v2\\n" key_id "\\n" epoch "\\n" counter "\\n" value

(`safety.events`: "roadstream-event-v1\\n" in place of the first line.)

where epoch and counter are their canonical decimal text and `value` is the exact Kafka
value bytes. The layout is unambiguous: a key id holds no newline, epoch and counter are
digits only, and the value is everything after the fourth newline.

(epoch, counter) is the freshness value: a vehicle accepts a command only when the pair is
strictly greater (epoch first) than the last one it accepted. A restarted gate has a larger
epoch and counts from 1 again; a replay from an earlier epoch stays below. See
docs/vehicle-client.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from services.messages.base import INT64_MAX
from services.messages.payloads import VehicleControl
from services.messages.registry import CONTROL_SIGNATURE_HEADERS

#: The first line of a control command's MAC input.
DOMAIN: Final = b"roadstream-control-v2\n"
#: The domain line of a stream: "roadstream-<name>-v<n>" and a newline.
_DOMAIN_BYTES = re.compile(rb"roadstream-[a-z]+-v[0-9]+\n")
#: Shortest key accepted [bytes]: HMAC-SHA256's own output size.
MIN_KEY_BYTES: Final = 32
KEY_ID_HEADER, EPOCH_HEADER, COUNTER_HEADER, MAC_HEADER = CONTROL_SIGNATURE_HEADERS
#: A key id: it appears in the MAC input, so it must never hold the separator.
KEY_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Bytes patterns: [0-9] matches ASCII digits only, where str.isdigit() and int() also take
# other scripts' digits, a sign, spaces and leading zeros.
_CANONICAL_DECIMAL = re.compile(rb"0|[1-9][0-9]{0,18}")
_KEY_ID_BYTES = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_MAC_HEX = re.compile(rb"[0-9a-f]{64}")


class Reason(StrEnum):
    """Why a vehicle rejects a command (or the audit a safety event: the signature checks and
    `replayed`); the checks run in this order, the first failing names it."""

    MISSING_HEADER = "missing_header"  # a sig-* header is absent
    MALFORMED_HEADER = "malformed_header"  # repeated, or not in its canonical form
    UNKNOWN_KEY = "unknown_key"  # the key id is not in the vehicle's keyring
    BAD_MAC = "bad_mac"  # the MAC does not match: tampered or signed with another key
    MALFORMED = "malformed"  # the value is not a vehicle.control command
    WRONG_VEHICLE = "wrong_vehicle"  # the command names another vehicle
    REPLAYED = "replayed"  # (epoch, counter) not above the last accepted
    CLOCK = "clock"  # not on the wall clock, and the vehicle requires it
    VALIDITY_WINDOW = "validity_window"  # valid_until - stamp negative or above the maximum
    EXPIRED = "expired"  # valid_until has passed
    OUT_OF_BOUNDS = "out_of_bounds"  # a value outside the vehicle's physical bounds


class CommandRejected(Exception):  # noqa: N818 - a rejection, not a failure of the client
    """A command the vehicle must not act on; `reason` says which check failed."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_key_id(key_id: str) -> str:
    """`key_id` itself when it may name a key; ValueError otherwise."""
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ValueError(f"key id {key_id!r} must be 1-64 characters of A-Z a-z 0-9 . _ -")
    return key_id


def parse_keyring(text: str) -> dict[str, bytes]:
    """A keyring from its JSON text {key_id: base64 key}; ValueError names the bad entry.

    The one keyring format (control and events). The error never shows a key, only its id.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(data, dict) or not data:
        raise ValueError("must be a non-empty JSON object {key_id: base64 key}")
    keyring: dict[str, bytes] = {}
    for key_id, encoded in data.items():
        check_key_id(key_id)
        if not isinstance(encoded, str):
            raise ValueError(f"key {key_id!r} must be a base64 string")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"key {key_id!r} is not standard base64 (A-Z a-z 0-9 + /, "
                             "padded with =)") from None
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"key {key_id!r} has {len(key)} bytes; at least {MIN_KEY_BYTES} "
                             "random bytes are needed")
        keyring[key_id] = key
    return keyring


def keyring_json(keyring: Mapping[str, bytes]) -> str:
    """The JSON text of a keyring, as `parse_keyring` reads it."""
    return json.dumps({k: base64.b64encode(v).decode() for k, v in keyring.items()})


def mac_input(key_id: str, epoch: int, counter: int, value: bytes, *,
              domain: bytes = DOMAIN) -> bytes:
    """The exact bytes the MAC covers: the one definition of the layout.

    `domain`: the stream's first line (control commands by default).
    """
    if not _DOMAIN_BYTES.fullmatch(domain):
        raise ValueError(f"domain {domain!r} is not 'roadstream-<name>-v<n>' and a newline")
    check_key_id(key_id)
    for name, number in (("epoch", epoch), ("counter", counter)):
        if not 0 <= number <= INT64_MAX:
            raise ValueError(f"{name} {number} is outside 0..2^63-1")
    return b"\n".join((domain + key_id.encode(), str(epoch).encode(), str(counter).encode(),
                       value))


def mac(key: bytes, key_id: str, epoch: int, counter: int, value: bytes, *,
        domain: bytes = DOMAIN) -> str:
    """The lowercase hex HMAC-SHA256 of one signed value."""
    return hmac.new(key, mac_input(key_id, epoch, counter, value, domain=domain),
                    hashlib.sha256).hexdigest()


def signature_headers(key: bytes, key_id: str, epoch: int, counter: int,
                      value: bytes, *, domain: bytes = DOMAIN) -> dict[str, str]:
    """The four signature headers of a signed value."""
    return {KEY_ID_HEADER: key_id, EPOCH_HEADER: str(epoch), COUNTER_HEADER: str(counter),
            MAC_HEADER: mac(key, key_id, epoch, counter, value, domain=domain)}


_epoch_lock = threading.Lock()
_last_epoch_ms = [0]  # the last epoch this process handed out [ms]


def new_epoch() -> int:
    """A fresh epoch: the wall clock in ms, above every epoch this process handed out before.

    Across processes it grows with the wall clock; a gate host whose clock steps back past
    its previous start would sign below what vehicles accepted (they reject it as replayed),
    so gate hosts keep their clocks synchronised.
    """
    with _epoch_lock:
        _last_epoch_ms[0] = max(time.time_ns() // 1_000_000, _last_epoch_ms[0] + 1)
        return _last_epoch_ms[0]


@dataclass(frozen=True)
class SignedCommand:
    """A command ready to publish: its exact value bytes and its signature headers."""

    value: bytes
    headers: dict[str, str]
    epoch: int
    counter: int


class Signer:
    """The gate side: signs each vehicle's commands with the current key, epoch and counter.

    One Signer per gate start: it takes a new epoch when built (or the given one), and counts
    each vehicle's commands from 1 within it, whatever run they belong to. A vehicle listed
    in ``vehicle_key_ids`` is signed with its own key (per-vehicle keys); every other with
    ``key_id``. With another `domain` it signs another stream (`sign_value`), counting per
    stream key (safety events: per source).
    """

    def __init__(self, keyring: Mapping[str, bytes], key_id: str, *, epoch: int | None = None,
                 vehicle_key_ids: Mapping[str, str] | None = None,
                 domain: bytes = DOMAIN) -> None:
        self.domain = domain
        self.vehicle_key_ids = dict(vehicle_key_ids or {})
        for kid in (key_id, *self.vehicle_key_ids.values()):
            if kid not in keyring:
                raise ValueError(f"signing key id {kid!r} is not in the keyring "
                                 f"({', '.join(sorted(keyring)) or 'empty'})")
        self.keyring = {check_key_id(k): bytes(v) for k, v in keyring.items()}
        self.key_id = key_id
        self.epoch = new_epoch() if epoch is None else epoch
        if not 0 <= self.epoch <= INT64_MAX:
            raise ValueError(f"epoch {self.epoch} is outside 0..2^63-1")
        self.counters: dict[str, int] = {}

    def sign(self, command: VehicleControl) -> SignedCommand:
        """Encode a command and sign it with the next counter of its vehicle."""
        return self.sign_value(command.vehicle_id, command.encode())

    def sign_value(self, stream: str, value: bytes) -> SignedCommand:
        """Sign value bytes with the next counter of `stream` (a vehicle, an event source)."""
        counter = self.counters.get(stream, 0) + 1
        self.counters[stream] = counter
        key_id = self.vehicle_key_ids.get(stream, self.key_id)
        return SignedCommand(value, signature_headers(self.keyring[key_id], key_id, self.epoch,
                                                      counter, value, domain=self.domain),
                             self.epoch, counter)


@dataclass(frozen=True)
class Signature:
    """A verified signature: which key, and the command's freshness value."""

    key_id: str
    epoch: int
    counter: int

    @property
    def freshness(self) -> tuple[int, int]:
        """(epoch, counter), compared as a pair."""
        return self.epoch, self.counter


def _header_values(headers: Iterable[tuple[str, bytes]]) -> dict[str, bytes]:
    found: dict[str, list[bytes]] = {name: [] for name in CONTROL_SIGNATURE_HEADERS}
    for name, raw in headers:
        if name in found:
            found[name].append(bytes(raw))
    for name, values in found.items():
        if not values:
            raise CommandRejected(Reason.MISSING_HEADER,
                                  f"unsigned: header {name!r} is missing")
    for name, values in found.items():
        if len(values) > 1:  # which one counts would differ between clients
            raise CommandRejected(Reason.MALFORMED_HEADER, f"header {name!r} appears "
                                  f"{len(values)} times")
    return {name: values[0] for name, values in found.items()}


def _decimal_header(found: Mapping[str, bytes], name: str) -> int:
    raw = found[name]
    if not _CANONICAL_DECIMAL.fullmatch(raw) or int(raw) > INT64_MAX:
        raise CommandRejected(Reason.MALFORMED_HEADER,
                              f"header {name!r} = {raw[:40]!r} is not a canonical decimal "
                              "(ASCII digits, no sign, no leading zero, at most 2^63-1)")
    return int(raw)


def verify(keyring: Mapping[str, bytes], headers: Iterable[tuple[str, bytes]],
           value: bytes, *, domain: bytes = DOMAIN) -> Signature:
    """Check the signature headers and MAC of a value of the `domain`'s stream (control
    commands by default); CommandRejected says which check failed."""
    found = _header_values(headers)
    raw_key_id = found[KEY_ID_HEADER]
    if not _KEY_ID_BYTES.fullmatch(raw_key_id):
        raise CommandRejected(Reason.MALFORMED_HEADER,
                              f"header {KEY_ID_HEADER!r} = {raw_key_id[:70]!r} is not a key id")
    epoch = _decimal_header(found, EPOCH_HEADER)
    counter = _decimal_header(found, COUNTER_HEADER)
    given = found[MAC_HEADER]
    if not _MAC_HEX.fullmatch(given):
        raise CommandRejected(Reason.MALFORMED_HEADER,
                              f"header {MAC_HEADER!r} is not 64 lowercase hex digits")
    key_id = raw_key_id.decode()
    key = keyring.get(key_id)
    if key is None:
        raise CommandRejected(Reason.UNKNOWN_KEY, f"unknown key id {key_id!r}")
    if not hmac.compare_digest(given.decode(), mac(key, key_id, epoch, counter, value,
                                                   domain=domain)):
        raise CommandRejected(Reason.BAD_MAC,
                              f"MAC mismatch for key {key_id!r}, epoch {epoch}, counter {counter}")
    return Signature(key_id, epoch, counter)
