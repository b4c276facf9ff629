"""Signed safety events on the embedded broker: only genuine events enter the audit trail.

A producer mixes genuine signed events with unsigned, forged (wrong key, unknown key,
tampered value) and replayed ones on `safety.events`; the audit service, holding the events
keyring, stores exactly the genuine ones, counts the rest by reason, and the trail verifies.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from services.audit.service import build
from services.audit.settings import AuditSettings
from services.audit.store import AuditFilter, open_store
from services.cli.main import main
from services.control.signing import Signer, keyring_json, signature_headers
from services.messages import SafetyEvent, Severity
from services.runtime.event_signing import EVENT_DOMAIN, event_signer
from services.runtime.events import safety_event
from services.settings import Settings
from tests.integration.test_audit_service import wait_for_rows
from tests.kafka_helpers import produce

pytestmark = pytest.mark.integration

RING = {"ev-a": b"a" * 32}
Message = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


def raw(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in headers.items()]


async def test_only_genuine_signed_events_are_stored_the_rest_counted(
        kafka_bootstrap: str, unique: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(group_prefix=f"s{unique}", events_keys=SecretStr(keyring_json(RING)))
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    # From the topic's end: the session's broker holds other tests' (unsigned) events, which this
    # audit would refuse and count beside the ones sent here.
    built = build(settings, kafka_bootstrap, options=AuditSettings(url=url), start_from="latest")
    service = built.service
    vehicle = f"signed-{unique}"  # one key, one partition: handled in the order sent

    def ev(source: str, type_: str = "collision_risk") -> SafetyEvent:
        return safety_event(source=source, type_=type_, severity=Severity.CRITICAL,
                            vehicle_id=vehicle, details={"n": unique})

    monitor, perception = event_signer(settings), event_signer(settings)
    assert monitor is not None
    assert perception is not None

    def signed(event: SafetyEvent, signer: Signer = monitor) -> Message:
        s = signer.sign_value(event.source, event.encode())
        return vehicle.encode(), s.value, raw(s.headers)

    genuine: list[SafetyEvent] = []
    sent: list[Message] = []
    for i in range(6):
        event = ev("monitor" if i % 2 else "perception")
        genuine.append(event)
        sent.append(signed(event, monitor if i % 2 else perception))
    refused: dict[str, int] = {}

    def add_refused(reason: str, message: Message) -> None:
        refused[reason] = refused.get(reason, 0) + 1
        sent.append(message)

    for _ in range(3):  # unsigned: a producer without the key
        add_refused("missing_header", (vehicle.encode(), ev("monitor").encode(), []))
    for _ in range(2):  # the right key id, the wrong key
        forged = ev("monitor").encode()
        add_refused("bad_mac", (vehicle.encode(), forged, raw(signature_headers(
            b"x" * 32, "ev-a", 1, 1, forged, domain=EVENT_DOMAIN))))
    stolen = ev("monitor").encode()
    add_refused("unknown_key", (vehicle.encode(), stolen, raw(signature_headers(
        b"x" * 32, "ev-b", 1, 1, stolen, domain=EVENT_DOMAIN))))
    # a genuine signature over a value rewritten on the way
    key, value, headers = signed(ev("monitor", "collision_risk"))
    add_refused("bad_mac", (key, value.replace(b"collision_risk", b"stop_cleared__"), headers))
    # a control command's MAC is no event MAC, even under the events key
    cross = ev("monitor").encode()
    add_refused("bad_mac", (vehicle.encode(), cross, raw(signature_headers(
        RING["ev-a"], "ev-a", 1, 1, cross))))
    # another event under a freshness value the monitor already used
    reused = ev("monitor").encode()
    add_refused("replayed", (vehicle.encode(), reused, raw(signature_headers(
        RING["ev-a"], "ev-a", monitor.epoch, 1, reused, domain=EVENT_DOMAIN))))
    # a genuine record sent again: a redelivery, stored once (the trail is idempotent)
    sent.append(sent[1])
    sentinel = ev("monitor", "sentinel")
    sent.append(signed(sentinel))
    genuine.append(sentinel)

    await service.start()
    try:
        assert await service.wait_assigned(60)
        await produce(kafka_bootstrap, "safety.events", sent)
        assert await wait_for_rows(url, AuditFilter(type="sentinel", vehicle_id=vehicle), 1,
                                   timeout_s=60) == 1
    finally:
        await service.stop()

    with open_store(url, create=False) as reader:
        stored = [r.event_id for r in reader.query(AuditFilter(vehicle_id=vehicle))]
    assert stored == [str(e.event_id) for e in genuine]
    assert refused == {"missing_header": 3, "bad_mac": 4, "unknown_key": 1, "replayed": 1}
    metric = "roadstream_audit_events_rejected_total"
    assert {r: service.registry.get_sample_value(metric, {"reason": r})
            for r in refused} == {r: float(n) for r, n in refused.items()}
    counts = built.counts()
    assert counts["rejected"] == refused
    assert counts["events"]["inserted"] >= len(genuine)
    assert counts["events"]["duplicate"] == 1
    capsys.readouterr()
    assert main(["audit", "verify", "--url", url]) == 0, capsys.readouterr()
    assert "OK" in capsys.readouterr().out
