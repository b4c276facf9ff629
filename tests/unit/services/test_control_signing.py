"""Signed control commands: the vehicle side rejects tampering, replays and stale commands."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from services.control.client import CommandRejected, CommandVerifier, VehicleControlClient
from services.control.signing import SignatureError, sign, verify
from services.runtime.service import ServiceRuntime
from services.messages import SafetyEvent, VehicleControl
from services.messages.examples import vehicle_control
from services.settings import Settings

KEY = b"k" * 32
KEYS = {"key-1": KEY}


def signed(command: VehicleControl, counter: int, key: bytes = KEY) -> tuple[list[tuple[str, bytes]], bytes]:
    value = command.encode()
    headers = [(k, v.encode()) for k, v in sign(key, "key-1", counter, value).items()]
    return headers, value


def test_mac_is_plain_hmac_sha256_any_language_can_recompute() -> None:
    value = b'{"seq": 1}'
    headers = sign(KEY, "key-1", 7, value)
    expected = hmac.new(KEY, b"roadstream-control-v1\nkey-1\n7\n" + value, hashlib.sha256).hexdigest()
    assert headers == {"sig-key-id": "key-1", "sig-counter": "7", "sig-mac": expected}
    assert verify(KEYS, [(k, v.encode()) for k, v in headers.items()], value).counter == 7


def test_accepts_a_fresh_signed_command() -> None:
    cmd = vehicle_control()
    headers, value = signed(cmd, 1)
    assert CommandVerifier(KEYS).check(headers, value, now_ns=cmd.stamp_ns) == cmd


@pytest.mark.parametrize("tamper", ["value", "mac", "counter", "key"])
def test_rejects_a_tampered_command(tamper: str) -> None:
    cmd = vehicle_control()
    headers, value = signed(cmd, 1, key=b"x" * 32 if tamper == "key" else KEY)
    if tamper == "value":
        value = value.replace(b'"accel_mps2":-1.0', b'"accel_mps2":3.0')
        assert b"3.0" in value
    elif tamper == "mac":
        headers = [(k, b"0" * 64 if k == "sig-mac" else v) for k, v in headers]
    elif tamper == "counter":
        headers = [(k, b"2" if k == "sig-counter" else v) for k, v in headers]
    with pytest.raises(CommandRejected) as err:
        CommandVerifier(KEYS).check(headers, value, now_ns=cmd.stamp_ns)
    assert err.value.reason == "bad_signature"


def test_rejects_a_replayed_or_reordered_counter() -> None:
    verifier = CommandVerifier(KEYS)
    cmd = vehicle_control()
    first = signed(cmd, 5)
    verifier.check(*first, now_ns=cmd.stamp_ns)
    with pytest.raises(CommandRejected) as replay:
        verifier.check(*first, now_ns=cmd.stamp_ns)
    assert replay.value.reason == "replayed_counter"
    with pytest.raises(CommandRejected) as older:
        verifier.check(*signed(cmd, 4), now_ns=cmd.stamp_ns)
    assert older.value.reason == "replayed_counter"
    assert verifier.check(*signed(cmd, 6), now_ns=cmd.stamp_ns) == cmd


def test_rejects_an_expired_command() -> None:
    cmd = vehicle_control()
    with pytest.raises(CommandRejected) as err:
        CommandVerifier(KEYS).check(*signed(cmd, 1), now_ns=cmd.valid_until_ns + 1)
    assert err.value.reason == "expired"


def test_unsigned_and_unknown_key_are_named() -> None:
    with pytest.raises(SignatureError, match="'sig-key-id' is missing"):
        verify(KEYS, [], b"{}")
    headers = [(k, v.encode()) for k, v in sign(KEY, "other", 1, b"{}").items()]
    with pytest.raises(SignatureError, match="unknown key id 'other'"):
        verify(KEYS, headers, b"{}")


async def test_client_acts_on_good_commands_and_audits_each_rejection() -> None:
    frame = ServiceRuntime("vehicle", Settings(), "localhost:9092")
    acted: list[VehicleControl] = []
    events: list[SafetyEvent] = []
    cmd = vehicle_control()

    async def on_command(command: VehicleControl) -> None:
        acted.append(command)

    client = VehicleControlClient(frame, KEYS, "ego", on_command, clock=lambda: cmd.stamp_ns)

    @frame.broker.subscriber("safety.events")
    async def on_event(msg: KafkaMessage) -> None:
        events.append(SafetyEvent.decode(msg.body))

    async with TestKafkaBroker(frame.broker) as br:
        for counter in (1, 1, 2):  # the second is a replay
            headers, value = signed(cmd, counter)
            await br.publish(value, topic="vehicle.control", key=b"ego",
                             headers={k: v.decode() for k, v in headers})
        bad_headers, value = signed(cmd, 3)
        await br.publish(value, topic="vehicle.control", key=b"ego",
                         headers={**{k: v.decode() for k, v in bad_headers}, "sig-mac": "00"})

    assert len(acted) == 2
    assert client.accepted == 2
    assert client.rejected == {"replayed_counter": 1, "bad_signature": 1}
    assert [(e.source, e.type, e.details["reason"]) for e in events] == [
        ("vehicle-client", "command_rejected", "replayed_counter"),
        ("vehicle-client", "command_rejected", "bad_signature")]
