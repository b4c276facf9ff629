"""Signed `safety.events`: the control commands' signature, under a domain of its own.

Every roadstream service signs each safety event it publishes exactly as the command gate
signs a command (services/control/signing.py): the four headers ``sig-key-id``,
``sig-epoch``, ``sig-counter`` and ``sig-mac``, the MAC an HMAC-SHA256 over

    "roadstream-event-v1\\n" key_id "\\n" epoch "\\n" counter "\\n" value

The domain line differs from the commands' ("roadstream-control-v2"), so a MAC made for one
stream never verifies on the other. The epoch is the service's start (wall clock [ms]); the
counter counts per event `source` from 1 within it.

Keys: the events keyring (`ROADSTREAM_EVENTS_KEYS`), apart from the control keyring on
purpose. Every service holds the events key; only the gate and the vehicles hold the control
key, so a service able to sign events (perception, the monitor, the audit) still cannot forge
a command.

`EventVerifier` is the consumer side (the audit service): a signature that checks, with a
freshness value (epoch, counter) not seen before for that source. Events go out keyed by
vehicle, over several partitions, so one source's events arrive out of order: a replay is a
pair seen before, not one below the last (as a vehicle checks commands, which it receives in
order). The same record delivered again (same event id) is a redelivery, not a replay.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

from pydantic import SecretStr

from services.control.signing import (
    MIN_KEY_BYTES,
    CommandRejected,
    Reason,
    Signature,
    Signer,
    keyring_json,
    verify,
)
from services.settings import Settings

#: The first line of a safety event's MAC input.
EVENT_DOMAIN: Final = b"roadstream-event-v1\n"
#: Freshness values remembered at most (oldest forgotten first): bounds the verifier's memory.
MAX_REMEMBERED: Final = 200_000


def event_signer(settings: Settings, *, epoch: int | None = None) -> Signer | None:
    """The signer of a service's safety events (a new epoch unless given), or None when no
    events key is configured (the service publishes them unsigned)."""
    found = settings.events_keyring()
    if found is None:
        return None
    keyring, key_id = found
    return Signer(keyring, key_id, epoch=epoch, domain=EVENT_DOMAIN)


def with_run_events_key(settings: Settings) -> Settings:
    """`settings` with an events keyring: the configured one, or a random key for one run only
    (`roadstream run`: every service of the run signs with it, and its audit verifies with it)."""
    if settings.events_keys is not None:
        return settings
    key_id = f"run-{secrets.token_hex(4)}"
    keys = keyring_json({key_id: secrets.token_bytes(MIN_KEY_BYTES)})
    return settings.model_copy(update={"events_keys": SecretStr(keys), "events_key_id": key_id})


class EventVerifier:
    """Checks the signature and freshness of safety events (the audit side).

    `check` returns the verified signature, or raises CommandRejected whose reason says which
    check failed: ``missing_header`` (unsigned), ``malformed_header``, ``unknown_key``,
    ``bad_mac`` (forged or tampered) or ``replayed``.
    """

    def __init__(self, keyring: dict[str, bytes]) -> None:
        if not keyring:
            raise ValueError("an event verifier needs a non-empty keyring")
        self.keyring = dict(keyring)
        # (source, epoch, counter) -> event id of the event accepted with it
        self._seen: OrderedDict[tuple[str, int, int], str] = OrderedDict()

    @classmethod
    def of(cls, settings: Settings) -> EventVerifier | None:
        """The verifier of the configured events keyring, or None when none is set."""
        found = settings.events_keyring()
        return None if found is None else cls(found[0])

    def check(self, headers: Iterable[tuple[str, bytes]], value: bytes, *, source: str,
              event_id: str) -> Signature:
        """Verify one event's signature (`source` and `event_id` read from its verified value).

        The freshness value is remembered only once the signature checks, so a forgery cannot
        make a genuine event look replayed.
        """
        signature = verify(self.keyring, headers, value, domain=EVENT_DOMAIN)
        key = (source, signature.epoch, signature.counter)
        earlier = self._seen.get(key)
        if earlier is not None and earlier != event_id:
            raise CommandRejected(Reason.REPLAYED,
                                  f"source {source!r} already signed epoch {signature.epoch}, "
                                  f"counter {signature.counter} (event {earlier})")
        self._seen[key] = event_id
        self._seen.move_to_end(key)
        while len(self._seen) > MAX_REMEMBERED:
            self._seen.popitem(last=False)
        return signature
