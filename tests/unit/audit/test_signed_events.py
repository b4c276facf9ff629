"""Signed safety events: the layout, the signer per source, the verifier's verdicts, settings."""

from __future__ import annotations

import hashlib
import hmac
import logging

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import SecretStr

from services.audit.rejections import Rejections
from services.control.signing import (
    CommandRejected,
    Reason,
    Signer,
    keyring_json,
    mac_input,
    signature_headers,
)
from services.messages import SafetyEvent, Severity
from services.runtime.event_signing import (
    EVENT_DOMAIN,
    EventVerifier,
    event_signer,
    with_run_events_key,
)
from services.runtime.events import safety_event
from services.runtime.process import plain_settings
from services.runtime.service import ServiceRuntime
from services.settings import Settings, SettingsError, load_settings

KEY = b"e" * 32
OTHER = b"o" * 32
RING = {"ev-1": KEY}


def raw(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in headers.items()]


def event(source: str = "monitor") -> SafetyEvent:
    return safety_event(source=source, type_="collision_risk", severity=Severity.CRITICAL,
                        vehicle_id="ego", details={"ttc_s": 1.2})


def signer(epoch: int = 1_790_000_000_000) -> Signer:
    settings = Settings(events_keys=SecretStr(keyring_json(RING)))
    found = event_signer(settings, epoch=epoch)
    assert found is not None
    return found


def test_event_mac_is_the_control_layout_under_the_event_domain() -> None:
    assert mac_input("ev-1", 12, 7, b"{}", domain=EVENT_DOMAIN) == (
        b"roadstream-event-v1\nev-1\n12\n7\n{}")
    value = event().encode()
    signed = signer(12).sign_value("monitor", value)
    expected = hmac.new(KEY, b"roadstream-event-v1\nev-1\n12\n1\n" + value,
                        hashlib.sha256).hexdigest()
    assert signed.headers == {"sig-key-id": "ev-1", "sig-epoch": "12", "sig-counter": "1",
                              "sig-mac": expected}


def test_a_control_mac_never_verifies_as_an_event_nor_the_reverse() -> None:
    ev = event()
    value = ev.encode()
    as_command = signature_headers(KEY, "ev-1", 12, 1, value)  # the control domain
    with pytest.raises(CommandRejected) as caught:
        EventVerifier(RING).check(raw(as_command), value, source=ev.source,
                                  event_id=str(ev.event_id))
    assert caught.value.reason is Reason.BAD_MAC
    with pytest.raises(ValueError, match="domain"):
        mac_input("ev-1", 1, 1, b"{}", domain=b"roadstream-event-v1")  # no newline


def test_counters_are_per_source_within_one_epoch() -> None:
    s = signer()
    counters = [(src, s.sign_value(src, b"{}").counter) for src in ("monitor", "audit",
                                                                     "monitor", "monitor")]
    assert counters == [("monitor", 1), ("audit", 1), ("monitor", 2), ("monitor", 3)]
    assert {s.sign_value("x", b"{}").epoch} == {s.epoch}


def test_a_genuine_event_verifies_and_names_its_key_and_freshness() -> None:
    ev = event()
    signed = signer(40).sign_value(ev.source, ev.encode())
    got = EventVerifier(RING).check(raw(signed.headers), signed.value, source=ev.source,
                                    event_id=str(ev.event_id))
    assert (got.key_id, got.freshness) == ("ev-1", (40, 1))


@pytest.mark.parametrize(("case", "reason"), [
    ("tampered", Reason.BAD_MAC), ("other_key", Reason.BAD_MAC),
    ("unknown_key", Reason.UNKNOWN_KEY), ("unsigned", Reason.MISSING_HEADER),
    ("half_signed", Reason.MISSING_HEADER), ("bad_counter", Reason.MALFORMED_HEADER)])
def test_forged_and_unsigned_events_are_refused_with_their_reason(case: str,
                                                                  reason: Reason) -> None:
    ev = event()
    value = ev.encode()
    headers = dict(signer().sign_value(ev.source, value).headers)
    if case == "tampered":
        value = value.replace(b"collision_risk", b"collision_ok!!")
    elif case == "other_key":
        headers = signature_headers(OTHER, "ev-1", 5, 1, value, domain=EVENT_DOMAIN)
    elif case == "unknown_key":
        headers = signature_headers(OTHER, "stolen", 5, 1, value, domain=EVENT_DOMAIN)
    elif case == "unsigned":
        headers = {}
    elif case == "half_signed":
        del headers["sig-mac"]
    else:
        headers["sig-counter"] = "01"
    with pytest.raises(CommandRejected) as caught:
        EventVerifier(RING).check(raw(headers), value, source=ev.source,
                                  event_id=str(ev.event_id))
    assert caught.value.reason is reason


def test_a_replayed_freshness_value_is_refused_a_redelivery_is_not() -> None:
    verifier = EventVerifier(RING)
    s = signer()
    first, second = event(), event()
    signed = s.sign_value("monitor", first.encode())
    verifier.check(raw(signed.headers), signed.value, source="monitor",
                   event_id=str(first.event_id))
    # the same record again (Kafka redelivers): the store's idempotency handles it
    verifier.check(raw(signed.headers), signed.value, source="monitor",
                   event_id=str(first.event_id))
    # another event under a signature captured earlier: the MAC does not fit its value...
    with pytest.raises(CommandRejected) as caught:
        verifier.check(raw(signed.headers), second.encode(), source="monitor",
                       event_id=str(second.event_id))
    assert caught.value.reason is Reason.BAD_MAC
    # ...and a key holder re-signing another event with a used (epoch, counter) is a replay
    reused = signature_headers(KEY, "ev-1", s.epoch, 1, second.encode(), domain=EVENT_DOMAIN)
    with pytest.raises(CommandRejected) as caught:
        verifier.check(raw(reused), second.encode(), source="monitor",
                       event_id=str(second.event_id))
    assert caught.value.reason is Reason.REPLAYED
    # out of order is not a replay (events of one source come over several partitions)
    later = s.sign_value("monitor", second.encode())
    earlier_epoch = signature_headers(KEY, "ev-1", s.epoch - 1, 9, b"{}", domain=EVENT_DOMAIN)
    verifier.check(raw(later.headers), later.value, source="monitor",
                   event_id=str(second.event_id))
    verifier.check(raw(earlier_epoch), b"{}", source="monitor", event_id="x")


def test_events_keyring_settings_name_the_variable_never_the_key() -> None:
    ring = keyring_json({"a": KEY, "b": OTHER})
    with pytest.raises(SettingsError, match="ROADSTREAM_EVENTS_KEY_ID must name"):
        load_settings(events_keys=ring)
    with pytest.raises(SettingsError, match=r"ROADSTREAM_EVENTS_KEY_ID 'c' is not in"):
        load_settings(events_keys=ring, events_key_id="c")
    with pytest.raises(SettingsError, match="ROADSTREAM_EVENTS_KEYS: key 'a' has 3 bytes") as bad:
        load_settings(events_keys='{"a": "YWJj"}')
    assert "YWJj" not in str(bad.value)
    assert load_settings(events_keys=ring, events_key_id="b").events_keyring() == (
        {"a": KEY, "b": OTHER}, "b")
    assert Settings().events_keyring() is None
    assert event_signer(Settings()) is None
    assert EventVerifier.of(Settings()) is None


def test_a_run_key_is_made_only_when_none_is_configured() -> None:
    made = with_run_events_key(Settings())
    found = made.events_keyring()
    assert found is not None
    ring, key_id = found
    assert key_id.startswith("run-")
    assert len(ring[key_id]) == 32
    assert with_run_events_key(made) is made
    assert with_run_events_key(Settings()).events_keyring() != found  # a new key per run
    # a service in a process of its own gets it with its settings (sent over its stdin)
    assert Settings(**plain_settings(made)).events_keyring() == found


async def test_the_runtime_signs_every_event_it_emits() -> None:
    settings = Settings(events_keys=SecretStr(keyring_json(RING)))
    frame = ServiceRuntime("monitor", settings, "localhost:9092")
    got: list[tuple[bytes, list[tuple[str, bytes]]]] = []

    @frame.broker.subscriber("safety.events")
    async def on_event(msg: KafkaMessage) -> None:
        got.append((msg.body, [(k, v if isinstance(v, bytes) else str(v).encode())
                               for k, v in msg.headers.items()]))

    evs = [event("monitor"), event("monitor"), event("vehicle-client")]
    async with TestKafkaBroker(frame.broker):
        for ev in evs:
            await frame.emit(ev)
    assert frame.event_signer is not None
    verifier = EventVerifier(RING)
    checked = []
    for (value, headers), ev in zip(got, evs, strict=True):
        assert SafetyEvent.decode(value) == ev
        assert dict(headers)["content-type"] == b"application/json"
        sig = verifier.check(headers, value, source=ev.source, event_id=str(ev.event_id))
        checked.append((ev.source, sig.epoch, sig.counter))
    epoch = frame.event_signer.epoch
    assert checked == [("monitor", epoch, 1), ("monitor", epoch, 2), ("vehicle-client", epoch, 1)]


def test_refusals_are_logged_once_per_window_with_counts(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    tally = Rejections(window_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="services.audit.service"):
        first = tally.add("bad_mac", "e1")
        held = [tally.add(r, "e") for r in ("bad_mac", "missing_header", "missing_header")]
        now[0] = 4.0
        assert tally.flush() is None  # the window has not passed
        now[0] = 10.5
        second = tally.add("replayed", "e5")
        assert tally.flush(everything=True) is None  # nothing new since
    assert first == "audit: refused 1 safety events, not in the trail (bad_mac=1); e.g. e1"
    assert held == [None, None, None]
    assert second == ("audit: refused 4 safety events in the last 10 s, not in the trail "
                      "(bad_mac=1, missing_header=2, replayed=1); e.g. e")
    assert [r.getMessage() for r in caplog.records] == [first, second]
    assert tally.totals == {"bad_mac": 2, "missing_header": 2, "replayed": 1}
