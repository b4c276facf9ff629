"""The Python vehicle client on a service runtime: acts on verified commands, audits the rest."""

from __future__ import annotations

from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from services.control.client import VehicleControlClient
from services.control.signing import Signer, signature_headers
from services.messages import SafetyEvent, VehicleControl
from services.messages.examples import vehicle_control
from services.runtime.service import ServiceRuntime
from services.settings import Settings

KEYS = {"key-1": b"k" * 32}


async def test_client_acts_on_good_commands_and_audits_each_rejection() -> None:
    frame = ServiceRuntime("vehicle", Settings(), "localhost:9092")
    acted: list[VehicleControl] = []
    events: list[SafetyEvent] = []
    cmd = vehicle_control()
    signer = Signer(KEYS, "key-1")

    async def on_command(command: VehicleControl) -> None:
        acted.append(command)

    client = VehicleControlClient(frame, KEYS, "ego", on_command, clock=lambda: cmd.stamp_ns)

    @frame.broker.subscriber("safety.events")
    async def on_event(msg: KafkaMessage) -> None:
        events.append(SafetyEvent.decode(msg.body))

    first, second = signer.sign(cmd), signer.sign(cmd)
    neighbour = signer.sign(cmd.model_copy(update={"vehicle_id": "v2"}))
    forged = signature_headers(b"x" * 32, "key-1", signer.epoch, 9, cmd.encode())
    async with TestKafkaBroker(frame.broker) as br:
        for key, value, headers in [
            (b"ego", first.value, first.headers),
            (b"ego", first.value, first.headers),  # replayed
            (b"ego", second.value, second.headers),
            (b"v2", neighbour.value, neighbour.headers),  # another vehicle's: routed past
            (b"ego", neighbour.value, neighbour.headers),  # the same, re-keyed to this one
            (b"ego", cmd.encode(), forged),
        ]:
            await br.publish(value, topic="vehicle.control", key=key, headers=headers)

    assert acted == [cmd, cmd]
    assert client.accepted == 2
    assert client.skipped == 1
    assert client.rejected == {"replayed": 1, "wrong_vehicle": 1, "bad_mac": 1}
    assert [(e.source, e.type, e.severity, e.details["reason"]) for e in events] == [
        ("vehicle-client", "command_rejected", "critical", "replayed"),
        ("vehicle-client", "command_rejected", "critical", "wrong_vehicle"),
        ("vehicle-client", "command_rejected", "critical", "bad_mac")]
    assert all(e.references.topic == "vehicle.control" for e in events)
